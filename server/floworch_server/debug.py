"""Debugging a run after the fact: replay its history, run one of its nodes again, compare two runs.

- **Replay** (`replay`): the run's Temporal history against the current interpreter, with
  temporalio's Replayer, as the replay gate of the tests does for stored histories. With another
  plan (an edited draft), the history's RunRequest carries that plan instead: "would my draft
  still replay this run?". A divergence is told in nodes (which node the run called where the
  draft calls another, which node the draft removed), with Temporal's own message beside it.
- **Re-run here** (`rerun_node`): a node's executor, in this process, on the resolved config and
  the inputs it was called with in that run (read from history), with overrides. Nothing is
  written to the run: no Temporal call but reading its history, no log line in its logs.
- **Try** (`try_node`): the same on a worker, as a test run: a FlowRun of a one-node plan
  (trigger "test", version "draft") next to the real run, never inside it. It goes where the
  node's activities go (its task queue, the worker's network rules, secrets and models), and it
  is a run of the tenant like any other: traced, logged, audited.
- **Diff** (`diff`): two runs side by side: plan differences, per node status, attempts, duration
  and output (a JSON diff), and the first place they diverge.

Every function takes the tenant's `FlowService`: runs of other tenants are not found.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
import time
import traceback
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonschema
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from . import blobs, integrations, nodes, trace
from .errors import BadRequest, Conflict, NotFound
from .flowdoc import format_path
from .messages import NODE_MEMO_PREFIX, NodeCall
from .nodes.spec import NodeError
from .plan import Plan, canonical_json
from .service import started_request
from .status import run_status

# How long the try route waits for its test run beyond the node's own timeout.
TRY_WAIT_MARGIN_S = 30.0
# The fields of a plan node that change what it does (layout and labels are not in plans).
NODE_FIELDS = (
    "type",
    "kind",
    "config",
    "retry",
    "timeout_seconds",
    "heartbeat_seconds",
    "task_queue",
    "expression_fields",
)


# ====================================================================== replay
async def replay(service, run_id: str, plan: dict | None = None) -> dict:
    """Replay the run's history against the current interpreter (and, given ``plan``, with that
    plan in place of the run's). Returns ``{"deterministic", "run_id", "events", "plan_hash",
    "with_plan", "divergence", "plan_changes"}``; ``divergence`` is None when it replays, else
    ``{"event_id", "node", "draft_node", "reason", "message"}``."""
    from temporalio.worker import Replayer

    from .interpreter import FlowRun, workflow_runner

    await service.check_run(run_id)
    history = await _history(service, run_id)
    request = started_request(list(history.events))
    if request is None:
        raise NotFound("run", run_id)
    run_plan = request["plan"]
    changes = None
    if plan is not None:
        plan = _plan_data(plan)
        changes = plan_changes(run_plan, plan)
        history = _with_plan(history, plan)
    replayer = Replayer(workflows=[FlowRun], workflow_runner=workflow_runner(), runtime=_replay_runtime())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    used = plan if plan is not None else run_plan
    divergence = None
    if result.replay_failure is not None:
        divergence = _divergence(result.replay_failure, history.events, run_plan, used, changes)
    return {
        "run_id": run_id,
        "deterministic": divergence is None,
        "events": len(history.events),
        "plan_hash": Plan.from_data(used).hash,
        "with_plan": plan is not None,
        "divergence": divergence,
        "plan_changes": changes,
    }


_REPLAY_RUNTIME = None


def _replay_runtime():
    """A Temporal runtime for replays whose core logs errors only: a divergence is the answer a
    replay gives, not a warning (the default runtime's core prints one, into the notebook's cell)."""
    global _REPLAY_RUNTIME
    if _REPLAY_RUNTIME is None:
        from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

        quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        _REPLAY_RUNTIME = Runtime(telemetry=TelemetryConfig(logging=quiet))
    return _REPLAY_RUNTIME


async def _history(service, run_id: str) -> WorkflowHistory:
    try:
        return await service.handle(run_id).fetch_history()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFound("run", run_id) from None
        raise


def _plan_data(plan: Any) -> dict:
    """A plan given as a compiled Plan or its JSON data (a draft's ``flow.draft``)."""
    if isinstance(plan, Plan):
        return plan.to_data()
    if isinstance(plan, dict) and {"nodes", "edges", "order", "triggers"} <= set(plan):
        return json.loads(canonical_json(plan))
    raise BadRequest("must be a compiled plan (flow.draft, or a version's plan)", field="plan")


def _with_plan(history: WorkflowHistory, plan: dict) -> WorkflowHistory:
    """The same history whose first event starts the run with ``plan`` (a copy: the run's own
    history is never changed)."""
    events = [copy.deepcopy(e) for e in history.events]
    payload = events[0].workflow_execution_started_event_attributes.input.payloads[0]
    request = json.loads(payload.data)
    request["plan"] = plan
    request.setdefault("run", {})["plan_hash"] = Plan.from_data(plan).hash
    trigger = request["run"].get("trigger_node")
    if trigger and trigger not in plan["nodes"]:
        request["run"]["trigger_node"] = (plan["triggers"] or [trigger])[0]
    payload.data = json.dumps(request).encode()
    return WorkflowHistory(history.workflow_id, events)


_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_EVENT_ID = re.compile(r"HistoryEvent\(id: (\d+)")
_ID_MISMATCH = re.compile(
    r"Activity id of scheduled event '([^']*)' does not match activity id of activity command '([^']*)'"
)
_TYPE_MISMATCH = re.compile(
    r"Activity type of scheduled event '([^']*)' does not match activity type of activity command '([^']*)'"
)


def _divergence(failure: BaseException, events: Sequence, run_plan: dict, plan: dict, changes: dict | None) -> dict:
    text = str(failure)
    found = _CORE_MESSAGE.search(text)
    message = found.group(1).replace('\\"', '"') if found else text
    event_id, node, draft_node = None, None, None
    if m := _ID_MISMATCH.search(message):
        node, draft_node = m.group(1).split("#")[0], m.group(2).split("#")[0]
        event_id = _first_scheduled(events, lambda a: a.activity_id == m.group(1))
    elif m := _TYPE_MISMATCH.search(message):
        was, now = m.group(1), m.group(2)
        for event in events:
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes
                ident = attrs.activity_id.split("#")[0]
                if attrs.activity_type.name == was and plan["nodes"].get(ident, {}).get("type") == now:
                    event_id, node = event.event_id, ident
                    break
    elif m := _EVENT_ID.search(message):
        event_id = int(m.group(1))
        node = _node_of_event(events, event_id)
    reason = _reason(node, draft_node, event_id, run_plan, plan, changes, message)
    return {"event_id": event_id, "node": node, "draft_node": draft_node, "reason": reason, "message": message}


def _first_scheduled(events: Sequence, match) -> int | None:
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and match(
            event.activity_task_scheduled_event_attributes
        ):
            return event.event_id
    return None


def _node_of_event(events: Sequence, event_id: int) -> str | None:
    """The node a history event belongs to: an activity's id, a control node's memo entry."""
    event = next((e for e in events if e.event_id == event_id), None)
    if event is None:
        return None
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        return event.activity_task_scheduled_event_attributes.activity_id.split("#")[0]
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
        keys = [
            k
            for k in event.workflow_properties_modified_event_attributes.upserted_memo.fields
            if k.startswith(NODE_MEMO_PREFIX)
        ]
        return keys[0][len(NODE_MEMO_PREFIX) :] if keys else None
    return None


def _reason(node, draft_node, event_id, run_plan, plan, changes, message) -> str:
    at = f" (history event {event_id})" if event_id else ""
    removed = set((changes or {}).get("nodes_removed", []))
    added = set((changes or {}).get("nodes_added", []))
    if node and draft_node and node not in plan["nodes"]:
        return f"node '{node}' ran in this run{at}, but the plan has no node '{node}' (removed): it calls node '{draft_node}' there"
    if node and draft_node:
        why = f"; '{draft_node}' is new in the draft" if draft_node in added else ""
        return f"the run called node '{node}' here{at}, but the plan calls node '{draft_node}' first{why}"
    if node and node not in plan["nodes"]:
        return f"node '{node}' ran in this run{at}, but the plan has no node '{node}' (removed)"
    if node and run_plan["nodes"].get(node, {}).get("type") != plan["nodes"][node]["type"]:
        return f"node '{node}' ran as {run_plan['nodes'][node]['type']}{at}, but the plan makes it {plan['nodes'][node]['type']}"
    if node:
        return f"the plan does not do what the run did at node '{node}'{at}: {message}"
    if removed or added:
        parts = [
            f"removed {', '.join(sorted(removed))}" if removed else "",
            f"added {', '.join(sorted(added))}" if added else "",
        ]
        return f"the plan does not do what the run did{at} ({'; '.join(p for p in parts if p)}): {message}"
    return f"the run's history does not replay{at}: {message}"


# ====================================================================== plan and JSON differences
def node_hash(node: dict) -> str:
    """A content hash of what a plan node does (its type, config and policies)."""
    return hashlib.sha256(canonical_json({k: node.get(k) for k in NODE_FIELDS}).encode()).hexdigest()


def _edge_key(edge: dict) -> str:
    return f"{edge['source']}.{edge.get('port', 'out')} -> {edge['target']}"


def plan_changes(a: dict, b: dict) -> dict:
    """What changed from plan ``a`` to plan ``b``: nodes and edges added and removed, and nodes
    changed (by node hash), with the fields and config paths that differ."""
    na, nb = a["nodes"], b["nodes"]
    changed = []
    for node_id in [n for n in _union_order(a, b) if n in na and n in nb]:
        if node_hash(na[node_id]) == node_hash(nb[node_id]):
            continue
        fields = [f for f in NODE_FIELDS if na[node_id].get(f) != nb[node_id].get(f)]
        changed.append(
            {
                "node": node_id,
                "fields": fields,
                "config": json_diff(na[node_id].get("config"), nb[node_id].get("config")),
            }
        )
    ea, eb = {_edge_key(e) for e in a["edges"]}, {_edge_key(e) for e in b["edges"]}
    return {
        "same": Plan.from_data(a).hash == Plan.from_data(b).hash,
        "nodes_added": [n for n in b["order"] if n not in na],
        "nodes_removed": [n for n in a["order"] if n not in nb],
        "nodes_changed": changed,
        "edges_added": sorted(eb - ea),
        "edges_removed": sorted(ea - eb),
    }


def _union_order(a: dict, b: dict) -> list[str]:
    order = list(a["order"])
    for node_id in b["order"]:
        if node_id not in order:
            order.append(node_id)
    return order


def json_diff(a: Any, b: Any, path: str = "$") -> list[dict]:
    """Where two JSON values differ: ``{"path", "change": added|removed|changed, "a", "b"}`` for
    each path (``$.items[0].name``), objects compared by key, arrays by position."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)) else f"{path}[{json.dumps(key)}]"
            if key not in b:
                out.append({"path": sub, "change": "removed", "a": a[key], "b": None})
            elif key not in a:
                out.append({"path": sub, "change": "added", "a": None, "b": b[key]})
            else:
                out += json_diff(a[key], b[key], sub)
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for i in range(max(len(a), len(b))):
            sub = f"{path}[{i}]"
            if i >= len(b):
                out.append({"path": sub, "change": "removed", "a": a[i], "b": None})
            elif i >= len(a):
                out.append({"path": sub, "change": "added", "a": None, "b": b[i]})
            else:
                out += json_diff(a[i], b[i], sub)
        return out
    return [] if _same(a, b) else [{"path": path, "change": "changed", "a": a, "b": b}]


def _same(a: Any, b: Any) -> bool:
    # 1 and 1.0 are the same JSON number; true is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


# ====================================================================== one node again
@dataclass
class Prepared:
    """A node call of a run, ready to run again: what it is and what it gets."""

    run_id: str
    node_id: str
    call_id: str  # the activity id of the call (``node`` or ``node#2`` in a loop)
    node: dict  # the node of the run's plan
    config: dict
    inputs: dict
    recorded: dict  # what the run's call gave: {"output", "error"}
    flow_id: str | None
    version: str | None
    tenant: str
    plan: dict


async def prepare(
    service, run_id: str, node_id: str, *, config: Any = None, input: Any = None, call: str | None = None
) -> Prepared:
    """The call of ``node_id`` in run ``run_id`` with ``config`` merged over its recorded resolved
    config and ``input`` (by upstream node id) over its recorded inputs, checked."""
    if config is not None and not isinstance(config, dict):
        raise BadRequest('must be an object of config fields to change, e.g. {"timeout_seconds": 5}', field="config")
    if input is not None and not isinstance(input, dict):
        raise BadRequest('must be an object of inputs by upstream node id, e.g. {"extract": {...}}', field="input")
    desc, events, request = await service._snapshot(run_id)
    plan = request["plan"]
    if node_id not in plan["nodes"]:
        raise NotFound("node", node_id, f"nodes of run '{run_id}': {', '.join(plan['order'])}")
    node = plan["nodes"][node_id]
    if node["kind"] != "activity":
        raise BadRequest(
            f"node '{node_id}' is a {node['kind']} node ({node['type']}): it runs inside the workflow, "
            "so it has no activity to run again; re-run one of the activity nodes after it",
            field="node_id",
        )
    io = trace.node_io(events)
    calls = [ident for ident in io if ident.split("#", 1)[0] == node_id]
    if not calls:
        status = service._statuses(desc, events, request)[node_id].status
        raise Conflict(
            f"node '{node_id}' of run '{run_id}' has no recorded inputs: it was never called in that run "
            f"(its status is {status}); re-run a node that ran, or start a new run"
        )
    if call is None:
        failed = [c for c in calls if io[c]["error"]]
        call_id = (failed or calls)[-1]
    else:
        call_id = call if "#" in call or call == node_id else f"{node_id}#{call}"
        if call_id not in io:
            raise NotFound("call", call_id, f"calls of node '{node_id}': {', '.join(calls)}")
    recorded = io[call_id]
    merged_config = {**(recorded["config"] or {}), **(config or {})}
    inputs = dict(recorded["inputs"] or {})
    if input:
        unknown = [k for k in input if k not in inputs]
        if unknown:
            expected = ", ".join(inputs) or "none"
            raise BadRequest(
                f"node '{node_id}' has no input from '{unknown[0]}': its inputs are by upstream node id ({expected})",
                field=f"input.{unknown[0]}",
            )
        inputs.update(input)
    _check_config(node_id, node["type"], merged_config)
    _check_blobs(service, {"config": merged_config, "inputs": inputs})
    meta = request.get("run", {})
    return Prepared(
        run_id=run_id, node_id=node_id, call_id=call_id, node=node, config=merged_config, inputs=inputs,
        recorded={"output": recorded["output"], "error": recorded["error"]}, flow_id=meta.get("flow_id"),
        version=meta.get("version"), tenant=meta.get("tenant") or "default", plan=plan,
    )  # fmt: skip


def _check_config(node_id: str, node_type: str, config: dict) -> None:
    validator = jsonschema.Draft202012Validator(nodes.require(node_type).config_schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        err = errors[0]
        raise BadRequest(
            f"{err.message} (node '{node_id}', {node_type}; see its config schema in fo.nodes())",
            field=format_path(["config", *err.absolute_path]),
        )


def _check_blobs(service, value: Any) -> None:
    """Values by reference must be in this deployment's blob store, where the node reads them."""
    for blob_id in _blob_ids(value):
        try:
            where = blobs.path(blob_id, settings=service.settings)
        except ValueError:
            continue  # text that only starts like a blob id: not a reference
        if not where.exists():
            raise Conflict(
                f"the node reads {blob_id}, which is not in the blob store of this deployment ({blobs.root(service.settings)})"
            )


def _blob_ids(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        if blobs.is_blob_id(value):
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _blob_ids(v)
    elif isinstance(value, list):
        for v in value:
            yield from _blob_ids(v)


class DebugContext:
    """What an executor gets from its activity (activities.NodeContext), without an activity: log
    lines are kept here (never in the run's logs), heartbeats go nowhere, it is attempt 1."""

    def __init__(self, call: NodeCall):
        self.call = call
        self.run_id = call.run_id
        self.node_id = call.node_id
        self.node_type = call.node_type
        self.attempt = 1
        self.idempotency_key = call.idempotency_key
        self.heartbeat_details: tuple = ()
        self.provider_calls = 0
        self.logs: list[dict] = []

    def heartbeat(self, *details: Any) -> None:
        if details:
            self.heartbeat_details = details

    def log(self, level: str, message: str, **extra: Any) -> None:
        self.logs.append(
            {"timestamp": datetime.now(UTC), "level": level.lower(), "message": message, "extra": extra or None}
        )


async def rerun_node(
    service, run_id: str, node_id: str, *, config: Any = None, input: Any = None, call: str | None = None
) -> dict:
    """Run a node's executor here, on what it was given in run ``run_id`` (with overrides).
    Returns ``{"status", "output", "error", "logs", "config", "inputs", "recorded", ...}``; the
    node's failure is the answer (``error`` with its kind and message), not an exception."""
    p = await prepare(service, run_id, node_id, config=config, input=input, call=call)
    spec = nodes.require(p.node["type"])
    executor = spec.execute
    assert executor is not None, "prepare() refuses a node that is not an activity"
    node_call = NodeCall(
        run_id=p.run_id, node_id=p.call_id, node_type=p.node["type"], config=p.config, inputs=p.inputs,
        # Not the run's key: a re-run is a new call, which a receiver must not drop as a repeat.
        idempotency_key=f"{p.run_id}:{p.call_id}:rerun-{uuid.uuid4().hex[:12]}",
        flow_id=p.flow_id, version=p.version, tenant=p.tenant,
    )  # fmt: skip
    ctx = DebugContext(node_call)

    async def execute() -> Any:
        # This task (and threads it starts) acts in the run's tenant, as the activity would.
        integrations.RUN_TENANT.set(p.tenant)
        return await asyncio.wait_for(executor(ctx, p.config, p.inputs), p.node["timeout_seconds"])

    started = time.perf_counter()
    output: Any = None
    error: dict[str, Any] | None = None
    try:
        output = await asyncio.create_task(execute())
    except NodeError as exc:
        error = {"kind": exc.kind, "message": str(exc), "retryable": exc.retryable}
        ctx.log("error", str(exc), error_type=exc.kind)
    except TimeoutError:
        error = {
            "kind": "Timeout",
            "message": f"timed out after {p.node['timeout_seconds']}s (the node's timeout_seconds)",
            "retryable": True,
        }
        ctx.log("error", error["message"], error_type="Timeout")
    except Exception as exc:  # noqa: BLE001 - the executor's bug is the answer, with its stack
        error = {
            "kind": type(exc).__name__,
            "message": f"{type(exc).__name__}: {exc}",
            "retryable": True,
            "stack": traceback.format_exc(),
        }
        ctx.log("error", error["message"], error_type=type(exc).__name__)
    return {
        "run_id": p.run_id,
        "node": p.node_id,
        "call": p.call_id,
        "type": p.node["type"],
        "where": "here",
        "status": "failed" if error else "success",
        "output": output,
        "error": error,
        "logs": ctx.logs,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        "config": p.config,
        "inputs": p.inputs,
        "recorded": p.recorded,
    }


# ---------------------------------------------------------------------- on a worker, as a test run
def test_plan(p: Prepared) -> tuple[dict, str, Any]:
    """A plan that calls the node once with exactly ``p.config`` and ``p.inputs``: ``(plan, trigger
    node, run input)``. The first upstream node becomes the trigger (so the input arrives under
    its id), further upstream nodes become literal stand-ins. Configs are taken as they are (every
    field is left unresolved: they were resolved in the real run), and retries are off: a try
    answers with the first failure."""
    upstream = list(p.inputs) or ["start" if p.node_id != "start" else "test_start"]
    first = upstream[0]
    base = {
        "retry": {**p.node["retry"], "max_attempts": 1},
        "timeout_seconds": 60.0,
        "heartbeat_seconds": None,
        "task_queue": None,
    }
    plan_nodes = {first: {**base, "type": "trigger.manual", "kind": "trigger", "config": {}, "expression_fields": []}}
    edges = []
    for other in upstream[1:]:
        plan_nodes[other] = {
            **base,
            "type": "transform",
            "kind": "activity",
            "config": {"output": p.inputs[other]},
            "timeout_seconds": 10,
            "expression_fields": ["output"],
        }
        edges.append({"source": first, "port": "out", "target": other, "target_port": "in"})
    plan_nodes[p.node_id] = {
        **p.node,
        "config": p.config,
        "expression_fields": sorted(p.config),
        "retry": {**p.node["retry"], "max_attempts": 1},
    }
    ports = {e["source"]: e.get("target_port", "in") for e in p.plan["edges"] if e["target"] == p.node_id}
    edges += [{"source": u, "port": "out", "target": p.node_id, "target_port": ports.get(u, "in")} for u in upstream]
    plan = {
        "format": p.plan.get("format", 1),
        "flow": dict(p.plan["flow"]),
        "triggers": [first],
        "nodes": plan_nodes,
        "edges": edges,
        "order": [*upstream, p.node_id],
    }
    return Plan.from_data(plan).to_data(), first, p.inputs.get(first)


async def try_node(
    service,
    run_id: str,
    node_id: str,
    *,
    config: Any = None,
    input: Any = None,
    call: str | None = None,
    by: str,
    wait: float | None = None,
) -> dict:
    """Run a node of a run again on a worker, as a test run of its flow (trigger "test", version
    "draft", its own run id): the real run is not touched. Waits for the test run (the node's
    timeout and a margin, or ``wait`` seconds); ``status`` "running" if it has not finished."""
    p = await prepare(service, run_id, node_id, config=config, input=input, call=call)
    plan, trigger_node, run_input = test_plan(p)
    # The one way runs start (service.start_run): the tenant's, traced, recorded and audited.
    started = await service.start_run(
        p.flow_id or plan["flow"].get("id") or "", input=run_input, by=by, trigger="test", trigger_node=trigger_node,
        plan=(plan, Plan.from_data(plan).hash, "draft"), extra_memo={"test_of": {"run_id": run_id, "node": node_id, "call": p.call_id}},
    )  # fmt: skip
    test_run_id = started["run_id"]
    service.store.audit(by, "run.try", test_run_id, {"of": run_id, "node": node_id, "call": p.call_id})
    timeout = wait if wait is not None else float(p.node["timeout_seconds"]) + TRY_WAIT_MARGIN_S
    try:
        await asyncio.wait_for(service.handle(test_run_id).result(), timeout)
    except WorkflowFailureError:
        pass  # the node failed: its error is read below
    except TimeoutError:
        pass
    events = list((await service.handle(test_run_id).fetch_history()).events)
    finished = events and events[-1].event_type in _CLOSED
    called = trace.node_io(events).get(p.node_id, {})
    chain = called.get("error") or []
    error = None
    if chain:
        error = {"kind": chain[0]["type"], "message": chain[0]["message"], "retryable": None}
    elif finished and events[-1].event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        failure = trace.run_error(events) or [{"type": "Failed", "message": "the test run did not complete"}]
        error = {"kind": failure[-1]["type"], "message": failure[-1]["message"], "retryable": None}
    logs = [
        {"timestamp": row["timestamp"], "level": row["level"], "message": row["message"], "extra": row.get("extra")}
        for row in service.store.list_logs(test_run_id, limit=10_000)
        if row["node"].split("#", 1)[0] == p.node_id
    ]
    return {
        "run_id": run_id,
        "node": node_id,
        "call": p.call_id,
        "type": p.node["type"],
        "where": "worker",
        "test_run_id": test_run_id,
        "status": ("failed" if error else "success") if finished else "running",
        "output": called.get("output"),
        "error": error,
        "logs": logs,
        "config": p.config,
        "inputs": p.inputs,
        "recorded": p.recorded,
    }


_CLOSED = (
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
)


# ====================================================================== run vs run
async def _run_view(service, run_id: str) -> dict:
    desc, events, request = await service._snapshot(run_id)
    plan = request["plan"]
    statuses = service._statuses(desc, events, request)
    io = trace.node_io(events)
    segments = trace.segments(plan, events, service.store.list_logs(run_id, limit=100_000))
    outputs: dict[str, Any] = {}
    for ident, call in io.items():
        node_id = ident.split("#", 1)[0]
        if "#" in ident:  # a loop body node: its output per iteration
            outputs.setdefault(node_id, {})[ident.split("#", 1)[1]] = call["output"]
        else:
            outputs[node_id] = call["output"]
    # A node reused from an earlier run was not called here: its output is the recorded one it was given.
    for node_id, reused in (request.get("reuse") or {}).items():
        outputs.setdefault(node_id, reused.get("output"))
    trigger = request["run"].get("trigger_node") or (plan["triggers"] or [None])[0]
    if trigger:
        outputs[trigger] = request.get("input")
    meta = request.get("run", {})
    start = events[0].event_time.ToDatetime(tzinfo=UTC) if events else None
    return {
        "run_id": run_id,
        "workflow_id": meta.get("flow_id"),
        "version": meta.get("version"),
        "plan_hash": meta.get("plan_hash") or Plan.from_data(plan).hash,
        "trigger": meta.get("trigger"),
        "status": run_status(desc.status),
        "start_time": start,
        "end_time": desc.close_time,
        "input": request.get("input"),
        "plan": plan,
        "statuses": statuses,
        "outputs": outputs,
        "trigger_node": trigger,
        "segments": segments,
    }


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds() * 1000, 3) if start and end else None


async def diff(service, run_a: str, run_b: str) -> dict:
    """Run ``run_b`` against ``run_a``: their plans' differences, one row per node (status,
    attempts, duration, output and its JSON diff, what differs), the first divergence (the
    earliest node, by time into its run, where they differ) and each run's trace segments."""
    a, b = await asyncio.gather(_run_view(service, run_a), _run_view(service, run_b))
    changes = plan_changes(a["plan"], b["plan"])
    changed = {c["node"]: c for c in changes["nodes_changed"]}
    rows = []
    for index, node_id in enumerate(_union_order(a["plan"], b["plan"])):
        sa, sb = a["statuses"].get(node_id), b["statuses"].get(node_id)
        in_a, in_b = node_id in a["plan"]["nodes"], node_id in b["plan"]["nodes"]
        plan_state = "added" if not in_a else "removed" if not in_b else "changed" if node_id in changed else "same"
        out_a, out_b = a["outputs"].get(node_id), b["outputs"].get(node_id)
        output_changes = json_diff(out_a, out_b) if in_a and in_b else []
        reasons = []
        if plan_state != "same":
            fields = ", ".join(changed[node_id]["fields"]) if plan_state == "changed" else ""
            reasons.append(f"plan: node {plan_state}" + (f" ({fields})" if fields else ""))
        if sa and sb and sa.status != sb.status:
            reasons.append(f"status: {sa.status} -> {sb.status}")
        # A reused node made no attempt of its own: that is how it was meant to run, not a difference.
        reused = any((s.detail or {}).get("reused") for s in (sa, sb) if s is not None)
        if sa and sb and sa.attempts != sb.attempts and not reused:
            reasons.append(f"attempts: {sa.attempts} -> {sb.attempts}")
        if output_changes:
            what = "input" if node_id in (a["trigger_node"], b["trigger_node"]) else "output"
            reasons.append(f"{what}: {len(output_changes)} path(s) differ")
        offsets = [
            (s.started - run["start_time"]).total_seconds()
            for s, run in ((sa, a), (sb, b))
            if s is not None and s.started is not None and run["start_time"] is not None
        ]
        rows.append(
            {
                "node": node_id,
                "type": (b["plan"]["nodes"].get(node_id) or a["plan"]["nodes"][node_id])["type"],
                "plan": plan_state,
                "status_a": sa.status if sa else None,
                "status_b": sb.status if sb else None,
                "attempts_a": sa.attempts if sa else None,
                "attempts_b": sb.attempts if sb else None,
                "duration_ms_a": _ms(sa.started, sa.ended) if sa else None,
                "duration_ms_b": _ms(sb.started, sb.ended) if sb else None,
                "error_a": sa.error if sa else None,
                "error_b": sb.error if sb else None,
                "output_a": out_a,
                "output_b": out_b,
                "output_changes": output_changes,
                "differs": reasons,
                "_key": (min(offsets) if offsets else float("inf"), index),
            }
        )
    first = min((r for r in rows if r["differs"]), key=lambda r: r["_key"], default=None)
    for row in rows:
        row.pop("_key")
    divergence = None
    if first is not None:
        divergence = {
            "node": first["node"],
            "reasons": first["differs"],
            "output_changes": first["output_changes"][:20],
        }
    return {
        "a": _summary(a),
        "b": _summary(b),
        "plan": changes,
        "nodes": rows,
        "first_divergence": divergence,
        "segments": {"a": a["segments"], "b": b["segments"]},
    }


def _summary(view: dict) -> dict:
    keys = ("run_id", "workflow_id", "version", "plan_hash", "trigger", "status", "start_time", "end_time", "input")
    return {k: view[k] for k in keys}
