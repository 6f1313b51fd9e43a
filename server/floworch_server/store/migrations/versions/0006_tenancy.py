"""Tenancy: a tenant on every record, tenant-leading indexes, per-tenant unique names, the
tenants / members / refresh_tokens tables, and on PostgreSQL row-level security per tenant.

Existing rows keep the tenant they had or, where a table had no tenant, take their parent's
(a version's or trigger's workflow, a log line's run), else "default".

Row-level security is FORCEd, so it binds the table owner too: a later migration that reads or
writes rows must set ``floworch.tenant`` for each tenant it touches (superusers bypass it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# Tables that had no tenant column before this revision.
NEW_TENANT_COLUMN = (
    "workflow_versions",
    "logs",
    "audit_log",
    "trigger_registrations",
    "alert_rules",
    "alerts",
    "metric_samples",
)
# Every tenant-scoped table (models.TENANT_TABLES, as of this revision).
TENANT_TABLES = (
    "workflows",
    "workflow_versions",
    "workflow_runs",
    "node_timings",
    "logs",
    "audit_log",
    "integrations",
    "oauth_providers",
    "oauth_authorizations",
    "trigger_registrations",
    "alert_rules",
    "alerts",
    "metric_samples",
    "members",
    "refresh_tokens",
)
# (table, old index, old columns, new index, new columns): indexes now led by the tenant,
# since every query of these tables is of one tenant.
REINDEX = (
    ("workflow_runs", "ix_workflow_runs_start_time", ["start_time"], None, None),
    (
        "workflow_runs",
        "ix_workflow_runs_start_time_status",
        ["start_time", "status"],
        "ix_workflow_runs_tenant_start_time_status",
        ["tenant", "start_time", "status"],
    ),
    (
        "workflow_runs",
        "ix_workflow_runs_end_time_status",
        ["end_time", "status"],
        "ix_workflow_runs_tenant_end_time_status",
        ["tenant", "end_time", "status"],
    ),
    (
        "node_timings",
        "ix_node_timings_node_type_started",
        ["node_type", "started", "kind", "duration_ms"],
        "ix_node_timings_tenant_node_type_started",
        ["tenant", "node_type", "started", "kind", "duration_ms"],
    ),
    ("node_timings", "ix_node_timings_started", ["started"], "ix_node_timings_tenant_started", ["tenant", "started"]),
    ("logs", "ix_logs_timestamp", ["timestamp"], "ix_logs_tenant_timestamp", ["tenant", "timestamp"]),
    (
        "trigger_registrations",
        "ix_trigger_registrations_kind_key",
        ["kind", "key"],
        "ix_trigger_registrations_tenant_kind_key",
        ["tenant", "kind", "key"],
    ),
    ("alerts", "ix_alerts_opened_at", ["opened_at"], "ix_alerts_tenant_opened_at", ["tenant", "opened_at"]),
    (
        "metric_samples",
        "ix_metric_samples_name_timestamp",
        ["name", "timestamp"],
        "ix_metric_samples_tenant_name_timestamp",
        ["tenant", "name", "timestamp"],
    ),
)
POLICY = "tenant_isolation"
CURRENT_TENANT = "current_setting('floworch.tenant', true)"


def upgrade() -> None:
    for table in NEW_TENANT_COLUMN:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("tenant", sa.String(64), server_default="default", nullable=False))

    # Children take their parent's tenant.
    for child in ("workflow_versions", "trigger_registrations"):
        op.execute(
            f"UPDATE {child} SET tenant = (SELECT w.tenant FROM workflows w WHERE w.id = {child}.workflow_id) "
            f"WHERE EXISTS (SELECT 1 FROM workflows w WHERE w.id = {child}.workflow_id)"
        )
    op.execute(
        "UPDATE logs SET tenant = (SELECT r.tenant FROM workflow_runs r WHERE r.run_id = logs.run_id) "
        "WHERE EXISTS (SELECT 1 FROM workflow_runs r WHERE r.run_id = logs.run_id)"
    )

    # Unique per tenant. (SQLite rebuilds these tables; migrate.upgrade turns foreign keys off
    # meanwhile so dropping the old table does not cascade into its children.)
    with op.batch_alter_table("workflows") as batch:
        batch.drop_constraint("uq_workflows_path", type_="unique")
        batch.create_unique_constraint("uq_workflows_tenant_path", ["tenant", "path"])
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_constraint("uq_alert_rules_name", type_="unique")
        batch.create_unique_constraint("uq_alert_rules_tenant_name", ["tenant", "name"])

    for table, old, _old_columns, new, columns in REINDEX:
        op.drop_index(old, table_name=table)
        if new and columns:
            op.create_index(new, table, columns)
    op.create_index("ix_audit_log_tenant_id", "audit_log", ["tenant", "id"])

    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
    )
    op.create_table(
        "members",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("added_by", sa.String(255), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "user", name="pk_members"),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("family", sa.String(36), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_refresh_tokens"),
    )
    op.create_index("ix_refresh_tokens_tenant_family", "refresh_tokens", ["tenant", "family"])

    # The tenants that already have records, and always the default one.
    found = {"default"}
    bind = op.get_bind()
    for table in ("workflows", "workflow_runs", "integrations", "oauth_providers"):
        found.update(bind.execute(sa.text(f"SELECT DISTINCT tenant FROM {table}")).scalars())
    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(tenants, [{"id": t, "created_at": now} for t in sorted(found)])

    if bind.dialect.name == "postgresql":
        for table in TENANT_TABLES:
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY {POLICY} ON {table} "
                f"USING (tenant = {CURRENT_TENANT}) WITH CHECK (tenant = {CURRENT_TENANT})"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.drop_index("ix_refresh_tokens_tenant_family", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("members")
    op.drop_table("tenants")
    op.drop_index("ix_audit_log_tenant_id", table_name="audit_log")
    for table, old, old_columns, new, _columns in reversed(REINDEX):
        if new:
            op.drop_index(new, table_name=table)
        op.create_index(old, table, old_columns)
    # Fails if two tenants now share an alert rule name or a path: rename those first.
    with op.batch_alter_table("alert_rules") as batch:
        batch.drop_constraint("uq_alert_rules_tenant_name", type_="unique")
        batch.create_unique_constraint("uq_alert_rules_name", ["name"])
    with op.batch_alter_table("workflows") as batch:
        batch.drop_constraint("uq_workflows_tenant_path", type_="unique")
        batch.create_unique_constraint("uq_workflows_path", ["path"])
    for table in reversed(NEW_TENANT_COLUMN):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant")
