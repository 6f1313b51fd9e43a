"""Node timings (per-segment durations of finished runs) and the indexes the dashboard aggregates on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "node_timings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("node_type", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("iteration", sa.String(64), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("started", TS, nullable=False),
        sa.Column("ended", TS, nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("workflow_id", sa.String(36), nullable=True),
        sa.Column("tenant", sa.String(64), server_default="default", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_node_timings"),
    )
    op.create_index(
        "ix_node_timings_node_type_started", "node_timings", ["node_type", "started", "kind", "duration_ms"]
    )
    op.create_index("ix_node_timings_started", "node_timings", ["started"])
    op.create_index("ix_node_timings_run_id", "node_timings", ["run_id"])

    op.add_column("workflow_runs", sa.Column("timings_at", TS, nullable=True))
    op.create_index("ix_workflow_runs_end_time_status", "workflow_runs", ["end_time", "status"])
    op.create_index("ix_workflow_runs_start_time_status", "workflow_runs", ["start_time", "status"])


def downgrade() -> None:
    op.drop_index("ix_workflow_runs_start_time_status", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_end_time_status", table_name="workflow_runs")
    # The batch form: SQLite rebuilds the table where it cannot drop a column in place.
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_column("timings_at")
    op.drop_index("ix_node_timings_run_id", table_name="node_timings")
    op.drop_index("ix_node_timings_started", table_name="node_timings")
    op.drop_index("ix_node_timings_node_type_started", table_name="node_timings")
    op.drop_table("node_timings")
