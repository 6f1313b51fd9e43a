"""``Store``: the engine's persistence API - workflows, published versions, runs, logs, audit,
alert rules and alerts, members and refresh tokens, and the retention purge.

Methods take and return plain dicts (JSON-friendly apart from timezone-aware UTC datetimes), so
HTTP handlers, the worker and the kernel share one vocabulary and never see ORM objects.
Every method is its own short transaction; the class is safe to share between threads.

A ``Store`` belongs to one tenant (``store.tenant``; ``store.for_tenant(t)`` gives another
tenant's, on the same connection pool). Every read is filtered to that tenant, every insert
writes it, updates and deletes only reach its rows, and a record naming another tenant is
refused. On PostgreSQL row-level security enforces the same below the store (engine.py sets
the tenant on every transaction), so a query the store forgot to filter still sees nothing else.

With a read replica (``read_url``, FLOWORCH_DATABASE_READ_URL) the reads that tolerate
replication lag go to it: they are the methods that use ``self._lagging``, namely the run list
(``list_runs``, and with it the dead letters), the audit log (``list_audit``) and the aggregate
queries of the dashboard, alerts and metrics (``reader``). Everything else reads the primary,
so a record someone just wrote is there when they read it back: a run's own record right after
it starts (``get_run``), its logs and trace, workflows and versions, members, tokens and
everything read inside a write transaction. The replica's transactions carry the same tenant
setting as the primary's (engine.py), and it is never migrated: its schema arrives by replication.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Table, and_, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from . import migrate
from .engine import READ_URL_SETTING, make_engine, normalise_url, replica_engine, scoped, writer
from .models import (
    ALERT_KINDS,
    DEFAULT_ALERT_RULES,
    DEFAULT_TENANT,
    FINAL_STATUSES,
    ROLES,
    RUN_STATUSES,
    Alert,
    AlertRule,
    AuditEntry,
    Integration,
    LogRecord,
    Member,
    MetricSample,
    NodeTiming,
    OAuthAuthorization,
    OAuthProvider,
    RefreshToken,
    Tenant,
    TriggerRegistration,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
    as_utc,
    check_tenant,
    utcnow,
)


def _table(model: Any) -> Table:
    table = model.__table__  # typed as any FromClause; a declarative model's is its Table
    assert isinstance(table, Table)
    return table


workflows = _table(Workflow)
versions = _table(WorkflowVersion)
runs = _table(WorkflowRun)
logs = _table(LogRecord)
audit_log = _table(AuditEntry)
integrations = _table(Integration)
triggers = _table(TriggerRegistration)
node_timings = _table(NodeTiming)
alert_rules = _table(AlertRule)
alerts = _table(Alert)
metric_samples = _table(MetricSample)
tenants_table = _table(Tenant)
members = _table(Member)
refresh_tokens = _table(RefreshToken)
INTEGRATION_PUBLIC = [c for c in integrations.c if c.key != "secret"]
oauth_providers = _table(OAuthProvider)
oauth_authorizations = _table(OAuthAuthorization)
OAUTH_PROVIDER_PUBLIC = [c for c in oauth_providers.c if c.key != "client_secret"]

# Collaborative state is bytes and can be large: served by its own methods, not in workflow dicts.
WORKFLOW_FIELDS = [c for c in workflows.c if c.key != "y_document_state"]
RUN_FIELDS = frozenset(c.key for c in runs.c) - {"updated_at"}
# How far along a run is; a report never moves a run backwards (reports arrive out of order).
STATUS_RANK = {"queued": 0, "running": 1, **{s: 2 for s in FINAL_STATUSES}}
# Columns that describe the outcome: kept together with the status they belong to.
OUTCOME_FIELDS = ("status", "end_time", "error")
TIMING_KINDS = ("activity", "timer", "approval", "control")
TIMING_FIELDS = ("node", "node_type", "kind", "iteration", "attempt", "started", "ended", "duration_ms", "status")
# Rows per INSERT: SQLite allows 32766 bound parameters per statement, at 13 columns a row.
TIMING_CHUNK = 2000
ALERT_RULE_FIELDS = ("name", "kind", "threshold", "window_seconds", "enabled", "action_workflow_id")
# Rows deleted per purge transaction: short transactions keep the SQLite write lock (and
# Postgres row locks) brief while a first purge of a long history catches up.
PURGE_CHUNK = 5000
# SQLSTATE insufficient_privilege: what PostgreSQL answers when row-level security refuses a row.
RLS_REFUSED = "42501"


class NotFound(KeyError):
    """An id that names nothing in the store. A KeyError, so ``except KeyError`` works."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class Store:
    def __init__(
        self, url: str, tenant: str = DEFAULT_TENANT, owner_url: str | None = None, read_url: str | None = None
    ) -> None:
        """Open (and migrate) the store at ``url``, scoped to ``tenant``.

        ``owner_url``: on PostgreSQL, a URL logging in as the tables' owner. Migrations then run
        through it and the role of ``url`` is granted only what the application needs (see
        migrate.py); without it ``url`` migrates and owns the tables (the weaker setup).
        ``read_url``: on PostgreSQL, a read replica of ``url`` for the reads that tolerate lag
        (see the module docstring); checked here, and granted reading when ``owner_url`` migrates."""
        self.url = normalise_url(url)
        self.tenant = check_tenant(tenant)
        self._root = self
        self._known_tenants: set[str] = set()  # ensured this process: shared by for_tenant views
        self._base = make_engine(self.url)
        self._read_base: Engine | None = None
        try:
            if read_url:
                if self._base.dialect.name != "postgresql":
                    raise ValueError(
                        f"{READ_URL_SETTING} is set, but FLOWORCH_DATABASE_URL is not PostgreSQL "
                        f"({self._base.dialect.name}): a read replica needs a PostgreSQL store; unset {READ_URL_SETTING}"
                    )
                self._read_base = replica_engine(read_url)
            read_role = self._read_base.url.username if self._read_base is not None else None
            if owner_url:
                owner = make_engine(owner_url)
                try:
                    migrate.upgrade(writer(owner), app_role=make_url(self.url).username, read_role=read_role)
                finally:
                    owner.dispose()
            else:
                migrate.upgrade(writer(self._base))
            if self._read_base is not None:
                migrate.check_replica(self._read_base, READ_URL_SETTING)
        except BaseException:
            self.close()
            raise
        self._scope()

    def _scope(self) -> None:
        self._engine = scoped(self._base, self.tenant)
        self._writer = writer(self._engine)
        # The reads that may lag behind the primary (module docstring): the replica, if any.
        self._lagging = scoped(self._read_base, self.tenant) if self._read_base is not None else self._engine

    def for_tenant(self, tenant: str) -> Store:
        """This store as seen by ``tenant``: same engine and pool, no migration; cheap enough
        to call per request. Closing it is a no-op (the store it came from owns the pool)."""
        tenant = check_tenant(tenant)
        if tenant == self.tenant:
            return self
        view = object.__new__(Store)
        view.url, view.tenant, view._root = self.url, tenant, self._root
        view._known_tenants, view._base, view._read_base = self._known_tenants, self._base, self._read_base
        view._scope()
        return view

    def close(self) -> None:
        if self._root is self:
            self._base.dispose()
            if self._read_base is not None:
                self._read_base.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._base.url!r}, tenant={self.tenant!r})"

    # -- tenants ---------------------------------------------------------------------
    def tenants(self) -> list[str]:
        """Every tenant id known to the store, sorted: for jobs that visit each tenant."""
        with self._engine.connect() as conn:
            return list(conn.execute(select(tenants_table.c.id).order_by(tenants_table.c.id)).scalars())

    def ensure_tenant(self) -> bool:
        """Record this store's tenant in ``tenants()``; True when it was new. A new tenant gets
        the default alert rules. Called by the methods that write a tenant's first records."""
        if self.tenant in self._known_tenants:
            return False
        with self._writer.begin() as conn:
            added = conn.execute(
                self._insert(tenants_table).values(id=self.tenant, created_at=utcnow()).on_conflict_do_nothing()
            ).rowcount
            if added:
                rules = [{**rule, "tenant": self.tenant} for rule in DEFAULT_ALERT_RULES]
                conn.execute(self._insert(alert_rules).values(rules).on_conflict_do_nothing())
        self._known_tenants.add(self.tenant)
        return bool(added)

    def _insert(self, table: Table):
        """An INSERT with this dialect's ON CONFLICT clauses."""
        return (postgresql.insert if self._base.dialect.name == "postgresql" else sqlite.insert)(table)

    def _tenant_arg(self, method: str, tenant: str | None) -> str:
        """Older callers name the tenant; it must be this store's (use ``for_tenant`` for another)."""
        if tenant is not None and tenant != self.tenant:
            raise ValueError(
                f"{method}: tenant {tenant!r} is not this store's tenant {self.tenant!r}; "
                f"use store.for_tenant({tenant!r})"
            )
        return self.tenant

    def mine(self, table: Table):
        """The condition "row belongs to this store's tenant", for queries built outside (metrics.py)."""
        return table.c.tenant == self.tenant

    # -- workflows -------------------------------------------------------------------
    def create_workflow(
        self,
        *,
        name: str,
        document: dict,
        created_by: str,
        id: str | None = None,
        tenant: str | None = None,
        path: str | None = None,
    ) -> dict:
        tenant = self._tenant_arg("create_workflow", tenant)
        _require_text("name", name)
        _require_document(document)
        self.ensure_tenant()
        now = utcnow()
        row: dict[str, Any] = {
            "id": id or str(uuid.uuid4()),
            "name": name,
            "tenant": tenant,
            "path": path,
            "version": None,
            "draft_version": 1,
            "document": document,
            "created_by": created_by,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self._writer.begin() as conn:
                conn.execute(insert(workflows).values(row))
        except IntegrityError as exc:
            # Tell apart the two unique keys, so the caller knows which one to change. Ids are
            # unique across tenants (another tenant's is invisible here: same message, no detail).
            if (
                path is not None
                and self.get_workflow(row["id"]) is None
                and self.find_workflow_by_path(path) is not None
            ):
                raise ValueError(f"workflow path {path!r} already belongs to another workflow") from exc
            raise ValueError(f"workflow id {row['id']!r} already exists; leave the id out to get a fresh one") from exc
        return self.get_workflow(row["id"])  # type: ignore[return-value]

    def get_workflow(self, id: str) -> dict | None:
        return self._one(select(*WORKFLOW_FIELDS).where(workflows.c.id == id, self.mine(workflows)))

    def list_workflows(self, tenant: str | None = None) -> list[dict]:
        """Most recently edited first."""
        self._tenant_arg("list_workflows", tenant)
        query = select(*WORKFLOW_FIELDS).where(self.mine(workflows))
        return self._all(query.order_by(workflows.c.updated_at.desc(), workflows.c.id))

    def find_workflow_by_path(self, path: str) -> dict | None:
        return self._one(select(*WORKFLOW_FIELDS).where(workflows.c.path == path, self.mine(workflows)))

    def update_draft(self, id: str, *, document: dict, by: str, name: str | None = None) -> dict:
        """Save the draft document. ``by`` is recorded in the audit log by callers, not here."""
        _require_document(document)
        changes: dict[str, Any] = {
            "document": document,
            "draft_version": workflows.c.draft_version + 1,
            "updated_at": utcnow(),
        }
        if name is not None:
            _require_text("name", name)
            changes["name"] = name
        with self._writer.begin() as conn:
            result = conn.execute(update(workflows).where(workflows.c.id == id, self.mine(workflows)).values(changes))
            if result.rowcount == 0:
                raise NotFound(f"unknown workflow id {id!r}: create it before saving a draft")
        return self.get_workflow(id)  # type: ignore[return-value]

    def get_document_state(self, id: str) -> bytes | None:
        """The stored Yjs state of the workflow's collaborative document, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(workflows.c.y_document_state).where(workflows.c.id == id, self.mine(workflows))
            ).first()
        if row is None:
            raise NotFound(f"unknown workflow id {id!r}")
        return row[0]

    def save_document_state(self, id: str, state: bytes) -> None:
        with self._writer.begin() as conn:
            result = conn.execute(
                update(workflows).where(workflows.c.id == id, self.mine(workflows)).values(y_document_state=state)
            )
            if result.rowcount == 0:
                raise NotFound(f"unknown workflow id {id!r}")

    # -- published versions --------------------------------------------------------------
    def add_version(
        self,
        workflow_id: str,
        *,
        plan: dict,
        plan_hash: str,
        document: dict,
        note: str,
        created_by: str,
    ) -> dict:
        """Publish the next version (previous max + 1) and make it the workflow's latest."""
        _require_text("plan_hash", plan_hash)
        _require_document(document)
        if plan is None:
            raise ValueError("plan is required: compile the document before publishing")
        with self._writer.begin() as conn:
            # Lock the workflow row: concurrent publishers queue here instead of racing for a number
            # (on SQLite the writer's BEGIN IMMEDIATE already serialises them).
            found = conn.execute(
                select(workflows.c.id).where(workflows.c.id == workflow_id, self.mine(workflows)).with_for_update()
            ).first()
            if found is None:
                raise NotFound(f"unknown workflow id {workflow_id!r}: cannot publish a version of it")
            latest = conn.execute(
                select(func.max(versions.c.version)).where(versions.c.workflow_id == workflow_id, self.mine(versions))
            ).scalar()
            number = (latest or 0) + 1
            now = utcnow()
            conn.execute(
                insert(versions).values(
                    workflow_id=workflow_id,
                    version=number,
                    tenant=self.tenant,
                    plan=plan,
                    plan_hash=plan_hash,
                    document=document,
                    note=note or "",
                    created_by=created_by,
                    created_at=now,
                )
            )
            conn.execute(
                update(workflows)
                .where(workflows.c.id == workflow_id, self.mine(workflows))
                .values(version=number, updated_at=now)
            )
        return self.get_version(workflow_id, number)  # type: ignore[return-value]

    def get_version(self, workflow_id: str, version: int) -> dict | None:
        return self._one(
            select(versions).where(
                versions.c.workflow_id == workflow_id, versions.c.version == int(version), self.mine(versions)
            )
        )

    def list_versions(self, workflow_id: str) -> list[dict]:
        """Newest first."""
        return self._all(
            select(versions)
            .where(versions.c.workflow_id == workflow_id, self.mine(versions))
            .order_by(versions.c.version.desc())
        )

    def unpublish_workflow(self, id: str) -> dict:
        """Mark a workflow as having no live published version (its versions are kept)."""
        with self._writer.begin() as conn:
            done = conn.execute(
                update(workflows)
                .where(workflows.c.id == id, self.mine(workflows))
                .values(version=None, updated_at=utcnow())
            )
            if done.rowcount == 0:
                raise NotFound(f"no workflow with id {id!r}")
        return self.get_workflow(id)  # type: ignore[return-value]

    def delete_workflow(self, id: str) -> None:
        """Delete a workflow, its versions and trigger registrations; its run records stay."""
        with self._writer.begin() as conn:
            conn.execute(triggers.delete().where(triggers.c.workflow_id == id, self.mine(triggers)))
            conn.execute(versions.delete().where(versions.c.workflow_id == id, self.mine(versions)))
            done = conn.execute(workflows.delete().where(workflows.c.id == id, self.mine(workflows)))
            if done.rowcount == 0:
                raise NotFound(f"no workflow with id {id!r}")

    # -- integrations ------------------------------------------------------------------
    def put_integration(
        self,
        *,
        name: str,
        provider: str,
        secret: bytes,
        settings: dict | None,
        created_by: str,
        tenant: str | None = None,
    ) -> dict:
        """Create or replace the integration ``name`` of the tenant. ``secret`` is already encrypted."""
        tenant = self._tenant_arg("put_integration", tenant)
        _require_text("name", name)
        _require_text("provider", provider)
        self.ensure_tenant()
        now = utcnow()
        with self._writer.begin() as conn:
            existing = conn.execute(
                select(integrations.c.id).where(integrations.c.tenant == tenant, integrations.c.name == name)
            ).first()
            values = {"provider": provider, "secret": secret, "settings": settings or {}, "updated_at": now}
            if existing:
                conn.execute(
                    update(integrations).where(integrations.c.id == existing[0], self.mine(integrations)).values(values)
                )
            else:
                conn.execute(
                    insert(integrations).values(
                        id=str(uuid.uuid4()), tenant=tenant, name=name, created_by=created_by, created_at=now, **values
                    )
                )
        return self.get_integration(name, tenant=tenant, with_secret=False)  # type: ignore[return-value]

    def get_integration(self, name: str, *, tenant: str | None = None, with_secret: bool = True) -> dict | None:
        tenant = self._tenant_arg("get_integration", tenant)
        columns = list(integrations.c) if with_secret else INTEGRATION_PUBLIC
        return self._one(select(*columns).where(integrations.c.tenant == tenant, integrations.c.name == name))

    def list_integrations(self, tenant: str | None = None) -> list[dict]:
        tenant = self._tenant_arg("list_integrations", tenant)
        return self._all(
            select(*INTEGRATION_PUBLIC).where(integrations.c.tenant == tenant).order_by(integrations.c.name)
        )

    def delete_integration(self, name: str, *, tenant: str | None = None) -> None:
        tenant = self._tenant_arg("delete_integration", tenant)
        with self._writer.begin() as conn:
            done = conn.execute(
                integrations.delete().where(integrations.c.tenant == tenant, integrations.c.name == name)
            )
            if done.rowcount == 0:
                raise NotFound(f"no integration named {name!r}")

    # -- OAuth providers and pending authorizations --------------------------------------
    def put_oauth_provider(
        self,
        *,
        name: str,
        authorize_url: str,
        token_url: str,
        revocation_url: str | None,
        redirect_uri: str | None,
        client_id: str,
        client_secret: bytes,
        scopes: list[str],
        created_by: str,
        tenant: str | None = None,
    ) -> dict:
        """Create or replace the OAuth provider ``name`` of a tenant. ``client_secret`` is already encrypted."""
        tenant = self._tenant_arg("put_oauth_provider", tenant)
        for field_name, value in (
            ("name", name),
            ("authorize_url", authorize_url),
            ("token_url", token_url),
            ("client_id", client_id),
        ):
            _require_text(field_name, value)
        now = utcnow()
        values = {
            "authorize_url": authorize_url, "token_url": token_url, "revocation_url": revocation_url, "redirect_uri": redirect_uri,
            "client_id": client_id, "client_secret": client_secret, "scopes": list(scopes), "updated_at": now,
        }  # fmt: skip
        with self._writer.begin() as conn:
            existing = conn.execute(
                select(oauth_providers.c.id).where(oauth_providers.c.tenant == tenant, oauth_providers.c.name == name)
            ).first()
            if existing:
                conn.execute(
                    update(oauth_providers)
                    .where(oauth_providers.c.id == existing[0], self.mine(oauth_providers))
                    .values(values)
                )
            else:
                conn.execute(
                    insert(oauth_providers).values(
                        id=str(uuid.uuid4()), tenant=tenant, name=name, created_by=created_by, created_at=now, **values
                    )
                )
        return self.get_oauth_provider(name, tenant=tenant, with_secret=False)  # type: ignore[return-value]

    def get_oauth_provider(self, name: str, *, tenant: str | None = None, with_secret: bool = True) -> dict | None:
        tenant = self._tenant_arg("get_oauth_provider", tenant)
        columns = list(oauth_providers.c) if with_secret else OAUTH_PROVIDER_PUBLIC
        return self._one(select(*columns).where(oauth_providers.c.tenant == tenant, oauth_providers.c.name == name))

    def list_oauth_providers(self, tenant: str | None = None) -> list[dict]:
        tenant = self._tenant_arg("list_oauth_providers", tenant)
        return self._all(
            select(*OAUTH_PROVIDER_PUBLIC).where(oauth_providers.c.tenant == tenant).order_by(oauth_providers.c.name)
        )

    def delete_oauth_provider(self, name: str, *, tenant: str | None = None) -> None:
        tenant = self._tenant_arg("delete_oauth_provider", tenant)
        with self._writer.begin() as conn:
            done = conn.execute(
                oauth_providers.delete().where(oauth_providers.c.tenant == tenant, oauth_providers.c.name == name)
            )
            if done.rowcount == 0:
                raise NotFound(f"no OAuth provider named {name!r}")

    def add_oauth_authorization(self, record: dict) -> None:
        """Remember an authorization under way; expired ones are dropped on the way."""
        record = {**record, "tenant": self._tenant_arg("add_oauth_authorization", record.get("tenant"))}
        now = utcnow()
        with self._writer.begin() as conn:
            conn.execute(
                oauth_authorizations.delete().where(
                    oauth_authorizations.c.expires_at < now, self.mine(oauth_authorizations)
                )
            )
            conn.execute(insert(oauth_authorizations).values(created_at=now, **record))

    def take_oauth_authorization(self, state_hash: str, *, tenant: str | None = None) -> dict | None:
        """The authorization of ``state_hash``, deleted in the same transaction: of two callbacks
        with one state, only one gets it (expired or not; the caller judges the expiry)."""
        tenant = self._tenant_arg("take_oauth_authorization", tenant)
        where = and_(oauth_authorizations.c.state_hash == state_hash, oauth_authorizations.c.tenant == tenant)
        with self._writer.begin() as conn:
            row = conn.execute(select(oauth_authorizations).where(where)).mappings().first()
            if row is None or conn.execute(oauth_authorizations.delete().where(where)).rowcount != 1:
                return None
            return dict(row)

    # -- trigger registrations ---------------------------------------------------------
    def replace_triggers(self, workflow_id: str, registrations: list[dict]) -> list[dict]:
        """Make ``registrations`` the workflow's trigger registrations; returns the ones removed.

        A registration of the same node keeps its row (and so its secret unless a new one is given)."""
        now = utcnow()
        with self._writer.begin() as conn:
            if (
                registrations
                and conn.execute(
                    select(workflows.c.id).where(workflows.c.id == workflow_id, self.mine(workflows))
                ).first()
                is None
            ):
                raise NotFound(f"unknown workflow id {workflow_id!r}: cannot register its triggers")
            current = {
                r["node_id"]: dict(r)
                for r in conn.execute(
                    select(triggers).where(triggers.c.workflow_id == workflow_id, self.mine(triggers))
                ).mappings()
            }
            wanted = {r["node_id"]: r for r in registrations}
            for node_id, reg in wanted.items():
                values = {
                    "kind": reg["kind"],
                    "key": reg["key"],
                    "version": reg["version"],
                    "config": reg.get("config") or {},
                    "updated_at": now,
                }
                if reg.get("secret") is not None:
                    values["secret"] = reg["secret"]
                if node_id in current:
                    conn.execute(
                        update(triggers)
                        .where(triggers.c.id == current[node_id]["id"], self.mine(triggers))
                        .values(values)
                    )
                else:
                    conn.execute(
                        insert(triggers).values(
                            workflow_id=workflow_id, node_id=node_id, tenant=self.tenant, created_at=now, **values
                        )
                    )
            removed = [r for node_id, r in current.items() if node_id not in wanted]
            if removed:
                conn.execute(
                    triggers.delete().where(triggers.c.id.in_([r["id"] for r in removed]), self.mine(triggers))
                )
        return removed

    def list_triggers(
        self, *, kind: str | None = None, key: str | None = None, workflow_id: str | None = None
    ) -> list[dict]:
        query = select(triggers).where(self.mine(triggers)).order_by(triggers.c.id)
        if kind is not None:
            query = query.where(triggers.c.kind == kind)
        if key is not None:
            query = query.where(triggers.c.key == key)
        if workflow_id is not None:
            query = query.where(triggers.c.workflow_id == workflow_id)
        return self._all(query)

    # -- encrypted values (key rotation, keys.py) -------------------------------------
    def encrypted_secrets(self) -> list[dict]:
        """This tenant's stored encrypted values: integration secrets and webhook signing secrets,
        as dicts with ``table``, ``id``, ``tenant``, ``label`` (what it is, for messages) and
        ``secret`` (the encrypted bytes)."""
        found = select(integrations.c.id, integrations.c.name, integrations.c.secret).where(
            integrations.c.tenant == self.tenant
        )
        hooks = select(triggers.c.id, triggers.c.workflow_id, triggers.c.node_id, triggers.c.secret).where(
            triggers.c.tenant == self.tenant, triggers.c.secret.isnot(None)
        )
        with self._engine.connect() as conn:
            out = [
                {
                    "table": "integrations",
                    "id": r.id,
                    "tenant": self.tenant,
                    "label": f"secret of integration '{r.name}'",
                    "secret": bytes(r.secret),
                }
                for r in conn.execute(found.order_by(integrations.c.name))
            ]
            out += [
                {
                    "table": "trigger_registrations", "id": r.id, "tenant": self.tenant,
                    "label": f"webhook secret of flow {r.workflow_id} node '{r.node_id}'", "secret": bytes(r.secret),
                }
                for r in conn.execute(hooks.order_by(triggers.c.id))
            ]  # fmt: skip
        return out

    def secret_tenants(self) -> list[str]:
        """Tenants with stored encrypted values that this connection can see (on PostgreSQL with
        row-level security: only this store's); with ``tenants()``, what a rotation visits."""
        union = select(integrations.c.tenant).union(select(triggers.c.tenant).where(triggers.c.secret.isnot(None)))
        with self._engine.connect() as conn:
            return sorted(conn.execute(union).scalars())

    def replace_secret(self, table: str, id: Any, old: bytes, new: bytes) -> bool:
        """Swap one of this tenant's encrypted values for its re-encrypted form, only if it is
        still ``old``: False when it was stored again (or deleted) meanwhile, so a rotation never
        overwrites a newer secret with an older one."""
        target = {"integrations": integrations, "trigger_registrations": triggers}.get(table)
        if target is None:
            raise ValueError(f"table {table!r} holds no encrypted values; use integrations or trigger_registrations")
        with self._writer.begin() as conn:
            done = conn.execute(
                update(target)
                .where(target.c.id == id, target.c.tenant == self.tenant, target.c.secret == old)
                .values(secret=new)
            )
        return done.rowcount == 1

    # -- runs ------------------------------------------------------------------------
    def upsert_run(self, record: dict) -> None:
        """Insert the run, or update the fields ``record`` gives.

        Reports come from several processes (starter, worker, history poller) in any order, so a
        status never moves backwards: once a run is final, a late queued/running report leaves
        status, end_time and error alone (its other fields still fill in).
        """
        values = _validate_run(record)
        values["tenant"] = self._tenant_arg(f"run {values['run_id']!r}", values.get("tenant"))
        self.ensure_tenant()
        now = utcnow()
        row = {"start_time": now, "search_attributes": {}, **values, "updated_at": now}
        stmt = self._insert(runs).values(row)
        changes: dict[str, Any] = {key: stmt.excluded[key] for key in values if key not in ("run_id", "tenant")}
        changes["updated_at"] = stmt.excluded.updated_at
        status = values.get("status")
        if status is not None:
            further = [s for s, rank in STATUS_RANK.items() if rank > STATUS_RANK[status]]
            if further:
                for key in OUTCOME_FIELDS:
                    if key in changes:
                        changes[key] = case((runs.c.status.in_(further), runs.c[key]), else_=stmt.excluded[key])
        # Only this tenant's run is updated: a run id of another tenant's is refused below.
        stmt = stmt.on_conflict_do_update(index_elements=[runs.c.run_id], set_=changes, where=self.mine(runs))
        refused = ValueError(f"run {values['run_id']!r} belongs to another tenant; nothing was changed")
        try:
            with self._writer.begin() as conn:
                if conn.execute(stmt).rowcount == 0:
                    raise refused
        except DBAPIError as exc:
            # PostgreSQL's row-level security refuses the conflicting row before the WHERE can skip it.
            if getattr(exc.orig, "sqlstate", None) == RLS_REFUSED:
                raise refused from None
            raise

    def get_run(self, run_id: str) -> dict | None:
        return self._one(select(runs).where(runs.c.run_id == run_id, self.mine(runs)))

    def get_runs(self, run_ids: list[str]) -> list[dict]:
        """Those of ``run_ids`` that are runs of this tenant (in no particular order)."""
        ids = list(dict.fromkeys(run_ids))
        found: list[dict] = []
        for i in range(0, len(ids), TIMING_CHUNK):
            found += self._all(select(runs).where(runs.c.run_id.in_(ids[i : i + TIMING_CHUNK]), self.mine(runs)))
        return found

    def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict]:
        """Newest start_time first."""
        query = select(runs).where(self.mine(runs)).order_by(runs.c.start_time.desc(), runs.c.run_id.desc())
        if workflow_id is not None:
            query = query.where(runs.c.workflow_id == workflow_id)
        if status is not None:
            _require_status(status)
            query = query.where(runs.c.status == status)
        return self._all(query.limit(int(limit)).offset(int(offset)), self._lagging)

    # -- node timings ------------------------------------------------------------------
    def add_node_timings(
        self, run_id: str, timings: list[dict], *, workflow_id: str | None = None, tenant: str | None = None
    ) -> int:
        """Record a finished run's node timings, replacing any recorded before: calling it again
        for the same run leaves one copy. Marks the run's ``timings_at``. Returns the row count.

        Each timing has node, node_type, kind (activity, timer, approval or control), iteration,
        attempt, started, ended, status and optionally duration_ms (else ended - started).
        ``workflow_id`` defaults to the run record's; ``tenant``, if given, must be the store's."""
        tenant = self._tenant_arg("add_node_timings", tenant)
        rows = [_validate_timing(t) for t in timings]
        with self._writer.begin() as conn:
            # Lock the run row: two processes syncing the same run then take turns (Postgres;
            # SQLite's BEGIN IMMEDIATE already serialises writers) instead of interleaving.
            run = conn.execute(
                select(runs.c.workflow_id).where(runs.c.run_id == run_id, self.mine(runs)).with_for_update()
            ).first()
            common = {
                "run_id": run_id,
                "workflow_id": workflow_id if workflow_id is not None else (run.workflow_id if run else None),
                "tenant": tenant,
            }
            conn.execute(node_timings.delete().where(node_timings.c.run_id == run_id, self.mine(node_timings)))
            values = [{**common, **row} for row in rows]
            for i in range(0, len(values), TIMING_CHUNK):
                conn.execute(insert(node_timings), values[i : i + TIMING_CHUNK])
            conn.execute(update(runs).where(runs.c.run_id == run_id, self.mine(runs)).values(timings_at=utcnow()))
        return len(rows)

    def runs_needing_timings(self, run_ids: list[str]) -> list[str]:
        """Those of ``run_ids`` that are final in the store and have no node timings recorded yet."""
        found: list[str] = []
        ids = list(dict.fromkeys(run_ids))
        with self._engine.connect() as conn:
            for i in range(0, len(ids), TIMING_CHUNK):
                query = select(runs.c.run_id).where(
                    runs.c.run_id.in_(ids[i : i + TIMING_CHUNK]),
                    self.mine(runs),
                    runs.c.status.in_(FINAL_STATUSES),
                    runs.c.timings_at.is_(None),
                )
                found.extend(conn.execute(query).scalars())
        return found

    def list_node_timings(
        self,
        run_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        node_type: str | None = None,
        kind: str | None = None,
        limit: int = 100_000,
    ) -> list[dict]:
        """Node timings, oldest ``started`` first; ``since`` inclusive, ``until`` exclusive."""
        query = select(node_timings).where(self.mine(node_timings)).order_by(node_timings.c.started, node_timings.c.id)
        if run_id is not None:
            query = query.where(node_timings.c.run_id == run_id)
        if since is not None:
            query = query.where(node_timings.c.started >= as_utc(since))
        if until is not None:
            query = query.where(node_timings.c.started < as_utc(until))
        if node_type is not None:
            query = query.where(node_timings.c.node_type == node_type)
        if kind is not None:
            query = query.where(node_timings.c.kind == kind)
        return self._all(query.limit(int(limit)))

    # -- aggregate reads ---------------------------------------------------------------
    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: aggregate queries differ in what each can do in SQL."""
        return self._engine.dialect.name

    def reader(self):
        """A read-only connection (a context manager) for aggregate queries, see metrics.py;
        the read replica's when there is one.

        On PostgreSQL it sees only this tenant's rows (row-level security); on SQLite queries
        must say so themselves: add ``store.mine(table)`` to each."""
        return self._lagging.connect()

    # -- logs ------------------------------------------------------------------------
    def add_log(
        self,
        run_id: str,
        node: str,
        level: str,
        message: str,
        *,
        attempt: int | None = None,
        trace_id: str | None = None,
        extra: dict | None = None,
        timestamp: datetime | None = None,
    ) -> int:
        with self._writer.begin() as conn:
            result = conn.execute(
                insert(logs).values(
                    tenant=self.tenant,
                    run_id=run_id,
                    node=node,
                    level=level,
                    message=message,
                    attempt=attempt,
                    trace_id=trace_id,
                    extra=extra,
                    timestamp=as_utc(timestamp) if timestamp is not None else utcnow(),
                )
            )
            return _inserted_id(result)

    def list_logs(self, run_id: str, after_id: int = 0, limit: int = 1000) -> list[dict]:
        """Oldest first; pass the last id seen as ``after_id`` to tail."""
        return self._all(
            select(logs)
            .where(logs.c.run_id == run_id, logs.c.id > int(after_id), self.mine(logs))
            .order_by(logs.c.id)
            .limit(int(limit))
        )

    # -- alert rules and alerts --------------------------------------------------------
    def list_alert_rules(self, *, enabled: bool | None = None) -> list[dict]:
        query = select(alert_rules).where(self.mine(alert_rules)).order_by(alert_rules.c.id)
        if enabled is not None:
            query = query.where(alert_rules.c.enabled == bool(enabled))
        return self._all(query)

    def get_alert_rule(self, rule: int | str) -> dict | None:
        """A rule by id, or by name."""
        column = alert_rules.c.id if isinstance(rule, int) else alert_rules.c.name
        return self._one(select(alert_rules).where(column == rule, self.mine(alert_rules)))

    def add_alert_rule(
        self,
        *,
        name: str,
        kind: str,
        threshold: float,
        window_seconds: int = 300,
        enabled: bool = True,
        action_workflow_id: str | None = None,
    ) -> dict:
        values = _validate_alert_rule(
            {
                "name": name,
                "kind": kind,
                "threshold": threshold,
                "window_seconds": window_seconds,
                "enabled": enabled,
                "action_workflow_id": action_workflow_id,
            }
        )
        self.ensure_tenant()
        with self._writer.begin() as conn:
            self._check_rule_action(conn, name, values["action_workflow_id"])
            if conn.execute(select(alert_rules.c.id).where(alert_rules.c.name == name, self.mine(alert_rules))).first():
                raise ValueError(f"an alert rule named {name!r} already exists; change it with update_alert_rule")
            rule_id = _inserted_id(conn.execute(insert(alert_rules).values(tenant=self.tenant, **values)))
        return self.get_alert_rule(int(rule_id))  # type: ignore[return-value]

    def update_alert_rule(self, rule: int | str, **changes: Any) -> dict:
        """Change fields of a rule (by id or name): threshold, window_seconds, enabled,
        action_workflow_id (None removes the action), name or kind."""
        unknown = sorted(set(changes) - set(ALERT_RULE_FIELDS))
        if unknown:
            raise ValueError(f"unknown alert rule field(s) {', '.join(unknown)}; known: {', '.join(ALERT_RULE_FIELDS)}")
        current = self.get_alert_rule(rule)
        if current is None:
            raise NotFound(f"no alert rule {rule!r}; see list_alert_rules()")
        values = _validate_alert_rule({**current, **changes})
        values = {key: values[key] for key in changes}
        with self._writer.begin() as conn:
            if "action_workflow_id" in values:
                self._check_rule_action(conn, current["name"], values["action_workflow_id"])
            if values:
                conn.execute(
                    update(alert_rules).where(alert_rules.c.id == current["id"], self.mine(alert_rules)).values(values)
                )
        return self.get_alert_rule(current["id"])  # type: ignore[return-value]

    def _check_rule_action(self, conn, name: str, workflow_id: str | None) -> None:
        if (
            workflow_id is not None
            and conn.execute(select(workflows.c.id).where(workflows.c.id == workflow_id, self.mine(workflows))).first()
            is None
        ):
            raise NotFound(
                f"alert rule {name!r}: action_workflow_id {workflow_id!r} names no workflow; create and publish the flow first"
            )

    def judge_alert(
        self, rule_id: int, *, violated: bool, value: float | None, message: str, at: datetime | None = None
    ) -> tuple[str | None, dict | None]:
        """Apply one evaluation of a rule: open an alert when it is violated and none is open,
        update the open one's value and message while it stays violated, clear it when it no
        longer is. Returns ``(change, alert)``, change being "opened", "updated", "cleared" or
        None (not violated, nothing open). A cleared alert keeps the last violating value."""
        at = as_utc(at) if at is not None else utcnow()
        with self._writer.begin() as conn:
            # Lock the rule: two servers evaluating at once take turns, so one alert opens.
            if (
                conn.execute(
                    select(alert_rules.c.id)
                    .where(alert_rules.c.id == rule_id, self.mine(alert_rules))
                    .with_for_update()
                ).first()
                is None
            ):
                raise NotFound(f"no alert rule with id {rule_id!r}")
            open_id = conn.execute(
                select(alerts.c.id)
                .where(alerts.c.rule_id == rule_id, alerts.c.cleared_at.is_(None), self.mine(alerts))
                .order_by(alerts.c.id.desc())
            ).scalar()
            if violated:
                if value is None:
                    raise ValueError(f"alert rule {rule_id}: a violation needs the value that violated it")
                if open_id is None:
                    row = {
                        "rule_id": rule_id,
                        "tenant": self.tenant,
                        "opened_at": at,
                        "value": float(value),
                        "message": message,
                    }
                    open_id, change = _inserted_id(conn.execute(insert(alerts).values(row))), "opened"
                else:
                    conn.execute(
                        update(alerts)
                        .where(alerts.c.id == open_id, self.mine(alerts))
                        .values(value=float(value), message=message)
                    )
                    change = "updated"
            elif open_id is not None:
                conn.execute(update(alerts).where(alerts.c.id == open_id, self.mine(alerts)).values(cleared_at=at))
                change = "cleared"
            else:
                return None, None
        return change, self.get_alert(int(open_id))

    def set_alert_action_run(self, alert_id: int, run_id: str) -> None:
        with self._writer.begin() as conn:
            conn.execute(update(alerts).where(alerts.c.id == alert_id, self.mine(alerts)).values(action_run_id=run_id))

    def get_alert(self, alert_id: int) -> dict | None:
        return self._one(self._alerts_query().where(alerts.c.id == alert_id))

    def list_alerts(
        self, *, open_only: bool = False, cleared_only: bool = False, rule_id: int | None = None, limit: int = 100
    ) -> list[dict]:
        """Newest first, each with its rule's name (``rule``), kind and threshold."""
        query = self._alerts_query().order_by(alerts.c.opened_at.desc(), alerts.c.id.desc())
        if open_only:
            query = query.where(alerts.c.cleared_at.is_(None))
        if cleared_only:
            query = query.where(alerts.c.cleared_at.isnot(None))
        if rule_id is not None:
            query = query.where(alerts.c.rule_id == rule_id)
        return self._all(query.limit(int(limit)))

    def _alerts_query(self):
        return (
            select(alerts, alert_rules.c.name.label("rule"), alert_rules.c.kind, alert_rules.c.threshold)
            .join(alert_rules, and_(alert_rules.c.id == alerts.c.rule_id, self.mine(alert_rules)))
            .where(self.mine(alerts))
        )

    # -- metric samples ----------------------------------------------------------------
    def add_metric_sample(self, name: str, value: float, *, at: datetime | None = None) -> None:
        _require_text("metric name", name)
        with self._writer.begin() as conn:
            conn.execute(
                insert(metric_samples).values(
                    tenant=self.tenant,
                    name=name,
                    value=float(value),
                    timestamp=as_utc(at) if at is not None else utcnow(),
                )
            )

    def metric_values(self, name: str, since: datetime, until: datetime) -> list[float]:
        """Values of ``name`` sampled in ``[since, until)``, oldest first."""
        query = (
            select(metric_samples.c.value)
            .where(
                self.mine(metric_samples),
                metric_samples.c.name == name,
                metric_samples.c.timestamp >= as_utc(since),
                metric_samples.c.timestamp < as_utc(until),
            )
            .order_by(metric_samples.c.timestamp)
        )
        with self._engine.connect() as conn:
            return [float(v) for v in conn.execute(query).scalars()]

    # -- retention ---------------------------------------------------------------------
    def purge(
        self, *, runs_ended_before: datetime | None, logs_before: datetime | None, dry_run: bool = False
    ) -> dict[str, int]:
        """Delete (or with ``dry_run`` only count) what is older than the cutoffs; None keeps all.

        Runs go by end time, and only final ones: a queued or running run is never purged,
        however old. With a run go its node timings, and alerts cleared before the same cutoff.
        Logs and metric samples go by their own timestamp. Returns the count per table.
        Only this store's tenant is purged: a job purging everything visits ``tenants()``."""
        groups: list[tuple[str, Table, Any, Any]] = []
        if runs_ended_before is not None:
            cutoff = as_utc(runs_ended_before)
            old_runs = and_(self.mine(runs), runs.c.status.in_(FINAL_STATUSES), runs.c.end_time < cutoff)
            groups += [
                ("runs", runs, runs.c.run_id, old_runs),
                ("alerts", alerts, alerts.c.id, and_(self.mine(alerts), alerts.c.cleared_at < cutoff)),
            ]
        if logs_before is not None:
            cutoff = as_utc(logs_before)
            groups += [
                ("logs", logs, logs.c.id, and_(self.mine(logs), logs.c.timestamp < cutoff)),
                (
                    "metric_samples",
                    metric_samples,
                    metric_samples.c.id,
                    and_(self.mine(metric_samples), metric_samples.c.timestamp < cutoff),
                ),
            ]
        counts = dict.fromkeys(["runs", "node_timings", "logs", "alerts", "metric_samples"], 0)
        for name, table, key, condition in groups:
            if dry_run:
                with self._engine.connect() as conn:
                    counts[name] = int(
                        conn.execute(select(func.count()).select_from(table).where(condition)).scalar() or 0
                    )
                    if table is runs:
                        doomed = select(runs.c.run_id).where(condition)
                        counts["node_timings"] = int(
                            conn.execute(
                                select(func.count()).where(node_timings.c.run_id.in_(doomed), self.mine(node_timings))
                            ).scalar()
                            or 0
                        )
                continue
            while True:
                with self._writer.begin() as conn:
                    ids = list(conn.execute(select(key).where(condition).limit(PURGE_CHUNK)).scalars())
                    if ids and table is runs:
                        done = conn.execute(
                            node_timings.delete().where(node_timings.c.run_id.in_(ids), self.mine(node_timings))
                        )
                        counts["node_timings"] += done.rowcount
                    if ids:
                        counts[name] += conn.execute(table.delete().where(key.in_(ids), self.mine(table))).rowcount
                if len(ids) < PURGE_CHUNK:
                    break
        return counts

    # -- audit -----------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str, detail: dict | None = None) -> int:
        """Append an entry for this store's tenant; returns its id. Entries are never changed."""
        with self._writer.begin() as conn:
            result = conn.execute(
                insert(audit_log).values(
                    tenant=self.tenant, actor=actor, action=action, target=target, detail=detail, timestamp=utcnow()
                )
            )
            return _inserted_id(result)

    def list_audit(
        self,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 100,
    ) -> list[dict]:
        """Newest first. ``action`` is exact, or a prefix when it ends in "." ("workflow." for
        every workflow action); ``since`` is inclusive, ``until`` exclusive. Every value is a
        bound parameter (and LIKE wildcards in a prefix are escaped)."""
        query = select(audit_log).where(self.mine(audit_log))
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        if action is not None:
            if action.endswith("."):
                query = query.where(audit_log.c.action.startswith(action, autoescape=True))
            else:
                query = query.where(audit_log.c.action == action)
        if target is not None:
            query = query.where(audit_log.c.target == target)
        if since is not None:
            query = query.where(audit_log.c.timestamp >= as_utc(since))
        if until is not None:
            query = query.where(audit_log.c.timestamp < as_utc(until))
        return self._all(query.order_by(audit_log.c.id.desc()).limit(int(limit)), self._lagging)

    # -- members ---------------------------------------------------------------------
    def add_member(self, user: str, role: str, by: str) -> dict:
        """Give ``user`` ``role`` (admin, editor or viewer) in this tenant, replacing any role
        they had; returns the member."""
        _require_text("user", user)
        _require_text("by", by)
        if role not in ROLES:
            raise ValueError(f"member {user!r}: role must be one of {', '.join(ROLES)}; got {role!r}")
        self.ensure_tenant()
        now = utcnow()
        stmt = self._insert(members).values(tenant=self.tenant, user=user, role=role, added_by=by, added_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[members.c.tenant, members.c.user],
            set_={"role": stmt.excluded.role, "added_by": stmt.excluded.added_by, "added_at": stmt.excluded.added_at},
            where=self.mine(members),
        )
        with self._writer.begin() as conn:
            conn.execute(stmt)
        return self.get_member(user)  # type: ignore[return-value]

    def get_member(self, user: str) -> dict | None:
        return self._one(select(members).where(members.c.user == user, self.mine(members)))

    def list_members(self) -> list[dict]:
        """This tenant's members, by user name."""
        return self._all(select(members).where(self.mine(members)).order_by(members.c.user))

    def remove_member(self, user: str) -> None:
        with self._writer.begin() as conn:
            done = conn.execute(members.delete().where(members.c.user == user, self.mine(members)))
            if done.rowcount == 0:
                raise NotFound(f"{user!r} is not a member of tenant {self.tenant!r}")

    # -- refresh tokens ----------------------------------------------------------------
    def add_refresh_token(self, token_id: str, family: str, user: str, expires_at: datetime) -> None:
        """Record a refresh token by ``token_id`` (the sha256 hex of the token, never the token)."""
        for field, value in (("token_id", token_id), ("family", family), ("user", user)):
            _require_text(field, value)
        with self._writer.begin() as conn:
            conn.execute(
                insert(refresh_tokens).values(
                    id=token_id,
                    family=family,
                    user=user,
                    tenant=self.tenant,
                    issued_at=utcnow(),
                    expires_at=as_utc(expires_at),
                )
            )

    def use_refresh_token(self, token_id: str) -> dict | None:
        """Spend a refresh token: mark it used and return its row as it was BEFORE, or None if
        this tenant has no such token. A returned ``used_at`` already set means the token was
        spent before (a replay: the caller revokes the family); so does ``revoked_at``. Of two
        concurrent uses exactly one sees ``used_at`` None."""
        where = and_(refresh_tokens.c.id == token_id, self.mine(refresh_tokens))
        with self._writer.begin() as conn:
            # The row lock (Postgres; SQLite's BEGIN IMMEDIATE serialises) makes read-and-mark atomic.
            row = conn.execute(select(refresh_tokens).where(where).with_for_update()).mappings().first()
            if row is None:
                return None
            if row["used_at"] is None:
                conn.execute(
                    update(refresh_tokens).where(where, refresh_tokens.c.used_at.is_(None)).values(used_at=utcnow())
                )
            return dict(row)

    def revoke_refresh_family(self, family: str) -> int:
        """Revoke every token of ``family`` not revoked yet; returns how many."""
        with self._writer.begin() as conn:
            return conn.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.family == family, refresh_tokens.c.revoked_at.is_(None), self.mine(refresh_tokens)
                )
                .values(revoked_at=utcnow())
            ).rowcount

    # -- helpers ---------------------------------------------------------------------
    def _one(self, query) -> dict | None:
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def _all(self, query, engine: Engine | None = None) -> list[dict]:
        with (engine or self._engine).connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def _require_text(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")


def _require_document(document: Any) -> None:
    if not isinstance(document, dict):
        raise ValueError(f"document must be a flow document (a JSON object), got {type(document).__name__}")


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    assert key is not None, "an INSERT's result has the new row's key"
    return int(key[0])


def _require_status(status: Any) -> None:
    if status not in STATUS_RANK:
        raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}; got {status!r}")


def _validate_alert_rule(rule: dict) -> dict:
    values: dict[str, Any] = {key: rule.get(key) for key in ALERT_RULE_FIELDS}
    name = values["name"]
    _require_text("alert rule name", name)
    if values["kind"] not in ALERT_KINDS:
        raise ValueError(f"alert rule {name!r}: kind must be one of {', '.join(ALERT_KINDS)}; got {values['kind']!r}")
    try:
        values["threshold"] = float(values["threshold"])
        values["window_seconds"] = int(values["window_seconds"])
    except (TypeError, ValueError):
        raise ValueError(
            f"alert rule {name!r}: threshold must be a number and window_seconds a whole number of seconds; "
            f"got {values['threshold']!r} and {values['window_seconds']!r}"
        ) from None
    if values["window_seconds"] <= 0:
        raise ValueError(f"alert rule {name!r}: window_seconds must be positive, got {values['window_seconds']}")
    values["enabled"] = bool(values["enabled"])
    return values


def _validate_timing(timing: dict) -> dict:
    row = {key: timing.get(key) for key in TIMING_FIELDS}
    node = row["node"] or "?"
    if row["kind"] not in TIMING_KINDS:
        raise ValueError(f"node timing of {node!r}: kind must be one of {', '.join(TIMING_KINDS)}; got {row['kind']!r}")
    for key in ("node", "node_type", "status"):
        _require_text(f"node timing of {node!r}: {key}", row[key])
    if row["started"] is None:
        raise ValueError(f"node timing of {node!r} needs a started time")
    row["started"] = as_utc(row["started"])
    row["ended"] = as_utc(row["ended"]) if row["ended"] is not None else None
    if row["duration_ms"] is None and row["ended"] is not None:
        row["duration_ms"] = (row["ended"] - row["started"]).total_seconds() * 1000
    row["attempt"] = int(row["attempt"] or 1)
    if row["iteration"] is not None:
        row["iteration"] = str(row["iteration"])
    return row


def _validate_run(record: dict) -> dict:
    unknown = sorted(set(record) - RUN_FIELDS)
    if unknown:
        raise ValueError(f"unknown run field(s) {', '.join(unknown)}; known: {', '.join(sorted(RUN_FIELDS))}")
    if not record.get("run_id"):
        raise ValueError("run record needs a run_id (the Temporal workflow id)")
    values = dict(record)
    if "status" in values:
        _require_status(values["status"])
    if values.get("version") is not None:
        values["version"] = str(values["version"])  # 3 and "3" mean the same published version
    for key in ("start_time", "end_time"):
        if values.get(key) is not None:
            values[key] = as_utc(values[key])
    for key in ("status", "start_time", "search_attributes", "trigger", "tenant"):
        if key in values and values[key] is None:
            raise ValueError(f"run field {key} cannot be None")
    return values
