"""``Store``: the engine's persistence API - workflows, published versions, runs, logs, audit.

Methods take and return plain dicts (JSON-friendly apart from timezone-aware UTC datetimes), so
HTTP handlers, the worker and the kernel share one vocabulary and never see ORM objects.
Every method is its own short transaction; the class is safe to share between threads.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from . import migrate
from .engine import make_engine, normalise_url, writer
from .models import (
    FINAL_STATUSES,
    RUN_STATUSES,
    AuditEntry,
    Integration,
    LogRecord,
    NodeTiming,
    TriggerRegistration,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
    as_utc,
    utcnow,
)

workflows: Table = Workflow.__table__
versions: Table = WorkflowVersion.__table__
runs: Table = WorkflowRun.__table__
logs: Table = LogRecord.__table__
audit_log: Table = AuditEntry.__table__
integrations: Table = Integration.__table__
triggers: Table = TriggerRegistration.__table__
node_timings: Table = NodeTiming.__table__
INTEGRATION_PUBLIC = [c for c in integrations.c if c.key != "secret"]

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


class NotFound(KeyError):
    """An id that names nothing in the store. A KeyError, so ``except KeyError`` works."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class Store:
    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self._engine = make_engine(self.url)
        self._writer = writer(self._engine)
        try:
            migrate.upgrade(self._writer)
        except BaseException:
            self._engine.dispose()
            raise

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self._engine.url!r})"

    # -- workflows -------------------------------------------------------------------
    def create_workflow(
        self,
        *,
        name: str,
        document: dict,
        created_by: str,
        id: str | None = None,
        tenant: str = "default",
        path: str | None = None,
    ) -> dict:
        _require_text("name", name)
        _require_document(document)
        now = utcnow()
        row = {
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
            # Tell apart the two unique keys, so the caller knows which one to change.
            clash = self.get_workflow(row["id"])
            if clash is not None:
                raise ValueError(f"workflow id {row['id']!r} already exists") from exc
            if path is not None and self.find_workflow_by_path(path) is not None:
                raise ValueError(f"workflow path {path!r} already belongs to another workflow") from exc
            raise
        return self.get_workflow(row["id"])  # type: ignore[return-value]

    def get_workflow(self, id: str) -> dict | None:
        return self._one(select(*WORKFLOW_FIELDS).where(workflows.c.id == id))

    def list_workflows(self, tenant: str | None = None) -> list[dict]:
        """Most recently edited first."""
        query = select(*WORKFLOW_FIELDS).order_by(workflows.c.updated_at.desc(), workflows.c.id)
        if tenant is not None:
            query = query.where(workflows.c.tenant == tenant)
        return self._all(query)

    def find_workflow_by_path(self, path: str) -> dict | None:
        return self._one(select(*WORKFLOW_FIELDS).where(workflows.c.path == path))

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
            result = conn.execute(update(workflows).where(workflows.c.id == id).values(changes))
            if result.rowcount == 0:
                raise NotFound(f"unknown workflow id {id!r}: create it before saving a draft")
        return self.get_workflow(id)  # type: ignore[return-value]

    def get_document_state(self, id: str) -> bytes | None:
        """The stored Yjs state of the workflow's collaborative document, if any."""
        with self._engine.connect() as conn:
            row = conn.execute(select(workflows.c.y_document_state).where(workflows.c.id == id)).first()
        if row is None:
            raise NotFound(f"unknown workflow id {id!r}")
        return row[0]

    def save_document_state(self, id: str, state: bytes) -> None:
        with self._writer.begin() as conn:
            result = conn.execute(update(workflows).where(workflows.c.id == id).values(y_document_state=state))
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
                select(workflows.c.id).where(workflows.c.id == workflow_id).with_for_update()
            ).first()
            if found is None:
                raise NotFound(f"unknown workflow id {workflow_id!r}: cannot publish a version of it")
            latest = conn.execute(
                select(func.max(versions.c.version)).where(versions.c.workflow_id == workflow_id)
            ).scalar()
            number = (latest or 0) + 1
            now = utcnow()
            conn.execute(
                insert(versions).values(
                    workflow_id=workflow_id,
                    version=number,
                    plan=plan,
                    plan_hash=plan_hash,
                    document=document,
                    note=note or "",
                    created_by=created_by,
                    created_at=now,
                )
            )
            conn.execute(
                update(workflows).where(workflows.c.id == workflow_id).values(version=number, updated_at=now)
            )
        return self.get_version(workflow_id, number)  # type: ignore[return-value]

    def get_version(self, workflow_id: str, version: int) -> dict | None:
        return self._one(
            select(versions).where(versions.c.workflow_id == workflow_id, versions.c.version == int(version))
        )

    def list_versions(self, workflow_id: str) -> list[dict]:
        """Newest first."""
        return self._all(
            select(versions).where(versions.c.workflow_id == workflow_id).order_by(versions.c.version.desc())
        )

    def unpublish_workflow(self, id: str) -> dict:
        """Mark a workflow as having no live published version (its versions are kept)."""
        with self._writer.begin() as conn:
            done = conn.execute(update(workflows).where(workflows.c.id == id).values(version=None, updated_at=utcnow()))
            if done.rowcount == 0:
                raise NotFound(f"no workflow with id {id!r}")
        return self.get_workflow(id)  # type: ignore[return-value]

    def delete_workflow(self, id: str) -> None:
        """Delete a workflow, its versions and trigger registrations; its run records stay."""
        with self._writer.begin() as conn:
            conn.execute(triggers.delete().where(triggers.c.workflow_id == id))
            conn.execute(versions.delete().where(versions.c.workflow_id == id))
            done = conn.execute(workflows.delete().where(workflows.c.id == id))
            if done.rowcount == 0:
                raise NotFound(f"no workflow with id {id!r}")

    # -- integrations ------------------------------------------------------------------
    def put_integration(
        self, *, name: str, provider: str, secret: bytes, settings: dict | None, created_by: str, tenant: str = "default"
    ) -> dict:
        """Create or replace the integration ``name`` of a tenant. ``secret`` is already encrypted."""
        _require_text("name", name)
        _require_text("provider", provider)
        now = utcnow()
        with self._writer.begin() as conn:
            existing = conn.execute(
                select(integrations.c.id).where(integrations.c.tenant == tenant, integrations.c.name == name)
            ).first()
            values = {"provider": provider, "secret": secret, "settings": settings or {}, "updated_at": now}
            if existing:
                conn.execute(update(integrations).where(integrations.c.id == existing[0]).values(values))
            else:
                conn.execute(
                    insert(integrations).values(
                        id=str(uuid.uuid4()), tenant=tenant, name=name, created_by=created_by, created_at=now, **values
                    )
                )
        return self.get_integration(name, tenant=tenant, with_secret=False)  # type: ignore[return-value]

    def get_integration(self, name: str, *, tenant: str = "default", with_secret: bool = True) -> dict | None:
        columns = list(integrations.c) if with_secret else INTEGRATION_PUBLIC
        return self._one(select(*columns).where(integrations.c.tenant == tenant, integrations.c.name == name))

    def list_integrations(self, tenant: str = "default") -> list[dict]:
        return self._all(select(*INTEGRATION_PUBLIC).where(integrations.c.tenant == tenant).order_by(integrations.c.name))

    def delete_integration(self, name: str, *, tenant: str = "default") -> None:
        with self._writer.begin() as conn:
            done = conn.execute(integrations.delete().where(integrations.c.tenant == tenant, integrations.c.name == name))
            if done.rowcount == 0:
                raise NotFound(f"no integration named {name!r}")

    # -- trigger registrations ---------------------------------------------------------
    def replace_triggers(self, workflow_id: str, registrations: list[dict]) -> list[dict]:
        """Make ``registrations`` the workflow's trigger registrations; returns the ones removed.

        A registration of the same node keeps its row (and so its secret unless a new one is given)."""
        now = utcnow()
        with self._writer.begin() as conn:
            current = {r["node_id"]: dict(r) for r in conn.execute(select(triggers).where(triggers.c.workflow_id == workflow_id)).mappings()}
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
                    conn.execute(update(triggers).where(triggers.c.id == current[node_id]["id"]).values(values))
                else:
                    conn.execute(insert(triggers).values(workflow_id=workflow_id, node_id=node_id, created_at=now, **values))
            removed = [r for node_id, r in current.items() if node_id not in wanted]
            if removed:
                conn.execute(triggers.delete().where(triggers.c.id.in_([r["id"] for r in removed])))
        return removed

    def list_triggers(self, *, kind: str | None = None, key: str | None = None, workflow_id: str | None = None) -> list[dict]:
        query = select(triggers).order_by(triggers.c.id)
        if kind is not None:
            query = query.where(triggers.c.kind == kind)
        if key is not None:
            query = query.where(triggers.c.key == key)
        if workflow_id is not None:
            query = query.where(triggers.c.workflow_id == workflow_id)
        return self._all(query)

    # -- runs ------------------------------------------------------------------------
    def upsert_run(self, record: dict) -> None:
        """Insert the run, or update the fields ``record`` gives.

        Reports come from several processes (starter, worker, history poller) in any order, so a
        status never moves backwards: once a run is final, a late queued/running report leaves
        status, end_time and error alone (its other fields still fill in).
        """
        values = _validate_run(record)
        now = utcnow()
        row = {"start_time": now, "search_attributes": {}, **values, "updated_at": now}
        dialect = self._engine.dialect.name
        stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(runs).values(row)
        changes: dict[str, Any] = {key: stmt.excluded[key] for key in values if key != "run_id"}
        changes["updated_at"] = stmt.excluded.updated_at
        status = values.get("status")
        if status is not None:
            further = [s for s, rank in STATUS_RANK.items() if rank > STATUS_RANK[status]]
            if further:
                for key in OUTCOME_FIELDS:
                    if key in changes:
                        changes[key] = case((runs.c.status.in_(further), runs.c[key]), else_=stmt.excluded[key])
        stmt = stmt.on_conflict_do_update(index_elements=[runs.c.run_id], set_=changes)
        with self._writer.begin() as conn:
            conn.execute(stmt)

    def get_run(self, run_id: str) -> dict | None:
        return self._one(select(runs).where(runs.c.run_id == run_id))

    def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict]:
        """Newest start_time first."""
        query = select(runs).order_by(runs.c.start_time.desc(), runs.c.run_id.desc())
        if workflow_id is not None:
            query = query.where(runs.c.workflow_id == workflow_id)
        if status is not None:
            _require_status(status)
            query = query.where(runs.c.status == status)
        return self._all(query.limit(int(limit)).offset(int(offset)))

    # -- node timings ------------------------------------------------------------------
    def add_node_timings(self, run_id: str, timings: list[dict], *, workflow_id: str | None = None, tenant: str | None = None) -> int:
        """Record a finished run's node timings, replacing any recorded before: calling it again
        for the same run leaves one copy. Marks the run's ``timings_at``. Returns the row count.

        Each timing has node, node_type, kind (activity, timer, approval or control), iteration,
        attempt, started, ended, status and optionally duration_ms (else ended - started).
        ``workflow_id`` and ``tenant`` default to the run record's."""
        rows = [_validate_timing(t) for t in timings]
        with self._writer.begin() as conn:
            # Lock the run row: two processes syncing the same run then take turns (Postgres;
            # SQLite's BEGIN IMMEDIATE already serialises writers) instead of interleaving.
            run = conn.execute(
                select(runs.c.workflow_id, runs.c.tenant).where(runs.c.run_id == run_id).with_for_update()
            ).first()
            common = {
                "run_id": run_id,
                "workflow_id": workflow_id if workflow_id is not None else (run.workflow_id if run else None),
                "tenant": tenant or (run.tenant if run else None) or "default",
            }
            conn.execute(node_timings.delete().where(node_timings.c.run_id == run_id))
            values = [{**common, **row} for row in rows]
            for i in range(0, len(values), TIMING_CHUNK):
                conn.execute(insert(node_timings), values[i : i + TIMING_CHUNK])
            conn.execute(update(runs).where(runs.c.run_id == run_id).values(timings_at=utcnow()))
        return len(rows)

    def runs_needing_timings(self, run_ids: list[str]) -> list[str]:
        """Those of ``run_ids`` that are final in the store and have no node timings recorded yet."""
        found: list[str] = []
        ids = list(dict.fromkeys(run_ids))
        with self._engine.connect() as conn:
            for i in range(0, len(ids), TIMING_CHUNK):
                query = select(runs.c.run_id).where(
                    runs.c.run_id.in_(ids[i : i + TIMING_CHUNK]),
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
        query = select(node_timings).order_by(node_timings.c.started, node_timings.c.id)
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
        """A read-only connection (a context manager) for aggregate queries, see metrics.py."""
        return self._engine.connect()

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
            return int(result.inserted_primary_key[0])

    def list_logs(self, run_id: str, after_id: int = 0, limit: int = 1000) -> list[dict]:
        """Oldest first; pass the last id seen as ``after_id`` to tail."""
        return self._all(
            select(logs)
            .where(logs.c.run_id == run_id, logs.c.id > int(after_id))
            .order_by(logs.c.id)
            .limit(int(limit))
        )

    # -- audit -----------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str, detail: dict | None = None) -> int:
        with self._writer.begin() as conn:
            result = conn.execute(
                insert(audit_log).values(
                    actor=actor, action=action, target=target, detail=detail, timestamp=utcnow()
                )
            )
            return int(result.inserted_primary_key[0])

    def list_audit(self, limit: int = 100) -> list[dict]:
        """Newest first."""
        return self._all(select(audit_log).order_by(audit_log.c.id.desc()).limit(int(limit)))

    # -- helpers ---------------------------------------------------------------------
    def _one(self, query) -> dict | None:
        with self._engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None

    def _all(self, query) -> list[dict]:
        with self._engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def _require_text(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} must be a non-empty string, got {value!r}")


def _require_document(document: Any) -> None:
    if not isinstance(document, dict):
        raise ValueError(f"document must be a flow document (a JSON object), got {type(document).__name__}")


def _require_status(status: Any) -> None:
    if status not in STATUS_RANK:
        raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}; got {status!r}")


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
