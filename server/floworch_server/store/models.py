"""The store's tables, as SQLAlchemy 2 declarative models.

The migrations in ``migrations/versions`` create exactly these tables; a test compares the two
so they cannot drift apart. Every timestamp is timezone-aware UTC on the way in and on the way out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_STATUSES = ("queued", "running", "success", "failed", "cancelled")
FINAL_STATUSES = ("success", "failed", "cancelled")
ALERT_KINDS = ("success_rate", "queue_backlog", "sync_latency")
ROLES = ("admin", "editor", "viewer")

# A tenant id: lower case so it cannot differ from itself by case alone, and safe to use in
# URLs, Redis key prefixes and Temporal search attributes without quoting.
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DEFAULT_TENANT = "default"

# The SLA rules every tenant starts with (the store seeds them when a tenant first appears;
# migration 0004 seeded them for the default tenant). A rule an operator deletes stays deleted.
DEFAULT_ALERT_RULES = (
    # Percent of runs ending in success (cancelled runs aside) over the last 5 minutes.
    {"name": "run-success-rate", "kind": "success_rate", "threshold": 99.9, "window_seconds": 300, "enabled": True},
    # Tasks waiting in the busiest task queue (live, so the window is unused).
    {"name": "task-queue-backlog", "kind": "queue_backlog", "threshold": 100.0, "window_seconds": 60, "enabled": True},
    # p95 of reported collaboration sync latencies (ms) over the last 5 minutes.
    {"name": "collab-sync-latency", "kind": "sync_latency", "threshold": 500.0, "window_seconds": 300, "enabled": True},
)


def check_tenant(tenant: Any) -> str:
    """``tenant`` if it is a valid tenant id, else a ValueError naming it and the rule."""
    if not isinstance(tenant, str) or not TENANT_ID.fullmatch(tenant):
        raise ValueError(
            f"invalid tenant id {tenant!r}: use 1 to 64 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit"
        )
    return tenant


# JSONB on Postgres (indexable, compact); plain JSON text elsewhere. None is stored as SQL NULL,
# not as the JSON text "null", so "IS NULL" means "not given".
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | str) -> datetime:
    """A timezone-aware UTC datetime. Naive values are taken to already be UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime or ISO 8601 string, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator):
    """DateTime(timezone=True) that always hands back aware UTC datetimes.

    SQLite has no timezone type: values are stored as UTC text and come back naive, so the UTC
    zone is re-attached on read. Postgres returns the session's zone, which is normalised to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        # SQLite's text format has no offset; storing UTC keeps string order == time order.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value)


# Deterministic constraint names, so later migrations can alter them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Workflow(Base):
    __tablename__ = "workflows"
    # A .flow path names one workflow within a tenant: two tenants may both have "etl.flow".
    __table_args__ = (UniqueConstraint("tenant", "path", name="uq_workflows_tenant_path"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default", index=True)
    # The .flow file this workflow is edited in; one workflow per file.
    path: Mapped[str | None] = mapped_column(String(1024))
    # Latest published version number; None until the first publish.
    version: Mapped[int | None] = mapped_column(Integer)
    # Bumped on every draft save, so clients can detect stale writes.
    draft_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    document: Mapped[Any] = mapped_column(JSONType, nullable=False)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Last Yjs state of the collaborative document, so a room can be restored without the file.
    y_document_state: Mapped[bytes | None] = mapped_column(LargeBinary)


class WorkflowVersion(Base):
    __tablename__ = "workflow_versions"

    workflow_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    plan: Mapped[Any] = mapped_column(JSONType, nullable=False)
    plan_hash: Mapped[str] = mapped_column(String(128))
    document: Mapped[Any] = mapped_column(JSONType, nullable=False)
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkflowRun(Base):
    __tablename__ = "workflow_runs"
    __table_args__ = (
        Index("ix_workflow_runs_workflow_id_start_time", "workflow_id", "start_time"),
        # Covering indexes for the dashboard's aggregates (metrics.py), which are always of one
        # tenant: success rate and burn rates count outcomes by end time, throughput counts runs
        # by start time and status (and lists go by start time); with the status in the index
        # neither has to visit the table.
        Index("ix_workflow_runs_tenant_end_time_status", "tenant", "end_time", "status"),
        Index("ix_workflow_runs_tenant_start_time_status", "tenant", "start_time", "status"),
    )

    # The Temporal workflow id.
    run_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # No foreign key: runs started elsewhere (another deployment, the Temporal CLI) are still recorded.
    workflow_id: Mapped[str | None] = mapped_column(String(36))
    # A published version number as text ("3"), or "draft".
    version: Mapped[str | None] = mapped_column(String(32))
    plan_hash: Mapped[str | None] = mapped_column(String(128))
    trigger: Mapped[str] = mapped_column(String(64), default="manual", server_default="manual")
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    input: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    error: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(64))
    search_attributes: Mapped[Any] = mapped_column(JSONType, default=dict, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the run's node timings were extracted from its history (None: not yet), so a
    # finished run's history is read once, whichever process syncs it first.
    timings_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NodeTiming(Base):
    """One segment of a finished run's trace: an activity attempt, a timer or approval wait, or a
    control step, with its duration. Extracted once from history when the run is final, so
    latency percentiles are SQL over this table instead of reading thousands of histories.

    ``workflow_id`` and ``tenant`` are copied from the run so aggregates never need a join."""

    __tablename__ = "node_timings"
    __table_args__ = (
        # Covering for latency: percentiles per node type read durations off the index alone.
        Index("ix_node_timings_tenant_node_type_started", "tenant", "node_type", "started", "kind", "duration_ms"),
        Index("ix_node_timings_tenant_started", "tenant", "started"),
        Index("ix_node_timings_run_id", "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(255))
    node: Mapped[str] = mapped_column(String(255))
    node_type: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # activity, timer, approval, control
    # Loop iteration ("2", or "1.3" when nested), None outside loops.
    iteration: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    started: Mapped[datetime] = mapped_column(UTCDateTime)
    ended: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    workflow_id: Mapped[str | None] = mapped_column(String(36))
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")


class LogRecord(Base):
    __tablename__ = "logs"
    __table_args__ = (
        Index("ix_logs_run_id_id", "run_id", "id"),
        # The retention purge deletes by age, one tenant at a time (retention.py).
        Index("ix_logs_tenant_timestamp", "tenant", "timestamp"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    run_id: Mapped[str] = mapped_column(String(255))
    # Node id, or the activity name when the node is not known.
    node: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int | None] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(64))
    extra: Mapped[Any | None] = mapped_column(JSONType, nullable=True)


class AuditEntry(Base):
    """Who did what, when, in which tenant. Append-only: on PostgreSQL the application role may
    only SELECT and INSERT it (see migrate.grant_app_role)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_tenant_id", "tenant", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(1024))
    detail: Mapped[Any | None] = mapped_column(JSONType, nullable=True)


class Integration(Base):
    """A named credential (API key, OAuth token) of a provider, encrypted at rest.

    Nodes name an integration in their config; activities fetch and decrypt its secret when
    they run, so secrets never travel in Temporal payloads or sit in .flow files."""

    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_integrations_tenant_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    name: Mapped[str] = mapped_column(String(255))
    provider: Mapped[str] = mapped_column(String(64))
    # The JSON secret, envelope-encrypted (secrets.py): its own AES-256-GCM data key, wrapped by a KEK.
    secret: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # Non-secret settings shown to users (base URL, account name, scopes).
    settings: Mapped[Any] = mapped_column(JSONType, default=dict, nullable=False)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OAuthProvider(Base):
    """An OAuth 2.0 authorization server a tenant connects integrations through: its endpoints and
    this deployment's client registration there. The client secret is encrypted like a secret."""

    __tablename__ = "oauth_providers"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_oauth_providers_tenant_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    # Also the provider of the integrations connected through it (e.g. "hubspot").
    name: Mapped[str] = mapped_column(String(64))
    authorize_url: Mapped[str] = mapped_column(String(2048))
    token_url: Mapped[str] = mapped_column(String(2048))
    revocation_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    # Fixed callback URL registered at the provider; None: derived from the request that starts.
    redirect_uri: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    client_id: Mapped[str] = mapped_column(String(512))
    client_secret: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    scopes: Mapped[Any] = mapped_column(JSONType, default=list, nullable=False)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OAuthAuthorization(Base):
    """An authorization-code flow under way: the hash of its state (the state itself is only in the
    user's browser), the PKCE verifier (encrypted), who started it and until when it is valid.
    Deleted when the callback arrives, whatever its outcome: a state is used once."""

    __tablename__ = "oauth_authorizations"
    __table_args__ = (Index("ix_oauth_authorizations_expires_at", "expires_at"),)

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    provider: Mapped[str] = mapped_column(String(64))
    integration: Mapped[str] = mapped_column(String(255))
    started_by: Mapped[str] = mapped_column(String(255))
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    code_verifier: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    # Public settings the connected integration gets (e.g. base_url).
    settings: Mapped[Any] = mapped_column(JSONType, default=dict, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TriggerRegistration(Base):
    """What a published flow's trigger nodes listen on: a webhook id, an event topic, a schedule.

    Written when a flow is published (replacing the flow's previous registrations) and removed
    when it is unpublished; looked up when a webhook call or an event arrives."""

    __tablename__ = "trigger_registrations"
    __table_args__ = (
        UniqueConstraint("workflow_id", "node_id", name="uq_trigger_registrations_workflow_id_node_id"),
        Index("ix_trigger_registrations_tenant_kind_key", "tenant", "kind", "key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    workflow_id: Mapped[str] = mapped_column(String(36), ForeignKey("workflows.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))  # webhook, event, cron
    key: Mapped[str] = mapped_column(String(512))  # hook id, topic, schedule id
    version: Mapped[int] = mapped_column(Integer)
    # The registration's secret (a webhook signing secret), envelope-encrypted like integrations'.
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    config: Mapped[Any] = mapped_column(JSONType, default=dict, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertRule(Base):
    """A condition watched by ``alerts.evaluate``; rules are data, so they are edited, not coded.

    ``threshold`` is in the kind's unit: percent for success_rate (alert below it), tasks for
    queue_backlog and milliseconds for sync_latency (alert above them). ``window_seconds`` is how
    far back the rule looks (queue_backlog reads the live backlog and ignores it)."""

    __tablename__ = "alert_rules"
    # Names are per tenant: every tenant has its own "run-success-rate".
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_alert_rules_tenant_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[float] = mapped_column(Float)
    window_seconds: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # A flow started (its published version) when an alert of this rule opens. Deleting the
    # flow only drops the action: the rule keeps watching.
    action_workflow_id: Mapped[str | None] = mapped_column(String(36), ForeignKey("workflows.id", ondelete="SET NULL"))


class Alert(Base):
    """One violation of a rule, from when it was seen to when it no longer was.

    At most one alert per rule is open (``cleared_at`` None); while it stays open each
    evaluation updates its ``value`` and ``message`` instead of adding rows."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_rule_id_cleared_at", "rule_id", "cleared_at"),
        Index("ix_alerts_tenant_opened_at", "tenant", "opened_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    rule_id: Mapped[int] = mapped_column(Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    value: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    # The run of the rule's action flow this alert started, if any.
    action_run_id: Mapped[str | None] = mapped_column(String(255))


class MetricSample(Base):
    """A measurement reported from outside the store's own tables (collaboration sync latency),
    kept so alert rules can read a window of it."""

    __tablename__ = "metric_samples"
    __table_args__ = (Index("ix_metric_samples_tenant_name_timestamp", "tenant", "name", "timestamp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(64), default="default", server_default="default")
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tenant(Base):
    """The tenants that exist, so background jobs (retention, alerts) can visit each one.

    Not tenant-scoped: it holds nothing but ids. A tenant is added when its first workflow,
    member, integration, alert rule or run is written (``Store.ensure_tenant``)."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Member(Base):
    """A user's role in a tenant: admin, editor or viewer (``ROLES``)."""

    __tablename__ = "members"
    __table_args__ = (PrimaryKeyConstraint("tenant", "user", name="pk_members"),)

    tenant: Mapped[str] = mapped_column(String(64))
    user: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    # Who last set this role, and when.
    added_by: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RefreshToken(Base):
    """A refresh token handed out at sign-in or rotation. Only its sha256 is stored.

    Each is good for one use (``used_at``); all tokens rotated from one sign-in share a
    ``family``, so presenting a spent token again revokes the whole family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_tenant_family", "tenant", "family"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    family: Mapped[str] = mapped_column(String(36))
    user: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str] = mapped_column(String(64))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# Every table whose rows belong to one tenant: filtered by the store, and on PostgreSQL guarded
# by row-level security (migration 0006). Only ``tenants`` (ids alone) is outside.
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
