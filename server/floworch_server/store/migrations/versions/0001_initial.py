"""Initial store: workflows, published versions, runs, logs, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the model types: a migration must not change when the models do.
JSONType = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("tenant", sa.String(64), server_default="default", nullable=False),
        sa.Column("path", sa.String(1024), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("draft_version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("document", JSONType, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("y_document_state", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workflows"),
        sa.UniqueConstraint("path", name="uq_workflows_path"),
    )
    op.create_index("ix_workflows_tenant", "workflows", ["tenant"])

    op.create_table(
        "workflow_versions",
        sa.Column("workflow_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("plan", JSONType, nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False),
        sa.Column("document", JSONType, nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name="fk_workflow_versions_workflow_id_workflows",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", "version", name="pk_workflow_versions"),
    )

    op.create_table(
        "workflow_runs",
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("workflow_id", sa.String(36), nullable=True),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("plan_hash", sa.String(128), nullable=True),
        sa.Column("trigger", sa.String(64), server_default="manual", nullable=False),
        sa.Column("tenant", sa.String(64), server_default="default", nullable=False),
        sa.Column("input", JSONType, nullable=True),
        sa.Column("start_time", TS, nullable=False),
        sa.Column("end_time", TS, nullable=True),
        sa.Column("status", sa.String(16), server_default="queued", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("search_attributes", JSONType, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_workflow_runs"),
    )
    op.create_index("ix_workflow_runs_workflow_id_start_time", "workflow_runs", ["workflow_id", "start_time"])
    op.create_index("ix_workflow_runs_start_time", "workflow_runs", ["start_time"])

    op.create_table(
        "logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("timestamp", TS, nullable=False),
        sa.Column("run_id", sa.String(255), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("trace_id", sa.String(64), nullable=True),
        sa.Column("extra", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_logs"),
    )
    op.create_index("ix_logs_run_id_id", "logs", ["run_id", "id"])

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("timestamp", TS, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("detail", JSONType, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_index("ix_logs_run_id_id", table_name="logs")
    op.drop_table("logs")
    op.drop_index("ix_workflow_runs_start_time", table_name="workflow_runs")
    op.drop_index("ix_workflow_runs_workflow_id_start_time", table_name="workflow_runs")
    op.drop_table("workflow_runs")
    op.drop_table("workflow_versions")
    op.drop_index("ix_workflows_tenant", table_name="workflows")
    op.drop_table("workflows")
