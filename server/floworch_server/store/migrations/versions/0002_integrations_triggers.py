"""Integrations (encrypted credentials) and trigger registrations (webhooks, events, schedules).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "integrations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), server_default="default", nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("settings", JSONType, nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_integrations"),
        sa.UniqueConstraint("tenant", "name", name="uq_integrations_tenant_name"),
    )
    op.create_table(
        "trigger_registrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(36), nullable=False),
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"], ["workflows.id"], name="fk_trigger_registrations_workflow_id_workflows", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_trigger_registrations"),
        sa.UniqueConstraint("workflow_id", "node_id", name="uq_trigger_registrations_workflow_id_node_id"),
    )
    op.create_index("ix_trigger_registrations_kind_key", "trigger_registrations", ["kind", "key"])


def downgrade() -> None:
    op.drop_index("ix_trigger_registrations_kind_key", table_name="trigger_registrations")
    op.drop_table("trigger_registrations")
    op.drop_table("integrations")
