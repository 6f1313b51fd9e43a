"""The service layer: every operation on flows, versions and runs, in one place.

The REST handlers and the kernel API are thin shells over `FlowService`. It talks to Temporal
(runs) and to the store (workflows, versions, run records, audit). Run records follow Temporal:
`sync_runs` copies what Temporal knows about every FlowRun execution into the store, so a run
started from anywhere (another kernel, the Temporal CLI) appears with its final status.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, overload

import jsonschema
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from . import alerts, metrics, nodes, retention, trace, tracing
from .errors import BadRequest, Conflict, NotFound
from .flowdoc import FlowDocument, parse_data
from .messages import DECIDE_UPDATE, NODE_MEMO_PREFIX, WORKFLOW_TYPE, Decision
from .nodes.spec import TriggerContext
from .plan import check_reuse, compile_plan, run_task_queues
from .settings import Settings
from .status import NodeStatus, node_statuses, run_status
from .store import Store, store_for
from .temporal import SEARCH_ATTRIBUTES, connect

FINAL = ("success", "failed", "cancelled")
# Seconds a sync may spend reading histories of newly finished runs for their node timings
# (~10 ms a run): kernels sync too (fo.runs()), and must not wait long on a backlog.
TIMINGS_BUDGET_S = 2.0
LIVE_METRICS_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class FlowService:
    """The operations of one tenant (``settings.tenant``): its store is scoped to it, and every run
    read from Temporal is checked to be the tenant's. ``for_tenant`` gives another tenant's view
    of the same connections, cheaply (one per request)."""

    def __init__(self, settings: Settings, client: Client, store: Store):
        self.settings = settings
        self.client = client
        self.store = store
        # Syncing runs from Temporal is deployment-wide: every tenant's view shares the root's.
        self._root = self
        self._synced_until: datetime | None = None
        # Runs seen final whose node timings may still need recording, with their tenants (in order).
        self._timings_pending: dict[str, str] = {}
        self._tenant_views: dict[str, FlowService] = {}
        # What the histories of failed runs say (deadletters.py), by run id: a closed history
        # never changes, so every tenant's view shares the root's.
        self._dead_letter_details: dict[str, dict] = {}

    def for_tenant(self, tenant: str) -> FlowService:
        root = self._root
        if tenant == root.settings.tenant:
            return root
        view = root._tenant_views.get(tenant)
        if view is None:
            view = copy.copy(root)
            view.settings = root.settings.replace(tenant=tenant)
            view.store = root.store.for_tenant(tenant)
            view._tenant_views = {}
            root._tenant_views[tenant] = view
        return view

    @property
    def tenant(self) -> str:
        return self.settings.tenant

    def _check_tenant(self, run_id: str, tenant: str | None) -> None:
        # Runs of other tenants do not exist for this one: the same answer as an unknown id.
        if (tenant or "default") != self.tenant:
            raise NotFound("run", run_id)

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> FlowService:
        settings = settings or Settings.from_env()
        client = await connect(settings)
        return cls(settings, client, store_for(settings, settings.tenant))

    # ------------------------------------------------------------------ catalogue
    def catalogue(self) -> list[dict]:
        return nodes.catalogue()

    # ------------------------------------------------------------------ workflows
    def _document(self, data: Any, field: str = "document") -> FlowDocument:
        if not isinstance(data, dict):
            raise BadRequest("must be a .flow document (a JSON object)", field=field)
        doc, problems = parse_data(data)
        if problems or doc is None:
            raise BadRequest(f"not a valid .flow document: {problems[0]}", field=field, problems=problems)
        return doc

    def create_workflow(self, document: Any, *, by: str, name: str | None = None, path: str | None = None) -> dict:
        doc = self._document(document)
        flow_id = doc.meta["id"] = doc.id or str(uuid.uuid4())
        if name:
            doc.meta["name"] = name
        if self.store.get_workflow(flow_id):
            raise Conflict(f"a workflow with id '{flow_id}' already exists")
        record = self.store.create_workflow(
            id=flow_id,
            name=doc.name or "untitled",
            document=doc.to_data(),
            created_by=by,
            tenant=self.settings.tenant,
            path=path,
        )
        self.store.audit(by, "workflow.create", flow_id, {"name": record["name"]})
        return record

    def get_workflow(self, workflow_id: str) -> dict:
        record = self.store.get_workflow(workflow_id)
        if record is None:
            raise NotFound("workflow", workflow_id)
        return record

    def list_workflows(self) -> list[dict]:
        return self.store.list_workflows(tenant=self.settings.tenant)

    def save_draft(self, workflow_id: str, document: Any, *, by: str) -> dict:
        self.get_workflow(workflow_id)
        doc = self._document(document)
        if doc.id and doc.id != workflow_id:
            raise BadRequest(f"meta.id is '{doc.id}' but the workflow is '{workflow_id}'", field="document.meta.id")
        doc.meta["id"] = workflow_id
        return self.store.update_draft(workflow_id, document=doc.to_data(), by=by, name=doc.name or None)

    def upsert_draft(self, doc: FlowDocument, *, by: str, path: str | None = None) -> dict:
        """Create the workflow of a document, or save it as its new draft (used by the kernel)."""
        if doc.id is None or self.store.get_workflow(doc.id) is None:
            return self.create_workflow(doc.to_data(), by=by, path=path)
        return self.store.update_draft(doc.id, document=doc.to_data(), by=by, name=doc.name or None)

    def validate(self, workflow_id: str) -> list[dict]:
        from .validate import validate

        doc = FlowDocument.model_validate(self.get_workflow(workflow_id)["document"])
        return [p.to_dict() for p in validate(doc)]

    def validate_document(self, document: Any) -> list[dict]:
        """Every problem of a document that need not be stored (the canvas asks after each edit):
        its structure first, then what it means. Any JSON value is a document with problems."""
        from .validate import validate_data

        return [p.to_dict() for p in validate_data(document)]

    async def publish(self, workflow_id: str, *, note: str = "", by: str) -> dict:
        """Publish the draft as a new immutable version and make its triggers live."""
        record = self.get_workflow(workflow_id)
        plan = compile_plan(FlowDocument.model_validate(record["document"]))
        version = self.store.add_version(
            workflow_id, plan=plan.to_data(), plan_hash=plan.hash, document=record["document"], note=note, created_by=by
        )
        await self._activate_triggers(workflow_id, version["version"], plan.to_data(), plan.hash)
        self.store.audit(by, "workflow.publish", workflow_id, {"version": version["version"], "plan_hash": plan.hash})
        return version

    async def unpublish(self, workflow_id: str, *, by: str) -> dict:
        """Take the workflow's triggers down (schedules, webhooks, event subscriptions); versions stay."""
        self.get_workflow(workflow_id)
        for registration in self.store.replace_triggers(workflow_id, []):
            await self._deactivate(workflow_id, registration)
        self.store.audit(by, "workflow.unpublish", workflow_id, None)
        return self.store.unpublish_workflow(workflow_id)

    async def delete_workflow(self, workflow_id: str, *, by: str) -> None:
        await self.unpublish(workflow_id, by=by)
        self.store.delete_workflow(workflow_id)
        self.store.audit(by, "workflow.delete", workflow_id, None)

    async def _activate_triggers(self, workflow_id: str, version: int, plan: dict, plan_hash: str) -> None:
        previous = {r["node_id"]: r for r in self.store.list_triggers(workflow_id=workflow_id)}
        registrations = []
        for node_id in plan["triggers"]:
            node = plan["nodes"][node_id]
            spec = nodes.require(node["type"])
            if spec.on_publish is None:
                continue
            ctx = TriggerContext(
                self, workflow_id, version, node_id, node["config"], plan, plan_hash, previous.get(node_id)
            )
            registration = await spec.on_publish(ctx)
            if registration:
                config = {**(registration.get("config") or {}), "type": node["type"]}
                registrations.append({**registration, "config": config, "node_id": node_id, "version": version})
        for removed in self.store.replace_triggers(workflow_id, registrations):
            await self._deactivate(workflow_id, removed)

    async def _deactivate(self, workflow_id: str, registration: dict) -> None:
        spec = nodes.get(registration["config"].get("type", ""))
        if spec is not None and spec.on_unpublish is not None:
            ctx = TriggerContext(
                self, workflow_id, registration["version"], registration["node_id"], {}, {}, "", registration
            )
            await spec.on_unpublish(ctx, registration)

    def list_versions(self, workflow_id: str) -> list[dict]:
        self.get_workflow(workflow_id)
        return self.store.list_versions(workflow_id)

    def get_version(self, workflow_id: str, version: int) -> dict:
        found = self.store.get_version(workflow_id, version)
        if found is None:
            self.get_workflow(workflow_id)  # an unknown workflow says so, not "no version 1"
            raise NotFound("version", f"{workflow_id}@{version}")
        return found

    # ------------------------------------------------------------------ runs
    def _plan_for(self, workflow_id: str, version: Any) -> tuple[dict, str, str]:
        record = self.get_workflow(workflow_id)
        if version == "draft":
            plan = compile_plan(FlowDocument.model_validate(record["document"]))
            return plan.to_data(), plan.hash, "draft"
        if version is None:
            if record.get("version") is None:
                raise BadRequest(
                    "the workflow has no published version: publish it first, or run the draft", field="version"
                )
            version = record["version"]
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise BadRequest(f"must be a version number or 'draft', got {version!r}", field="version") from None
        found = self.get_version(workflow_id, number)
        return found["plan"], found["plan_hash"], str(number)

    async def start_run(
        self,
        workflow_id: str,
        *,
        input: Any = None,
        version: Any = None,
        by: str,
        trigger: str = "manual",
        trigger_node: str | None = None,
        idempotency_key: str | None = None,
        plan: tuple[dict, str, str] | None = None,
        reuse: dict[str, dict] | None = None,
        extra_memo: dict[str, Any] | None = None,
    ) -> dict:
        """Start a run of ``version`` (the latest published one by default, or "draft").

        ``plan`` (plan, hash, version label) starts that plan instead of looking ``version`` up;
        ``reuse`` names nodes whose recorded output the run takes instead of calling them
        (RunRequest "reuse"); ``extra_memo`` adds to the run's memo (e.g. the run it retries)."""
        run_plan, plan_hash, version_label = plan or self._plan_for(workflow_id, version)
        start = trigger_node or default_trigger(run_plan, trigger)
        check_input(run_plan, start, input)
        run_id = idempotent_run_id(workflow_id, idempotency_key) if idempotency_key else f"run-{uuid.uuid4().hex}"
        request, meta, attrs = self.run_request(
            workflow_id, run_plan, plan_hash, version_label, trigger, start, input, by, extra=extra_memo
        )
        if reuse is not None:
            request["reuse"] = check_reuse(run_plan, reuse)
        # The run's trace starts here; Temporal's start call and the worker's spans join it.
        span_attrs = {
            "floworch.run_id": run_id,
            "floworch.flow_id": workflow_id,
            "floworch.version": version_label,
            "floworch.trigger": trigger,
        }
        with tracing.run_span(self.settings, "StartRun", span_attrs) as trace_id:
            # In the memo (not the workflow input), so runs synced from Temporal get it too.
            memo = {**meta, "trace_id": trace_id} if trace_id else meta
            try:
                await self.client.start_workflow(
                    WORKFLOW_TYPE,
                    request,
                    id=run_id,
                    task_queue=self.settings.task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    memo={"floworch": memo},
                    search_attributes=attrs,
                )
            except WorkflowAlreadyStartedError:
                # The idempotency key was used before and that run has finished: it is the answer.
                return await self.get_run(run_id, with_nodes=False)
        existing = self.store.get_run(run_id)
        if existing is None:
            self.store.upsert_run(
                {
                    "run_id": run_id,
                    "workflow_id": workflow_id,
                    "version": version_label,
                    "plan_hash": plan_hash,
                    "trigger": trigger,
                    "tenant": self.settings.tenant,
                    "input": input,
                    "start_time": _now(),
                    "status": "running",
                    "trace_id": trace_id,
                    "search_attributes": memo,
                }
            )
            self.store.audit(
                by, "run.start", run_id, {"workflow_id": workflow_id, "version": version_label, "trigger": trigger}
            )
        record = self.store.get_run(run_id)
        assert record is not None, "the run was recorded above"
        return record

    def run_request(
        self,
        workflow_id: str,
        plan: dict,
        plan_hash: str,
        version: str,
        trigger: str,
        trigger_node: str,
        input: Any,
        by: str,
        extra: dict[str, Any] | None = None,
    ) -> tuple[dict, dict, TypedSearchAttributes]:
        request, meta, attrs = build_run_request(
            workflow_id, plan, plan_hash, version, trigger, trigger_node, input, by, self.settings.tenant
        )
        # The request's "run" is the memo's dict: extra keys land in both.
        meta.update(extra or {})
        queues = run_task_queues(plan, self.settings.node_queue_rules())
        if queues:  # only when pinned: requests (and histories) of other runs stay as they were
            request["task_queues"] = queues
        return request, meta, attrs

    # ------------------------------------------------------------------ events and schedules
    async def publish_event(self, topic: str, payload: Any, *, event_id: str | None = None, by: str) -> list[dict]:
        """Start every published flow subscribed to ``topic``. One entry per flow: its run, or why it did not start.

        With an ``event_id``, publishing the same event again returns the same runs."""
        results = []
        for reg in self.store.list_triggers(kind="event", key=topic):
            key = f"event:{topic}:{event_id}" if event_id else None
            try:
                run = await self.start_run(
                    reg["workflow_id"], input=payload, version=reg["version"], by=by, trigger="event",
                    trigger_node=reg["node_id"], idempotency_key=key,
                )  # fmt: skip
                results.append({"workflow_id": reg["workflow_id"], "run_id": run["run_id"], "status": run["status"]})
            except BadRequest as exc:
                results.append({"workflow_id": reg["workflow_id"], "error": str(exc), "field": exc.field})
        self.store.audit(by, "event.publish", topic, {"event_id": event_id, "runs": [r.get("run_id") for r in results]})
        return results

    def webhooks(self, workflow_id: str) -> list[dict]:
        """The webhook URLs (paths under the Jupyter server) and signing secrets of a published flow."""
        from .secrets import box_for

        self.get_workflow(workflow_id)
        box = box_for(self.settings)
        return [
            {
                "node_id": r["node_id"],
                "hook_id": r["key"],
                "path": f"/floworch/hooks/{r['key']}",
                "secret": box.decrypt(r["secret"], "webhook secret"),
            }
            for r in self.store.list_triggers(kind="webhook", workflow_id=workflow_id)
        ]

    async def list_schedules(self) -> list[dict]:
        out = []
        for reg in self.store.list_triggers(kind="cron"):
            desc = await self.client.get_schedule_handle(reg["key"]).describe()
            out.append(
                {
                    "schedule_id": reg["key"],
                    "workflow_id": reg["workflow_id"],
                    "node_id": reg["node_id"],
                    "version": reg["version"],
                    "cron": reg["config"].get("cron"),
                    "timezone": reg["config"].get("timezone"),
                    "paused": desc.schedule.state.paused,
                    "next_runs": [t.isoformat() for t in desc.info.next_action_times[:3]],
                    "recent_runs": [
                        a.action.workflow_id for a in desc.info.recent_actions[-5:] if hasattr(a.action, "workflow_id")
                    ],
                }
            )
        return out

    async def pause_schedules(self, workflow_id: str, *, paused: bool = True, by: str) -> list[str]:
        """Pause (or resume) every schedule of a flow; returns the schedule ids."""
        regs = self.store.list_triggers(kind="cron", workflow_id=workflow_id)
        if not regs:
            raise NotFound("schedule of workflow", workflow_id, "publish a flow with a trigger.cron node first")
        for reg in regs:
            handle = self.client.get_schedule_handle(reg["key"])
            note = f"{'paused' if paused else 'resumed'} by {by}"
            await (handle.pause(note=note) if paused else handle.unpause(note=note))
        self.store.audit(
            by, "schedule.pause" if paused else "schedule.resume", workflow_id, {"schedules": [r["key"] for r in regs]}
        )
        return [r["key"] for r in regs]

    def handle(self, run_id: str) -> WorkflowHandle:
        return self.client.get_workflow_handle(run_id)

    async def _describe(self, run_id: str):
        try:
            desc = await self.handle(run_id).describe()
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise NotFound("run", run_id) from None
            raise
        self._check_tenant(run_id, desc.typed_search_attributes.get(SEARCH_ATTRIBUTES["FloworchTenant"]))
        return desc

    async def check_run(self, run_id: str) -> None:
        """NotFound unless ``run_id`` is a run of this tenant."""
        await self._describe(run_id)

    async def _history_events(self, run_id: str) -> list:
        history = await self.handle(run_id).fetch_history()
        return list(history.events)

    @overload
    async def _snapshot(self, run_id: str, *, flow_run: Literal[True] = True) -> tuple[Any, list, dict]: ...
    @overload
    async def _snapshot(self, run_id: str, *, flow_run: bool) -> tuple[Any, list, dict | None]: ...
    async def _snapshot(self, run_id: str, *, flow_run: bool = True) -> tuple[Any, list, dict | None]:
        """(description, history events, RunRequest) of a run: what every view of it is read from.
        With ``flow_run``, a workflow that is not a FlowRun is not found."""
        desc = await self._describe(run_id)
        events = await self._history_events(run_id)
        request = started_request(events)
        if flow_run and request is None:
            raise NotFound("run", run_id)
        return desc, events, request

    @staticmethod
    def _statuses(desc, events: list, request: dict) -> dict[str, NodeStatus]:
        return node_statuses(
            request["plan"], events, desc.raw_description.pending_activities, request["run"].get("trigger_node")
        )

    async def get_run(self, run_id: str, *, with_nodes: bool = True) -> dict:
        """The run record, refreshed from Temporal, with its node statuses."""
        desc, events, request = await self._snapshot(run_id, flow_run=False)
        record = self._record_from_temporal(run_id, desc, request)
        if desc.status != WorkflowExecutionStatus.RUNNING:
            record["error"] = _close_error(events)
        self.store.upsert_run(record)
        out = dict(self.store.get_run(run_id) or record)
        if with_nodes and request is not None:
            out["nodes"] = [s.to_dict() for s in _ordered(request["plan"], self._statuses(desc, events, request))]
        if desc.status == WorkflowExecutionStatus.COMPLETED:
            out["result"] = _close_result(events)
        return out

    async def node_statuses(self, run_id: str) -> list[NodeStatus]:
        desc, events, request = await self._snapshot(run_id)
        return _ordered(request["plan"], self._statuses(desc, events, request))

    async def watch(self, run_id: str, interval: float = 0.25) -> AsyncIterator[list[dict]]:
        """Yield the node statuses that changed, as they change, until the run ends.

        The first item holds every node. Retry attempts are not history events, so this polls
        the description alongside the history rather than long-polling history alone."""
        last: dict[str, dict] = {}
        while True:
            desc, events, request = await self._snapshot(run_id)
            changed = []
            for st in _ordered(request["plan"], self._statuses(desc, events, request)):
                data = st.to_dict()
                if last.get(st.node) != data:
                    last[st.node] = data
                    changed.append(data)
            if changed:
                yield changed
            if desc.status != WorkflowExecutionStatus.RUNNING:
                return
            await asyncio.sleep(interval)

    async def trace(self, run_id: str) -> list[dict]:
        """One segment per activity attempt, timer, approval wait and control step (see trace.py)."""
        try:
            events = await self._history_events(run_id)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise NotFound("run", run_id) from None
            raise
        request = started_request(events)
        if request is None:
            raise NotFound("run", run_id)
        self._check_tenant(run_id, request["run"].get("tenant"))
        return trace.segments(request["plan"], events, self.store.list_logs(run_id, limit=100_000))

    async def inspect(self, run_id: str, node_id: str) -> dict:
        """What a node was given and gave back, with the run's memo, search attributes and plan version."""
        desc, events, request = await self._snapshot(run_id)
        if node_id not in request["plan"]["nodes"]:
            raise NotFound("node", node_id, f"nodes of this run: {', '.join(request['plan']['order'])}")
        io = trace.node_io(events)
        calls = {k: v for k, v in io.items() if k.split("#", 1)[0] == node_id}
        statuses = self._statuses(desc, events, request)
        memo = await desc.memo()
        node = request["plan"]["nodes"][node_id]
        return {
            "node": node_id,
            "type": node["type"],
            "status": statuses[node_id].to_dict(),
            "config": node["config"],
            "calls": calls,
            "state": memo.get(NODE_MEMO_PREFIX + node_id),
            "run": {
                "memo": memo.get("floworch"),
                "search_attributes": {k.name: v for k, v in ((p.key, p.value) for p in desc.typed_search_attributes)},
                "plan_hash": request["run"].get("plan_hash"),
                "version": request["run"].get("version"),
            },
        }

    async def error(self, run_id: str) -> list[dict] | None:
        """The failure that ended the run: message, type and stack trace of it and each cause."""
        await self.check_run(run_id)
        return trace.run_error(await self._history_events(run_id))

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        await self.check_run(run_id)
        return await asyncio.wait_for(self.handle(run_id).result(), timeout)

    async def approve(
        self, run_id: str, node_id: str, *, decision: str = "approved", by: str, comment: str = ""
    ) -> dict:
        if decision not in ("approved", "rejected"):
            raise BadRequest(f"must be 'approved' or 'rejected', got {decision!r}", field="decision")
        await self._describe(run_id)
        try:
            result = await self.handle(run_id).execute_update(DECIDE_UPDATE, Decision(node_id, decision, by, comment))
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            raise Conflict(getattr(cause, "message", None) or str(cause or exc)) from None
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise Conflict(f"run '{run_id}' is not running: {exc.message}") from None
            raise
        self.store.audit(by, f"run.{decision}", run_id, {"node": node_id, "comment": comment})
        return result

    async def cancel(self, run_id: str, *, by: str) -> dict:
        desc = await self._describe(run_id)
        if desc.status != WorkflowExecutionStatus.RUNNING:
            raise Conflict(f"run '{run_id}' has already finished ({run_status(desc.status)})")
        await self.handle(run_id).cancel()
        self.store.audit(by, "run.cancel", run_id, None)
        return {"run_id": run_id, "cancel_requested": True}

    async def list_runs(
        self, workflow_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict]:
        await self.sync_runs()
        return self.store.list_runs(workflow_id=workflow_id, status=status, limit=limit)

    async def sync_runs(self) -> int:
        """Copy the state of recent FlowRun executions of every tenant from Temporal into the store."""
        if self._root is not self:
            return await self._root.sync_runs()
        query = f"WorkflowType = '{WORKFLOW_TYPE}'"
        since = self._synced_until
        if since is not None:
            stamp = (since - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
            query += f" AND (ExecutionStatus = 'Running' OR CloseTime > '{stamp}')"
        started_sync = _now()
        count = 0
        async for wf in self.client.list_workflows(query, page_size=500):
            meta = await wf.memo_value("floworch", {})
            if wf.status == WorkflowExecutionStatus.RUNNING:
                # Visibility lags behind history by a moment; describe is authoritative.
                with contextlib.suppress(RPCError):
                    wf = await self.handle(wf.id).describe()
            record = {
                "run_id": wf.id,
                "workflow_id": meta.get("flow_id"),
                "version": meta.get("version"),
                "plan_hash": meta.get("plan_hash"),
                "trigger": meta.get("trigger"),
                "tenant": meta.get("tenant"),
                "start_time": wf.start_time,
                "end_time": wf.close_time,
                "status": run_status(wf.status),
                "trace_id": meta.get("trace_id"),
                "search_attributes": meta,
            }
            record["tenant"] = record["tenant"] or "default"
            try:
                # Off the event loop: a sync writes many runs, and the server's requests wait meanwhile.
                store = self.store.for_tenant(record["tenant"])
                await asyncio.to_thread(store.upsert_run, {k: v for k, v in record.items() if v is not None})
            except ValueError as exc:  # a run started outside FlowOrchestrator with a bad tenant
                log.warning("run %s not recorded: %s", wf.id, exc)
                continue
            if record["status"] in FINAL:
                self._timings_pending[wf.id] = record["tenant"]
            count += 1
        self._synced_until = started_sync
        await self._record_pending_timings()
        return count

    async def _record_pending_timings(self) -> None:
        """Extract node timings of runs seen final, once per run (the store marks each run).

        Bounded by a time budget per sync: a first sync over a long history (or after upgrading
        to a store with node timings) catches up over the next syncs instead of holding run
        statuses back meanwhile. Runs whose timings are already recorded (by this process or
        another one) drop out through ``runs_needing_timings``."""
        if not self._timings_pending:
            return
        deadline = asyncio.get_running_loop().time() + TIMINGS_BUDGET_S
        by_tenant: dict[str, list[str]] = {}
        for run_id, tenant in self._timings_pending.items():
            by_tenant.setdefault(tenant, []).append(run_id)
        needed = {
            run_id: tenant
            for tenant, ids in by_tenant.items()
            for run_id in self.for_tenant(tenant).store.runs_needing_timings(ids)
        }
        self._timings_pending = needed
        for run_id, tenant in list(needed.items()):
            if asyncio.get_running_loop().time() > deadline:
                return
            try:
                await self.for_tenant(tenant).record_timings(run_id)
            except Exception as exc:  # noqa: BLE001 - tried again on the next sync
                log.warning("could not record node timings of run %s: %s: %s", run_id, type(exc).__name__, exc)
                continue
            self._timings_pending.pop(run_id, None)

    async def record_timings(self, run_id: str) -> int:
        """Store the node timings of a finished run, read from its history; returns the row count."""
        try:
            events = await self._history_events(run_id)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            events = []  # history gone (retention): record none, so it is not asked for again
        request = started_request(events)
        rows = []
        if request is not None:
            segments = trace.segments(request["plan"], events, self.store.list_logs(run_id, limit=100_000))
            rows = metrics.timings_from_segments(segments)
        meta = (request or {}).get("run", {})
        return self.store.add_node_timings(run_id, rows, workflow_id=meta.get("flow_id"), tenant=self.tenant)

    # ------------------------------------------------------------------ debugging (debug.py)
    async def replay(self, run_id: str, plan: dict | None = None) -> dict:
        """Does the run's history replay against the current interpreter (with ``plan``: that plan)?"""
        from . import debug

        return await debug.replay(self, run_id, plan)

    async def rerun_node(
        self, run_id: str, node_id: str, *, config: Any = None, input: Any = None, call: str | None = None
    ) -> dict:
        """A node of a run, run again in this process on what it was given (the run is not touched)."""
        from . import debug

        return await debug.rerun_node(self, run_id, node_id, config=config, input=input, call=call)

    async def try_node(
        self, run_id: str, node_id: str, *, config: Any = None, input: Any = None, call: str | None = None, by: str
    ) -> dict:
        """A node of a run, run again on a worker as a test run of its own (trigger "test")."""
        from . import debug

        return await debug.try_node(self, run_id, node_id, config=config, input=input, call=call, by=by)

    async def diff_runs(self, run_a: str, run_b: str) -> dict:
        """Run ``run_b`` compared with ``run_a``: plans, per node status, attempts, duration, output."""
        from . import debug

        return await debug.diff(self, run_a, run_b)

    # ------------------------------------------------------------------ live metrics
    def metric_task_queues(self) -> list[str]:
        """The flow task queue and every queue a node type runs its activities on (its own, or
        the deployment's pin in ``node_task_queues``)."""
        pinned = {queue for _, queue in self.settings.node_queue_rules()} | {
            s.task_queue for s in nodes.all_specs() if s.task_queue
        }
        return list(dict.fromkeys([self.settings.task_queue, *sorted(pinned)]))

    async def task_queue_health(self, task_queues: list[str] | None = None) -> tuple[Any, Any]:
        """``(queues, workers)`` DataFrames: backlog per task queue and type, and every poller."""
        return await metrics.describe_task_queues(
            self.client, self.settings.temporal_namespace, task_queues or self.metric_task_queues()
        )

    async def queue_depth(self, task_queues: list[str] | None = None):
        return (await self.task_queue_health(task_queues))[0]

    async def workers(self, task_queues: list[str] | None = None):
        return (await self.task_queue_health(task_queues))[1]

    async def prometheus(self, slo: float = metrics.DEFAULT_SLO) -> str:
        """Store and live metrics in the Prometheus text format; the store part is still served
        when Temporal does not answer (``floworch_temporal_up 0``)."""
        families = await asyncio.to_thread(metrics.store_families, self.store, None, slo)
        queues, workers = await self._live_health()
        return metrics.format_prometheus([*families, *metrics.live_families(queues, workers)])

    async def _live_health(self, task_queues: list[str] | None = None) -> tuple[Any, Any]:
        """``task_queue_health``, or ``(None, None)`` when Temporal does not answer in time:
        views that show it also show store metrics, which must not fail with it."""
        try:
            return await asyncio.wait_for(self.task_queue_health(task_queues), LIVE_METRICS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - shown as unknown, not as a failed view
            log.warning("task-queue metrics unavailable: %s: %s", type(exc).__name__, exc)
            return None, None

    async def dashboard(
        self,
        range: str = "24h",
        *,
        until: Any = None,
        bucket: Any = "auto",
        slo: Any = metrics.DEFAULT_SLO,
        task_queues: list[str] | None = None,
    ) -> dict:
        """What the SLO dashboard shows (``metrics.dashboard_data``) for the ``range`` ending at
        ``until`` (now), with the live task queues and workers. Each unusable argument is a
        BadRequest naming it."""
        try:
            end = metrics.as_utc(until) if until is not None else None
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"must be an ISO 8601 date-time, got {until!r} ({exc})", field="until") from None
        try:
            since, end = metrics.time_range(range, until=end)
        except (ValueError, OverflowError) as exc:
            raise BadRequest(
                f"must be a duration such as 1h, 24h, 7d or 30d, got {range!r} ({exc})", field="range"
            ) from None
        try:
            target = metrics.SLO(float(slo)).target
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"must be a percentage between 0 and 100 (exclusive), got {slo!r}", field="slo") from exc
        try:
            metrics.bucket_size(bucket, since, end)
        except (ValueError, OverflowError) as exc:
            raise BadRequest(f"must be 'auto' or a duration such as 5m or 1h: {exc}", field="bucket") from None
        # The store's queries and Temporal's answer are independent: wait for both at once.
        store_part = asyncio.to_thread(metrics.dashboard_data, self.store, since, end, bucket, target)
        data, live = await asyncio.gather(store_part, self._live_health(task_queues))
        data["queues"], data["workers"] = live
        return data

    # ------------------------------------------------------------------ alerts and retention
    async def evaluate_alerts(self, now: datetime | None = None) -> list[dict]:
        """Evaluate every enabled alert rule once (alerts.py); returns the alerts that changed.
        The deployment's service evaluates every tenant's rules, a tenant's view its own."""
        views = (
            [self.for_tenant(t) for t in dict.fromkeys([self.tenant, *self.store.tenants()])]
            if self._root is self
            else [self]
        )
        changed = []
        for view in views:
            changed += await alerts.evaluate(view.store, view, now=now)
        return changed

    def list_alerts(self, open_only: bool = False, limit: int = 100, *, cleared_only: bool = False) -> list[dict]:
        """Alerts, newest first; ``open`` marks the ones not cleared yet."""
        rows = self.store.list_alerts(open_only=open_only, cleared_only=cleared_only, limit=limit)
        return [{**a, "open": a["cleared_at"] is None} for a in rows]

    async def purge(self, *, dry_run: bool = False, now: datetime | None = None) -> dict:
        """Apply the retention policies (retention.py). Off the event loop: a first purge of a
        long history deletes many rows."""
        return await asyncio.to_thread(retention.purge, self.store, self.settings, dry_run=dry_run, now=now)

    # ------------------------------------------------------------------ dead letters (deadletters.py)
    async def dead_letters(
        self,
        workflow_id: str | None = None,
        *,
        node_type: str | None = None,
        error_kind: str | None = None,
        limit: int = 100,
        include_retried: bool = False,
    ) -> list[dict]:
        """Failed runs not retried yet, newest first: input, failed node, node type, error kind."""
        from . import deadletters

        return await deadletters.list_dead_letters(
            self,
            workflow_id=workflow_id,
            node_type=node_type,
            error_kind=error_kind,
            limit=limit,
            include_retried=include_retried,
        )

    async def retry_runs(self, run_ids: Any, *, mode: Any = "start", version: Any = "same", by: str) -> list[dict]:
        """Retry failed runs from the start or from the failed node; the same retry twice starts one run."""
        from . import deadletters

        return await deadletters.retry(self, run_ids, mode=mode, version=version, by=by)

    def _record_from_temporal(self, run_id: str, desc, request: dict | None) -> dict:
        meta = (request or {}).get("run", {})
        record = {
            "run_id": run_id,
            "workflow_id": meta.get("flow_id"),
            "version": meta.get("version"),
            "plan_hash": meta.get("plan_hash"),
            "trigger": meta.get("trigger"),
            "tenant": meta.get("tenant"),
            "input": (request or {}).get("input"),
            "start_time": desc.start_time,
            "end_time": desc.close_time,
            "status": run_status(desc.status),
            "search_attributes": meta,
        }
        return {k: v for k, v in record.items() if v is not None}


# ---------------------------------------------------------------------- helpers
def idempotent_run_id(workflow_id: str, key: str) -> str:
    """The run id an idempotency key gives within a flow: the same key never starts a second run."""
    return "run-" + hashlib.sha256(f"{workflow_id}\0{key}".encode()).hexdigest()[:32]


def build_run_request(
    workflow_id: str,
    plan: dict,
    plan_hash: str,
    version: str,
    trigger: str,
    trigger_node: str,
    input: Any,
    by: str,
    tenant: str,
) -> tuple[dict, dict, TypedSearchAttributes]:
    """The workflow input (a RunRequest, as the JSON object it is sent as), memo and search
    attributes of a run: the same for every way a run starts. A plain dict, because the
    converter would deep-copy a dataclass holding the whole plan."""
    meta = {
        "flow_id": workflow_id,
        "flow_name": plan["flow"].get("name"),
        "version": version,
        "plan_hash": plan_hash,
        "trigger": trigger,
        "trigger_node": trigger_node,
        "tenant": tenant,
        "started_by": by,
    }
    attrs = TypedSearchAttributes(
        [
            SearchAttributePair(SEARCH_ATTRIBUTES["FloworchFlowId"], workflow_id),
            SearchAttributePair(SEARCH_ATTRIBUTES["FloworchVersion"], version),
            SearchAttributePair(SEARCH_ATTRIBUTES["FloworchPlanHash"], plan_hash),
            SearchAttributePair(SEARCH_ATTRIBUTES["FloworchTrigger"], trigger),
            SearchAttributePair(SEARCH_ATTRIBUTES["FloworchTenant"], tenant),
        ]
    )
    return {"plan": plan, "input": input, "run": meta}, meta, attrs


def default_trigger(plan: dict, trigger: str) -> str:
    triggers = plan["triggers"]
    wanted = f"trigger.{trigger}"
    for t in triggers:
        if plan["nodes"][t]["type"] == wanted:
            return t
    return triggers[0]


def check_input(plan: dict, trigger_node: str, value: Any) -> None:
    if trigger_node not in plan["nodes"]:
        raise BadRequest(f"no trigger node '{trigger_node}' in this flow", field="trigger_node")
    schema = plan["nodes"][trigger_node]["config"].get("input_schema")
    if not schema:
        return
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(map(str, e.absolute_path))
    )
    if errors:
        err = errors[0]
        where = "input" + "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        raise BadRequest(f"{err.message} (the input schema of trigger '{trigger_node}')", field=where)


def _payload_value(payload) -> Any:
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


def started_request(events: list) -> dict | None:
    """The RunRequest of a FlowRun history (its first event's input)."""
    if not events:
        return None
    attrs = events[0].workflow_execution_started_event_attributes
    if attrs.workflow_type.name != WORKFLOW_TYPE or not attrs.input.payloads:
        return None
    return _payload_value(attrs.input.payloads[0])


def _close_result(events: list) -> Any:
    last = events[-1]
    if last.HasField("workflow_execution_completed_event_attributes"):
        payloads = last.workflow_execution_completed_event_attributes.result.payloads
        return _payload_value(payloads[0]) if payloads else None
    return None


def _close_error(events: list) -> str | None:
    last = events[-1] if events else None
    if last is not None and last.HasField("workflow_execution_failed_event_attributes"):
        return last.workflow_execution_failed_event_attributes.failure.message
    if last is not None and last.HasField("workflow_execution_timed_out_event_attributes"):
        return "the run timed out"
    return None


def _ordered(plan: dict, statuses: dict[str, NodeStatus]) -> list[NodeStatus]:
    return [statuses[n] for n in plan["order"] if n in statuses]
