"""Alert rules (seeded with the three default SLA rules), alerts, metric samples, and the index
the retention purge deletes old logs by.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# Seeded here rather than on every Store open, so a rule an operator deleted stays deleted.
DEFAULT_RULES = [
    # Percent of runs ending in success (cancelled runs aside) over the last 5 minutes.
    {"name": "run-success-rate", "kind": "success_rate", "threshold": 99.9, "window_seconds": 300, "enabled": True},
    # Tasks waiting in the busiest task queue (live, so the window is unused).
    {"name": "task-queue-backlog", "kind": "queue_backlog", "threshold": 100.0, "window_seconds": 60, "enabled": True},
    # p95 of reported collaboration sync latencies (ms) over the last 5 minutes.
    {"name": "collab-sync-latency", "kind": "sync_latency", "threshold": 500.0, "window_seconds": 300, "enabled": True},
]


def upgrade() -> None:
    rules = op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("window_seconds", sa.Integer(), server_default="300", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("action_workflow_id", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(
            ["action_workflow_id"],
            ["workflows.id"],
            name="fk_alert_rules_action_workflow_id_workflows",
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("name", name="uq_alert_rules_name"),
    )
    op.bulk_insert(rules, DEFAULT_RULES)

    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("cleared_at", TS, nullable=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("action_run_id", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(
            ["rule_id"], ["alert_rules.id"], name="fk_alerts_rule_id_alert_rules", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_rule_id_cleared_at", "alerts", ["rule_id", "cleared_at"])
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at"])

    op.create_table(
        "metric_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("timestamp", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_samples"),
    )
    op.create_index("ix_metric_samples_name_timestamp", "metric_samples", ["name", "timestamp"])

    op.create_index("ix_logs_timestamp", "logs", ["timestamp"])


def downgrade() -> None:
    op.drop_index("ix_logs_timestamp", table_name="logs")
    op.drop_index("ix_metric_samples_name_timestamp", table_name="metric_samples")
    op.drop_table("metric_samples")
    op.drop_index("ix_alerts_opened_at", table_name="alerts")
    op.drop_index("ix_alerts_rule_id_cleared_at", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_rules")
