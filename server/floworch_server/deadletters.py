"""Dead letters: the failed runs of each flow, what they failed at, and their retries.

A failed run is a dead letter of its flow until it is retried. The run records say which runs
failed (the tenant's store view, so a tenant sees only its own); each run's history says what
it failed at - the node, its type, the error's kind (the node's failure type, e.g.
``HttpStatus404``, ``IntegrationMissing``) and message - and with what input. A closed history
never changes, so it is read once per process and what it says is kept
(``FlowService._dead_letter_details``): listing the same dead letters again reads no history.

A retry is an ordinary run of the same flow (``FlowService.start_run``: tenancy, audit and rate
limits apply) whose idempotency key is made of the dead letter's run id and the retry's mode.
Retrying the same dead letter the same way again answers with the run the first retry started,
so its side effects happen once. The retry's run id follows from the dead letter alone, which
is also how the list knows that a dead letter was retried, and by which run, without storing
anything more.

- mode ``start``: a new run from the start, with the same input, on the version the run ran
  (``same``: a published version, or the exact plan a draft run ran, read from its history)
  or on the flow's latest published version (``latest``).
- mode ``resume``: a new run that takes the recorded outputs of the activity nodes that
  succeeded upstream of the failed node (RunRequest ``reuse``; the interpreter marks them
  reused) and runs the failed node and everything after it. Nodes the run itself took from an
  earlier run stay taken from that run; a node whose compensation ran is not reused (what its
  output describes was undone), so it runs again. On the latest version, a node is reused only if it and
  every node before it are unchanged (same type and config); control nodes (conditions,
  approvals, timers) are not activities with recorded outputs and run again.

Every retried run is checked before any retry starts: an unknown run, a run that did not fail,
or a resume without the recorded history it needs is an error naming the run, and nothing starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError, RPCStatusCode

from . import trace
from .errors import BadRequest, Conflict, NotFound
from .service import check_input, default_trigger, idempotent_run_id, started_request
from .status import node_statuses, run_status

if TYPE_CHECKING:
    from .service import FlowService

MODES = ("start", "resume")
VERSIONS = ("same", "latest")
COLUMNS = [
    "run_id",
    "workflow_id",
    "workflow",
    "version",
    "node",
    "node_type",
    "error_kind",
    "error",
    "input",
    "ended",
    "retried_as",
    "retry_mode",
    "retry_status",
]
MAX_LIMIT = 1000
MAX_RETRY = 100
# Failed runs looked at per store query, and at most per listing: filters by node type or error
# kind are applied to what the histories say, so a listing may have to look past its limit.
SCAN_PAGE = 200
MAX_SCAN = 5000
# Histories read at once when a listing meets failed runs not read before.
READ_CONCURRENCY = 8
# Failed runs whose details a process keeps (a few hundred bytes each, plus their input).
DETAILS_KEPT = 10_000
# Failure types that only wrap the node's own failure: the error kind is the one inside them.
WRAPPERS = {"", "NodeFailed", "ActivityFailure", "ChildWorkflowFailure"}

log = logging.getLogger(__name__)


def retry_key(run_id: str, mode: str) -> str:
    """The idempotency key of retrying ``run_id`` in ``mode``: one run per dead letter and mode."""
    return f"retry:{mode}:{run_id}"


def retry_run_id(workflow_id: str, run_id: str, mode: str) -> str:
    """The id of the run that retrying ``run_id`` (a run of ``workflow_id``) in ``mode`` starts."""
    return idempotent_run_id(workflow_id, retry_key(run_id, mode))


# ---------------------------------------------------------------------- what a history says
def failure_of(events: list) -> dict:
    """The failed node, its type, the error kind and message of a failed run's history
    (all None where the history does not say, e.g. a run that timed out as a whole)."""
    request = started_request(events) or {}
    plan = request.get("plan") or {"nodes": {}, "triggers": [], "order": []}
    last = events[-1] if events else None
    out: dict[str, Any] = {"node": None, "node_type": None, "error_kind": None, "error": None}
    if last is None:
        return out
    if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return {**out, "error_kind": "Timeout", "error": "the run timed out"}
    if not last.HasField("workflow_execution_failed_event_attributes"):
        return out
    failure = last.workflow_execution_failed_event_attributes.failure
    chain = trace.failure_chain(failure)
    node = _failed_node(failure)
    if node is None and plan["nodes"]:
        failed = [n for n, st in node_statuses(plan, events).items() if st.status == "failed"]
        node = failed[0] if failed else None
    # The outermost failure inside the wrappers is what the node raised (HttpStatus422); its own
    # causes are where that came from (the executor's Python exception). A control node's error
    # (a bad expression, a rejected approval) has no failure inside.
    inner = [c["type"] for c in chain if c["type"] not in WRAPPERS]
    kind = inner[0] if inner else ("NodeError" if node else (chain[0]["type"] if chain else None))
    return {
        "node": node,
        "node_type": plan["nodes"].get(node, {}).get("type") if node else None,
        "error_kind": kind or None,
        "error": chain[0]["message"] if chain else None,
    }


def _failed_node(failure) -> str | None:
    # The interpreter's NodeFailed carries the node id as its details.
    if not failure.HasField("application_failure_info") or failure.application_failure_info.type != "NodeFailed":
        return None
    payloads = failure.application_failure_info.details.payloads
    try:
        node = json.loads(payloads[0].data) if payloads else None
    except ValueError:
        return None
    return node if isinstance(node, str) else None


def _ancestors(plan: dict, node: str) -> set[str]:
    """Every node with a path to ``node`` in the plan's acyclic graph (loop-back edges aside)."""
    sources: dict[str, list[str]] = {}
    for edge in plan["edges"]:
        if not edge.get("loop_back"):
            sources.setdefault(edge["target"], []).append(edge["source"])
    seen: set[str] = set()
    todo = deque(sources.get(node, []))
    while todo:
        current = todo.popleft()
        if current not in seen:
            seen.add(current)
            todo.extend(sources.get(current, []))
    return seen


def reusable_outputs(run_id: str, old_plan: dict, new_plan: dict, events: list, failed_node: str) -> dict[str, dict]:
    """RunRequest "reuse" for resuming the run of ``events`` (on ``old_plan``) at ``failed_node``
    on ``new_plan``: the recorded output of each activity node upstream of the failed node that
    succeeded (or was itself taken from an earlier run), and is unchanged with everything
    before it in the new plan. A compensated node's status is no longer "success": not reused."""
    request = started_request(events) or {}
    in_loops = {n for loop in old_plan.get("loops", {}).values() for n in loop["body"]}
    statuses = node_statuses(old_plan, events)
    calls = trace.node_io(events)
    recorded: dict[str, dict] = {}
    for node, earlier in (request.get("reuse") or {}).items():
        if isinstance(earlier, dict) and "output" in earlier:
            recorded[node] = {"output": earlier["output"], "from_run": earlier.get("from_run") or run_id}
    for node in old_plan["order"]:
        spec = old_plan["nodes"][node]
        if spec["kind"] == "activity" and node not in in_loops and node in calls and statuses[node].status == "success":
            recorded[node] = {"output": calls[node]["output"], "from_run": run_id}

    def same(node: str) -> bool:
        old, new = old_plan["nodes"].get(node), new_plan["nodes"].get(node)
        return old is not None and new is not None and (old["type"], old["config"]) == (new["type"], new["config"])

    upstream = _ancestors(old_plan, failed_node)
    reuse = {}
    for node, value in recorded.items():
        if (
            node in upstream
            and node in new_plan["nodes"]
            and same(node)
            and all(same(a) for a in _ancestors(new_plan, node))
        ):
            reuse[node] = value
    return reuse


# ---------------------------------------------------------------------- listing
async def list_dead_letters(
    service: FlowService,
    *,
    workflow_id: str | None = None,
    node_type: str | None = None,
    error_kind: str | None = None,
    limit: int = 100,
    include_retried: bool = False,
) -> list[dict]:
    """The tenant's dead letters, newest first: failed runs not retried yet (with
    ``include_retried``, retried ones too, with the run that retried them)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}", field="limit")
    await service.sync_runs()
    gate = asyncio.Semaphore(READ_CONCURRENCY)
    out: list[dict] = []
    offset = 0
    while len(out) < limit and offset < MAX_SCAN:
        page = service.store.list_runs(workflow_id=workflow_id, status="failed", limit=SCAN_PAGE, offset=offset)
        offset += len(page)
        letters = await asyncio.gather(*(_letter(service, record, gate) for record in page))
        _mark_retries(service, letters)
        for letter in letters:
            if (letter["retried_as"] and not include_retried) or (node_type and letter["node_type"] != node_type):
                continue
            if error_kind and letter["error_kind"] != error_kind:
                continue
            out.append(letter)
            if len(out) == limit:
                break
        if len(page) < SCAN_PAGE:
            break
    return out


async def _letter(service: FlowService, record: dict, gate: asyncio.Semaphore) -> dict:
    run_id = record["run_id"]
    cache = service._dead_letter_details
    key = f"{service.tenant}\0{run_id}"
    details = cache.get(key)
    if details is None:
        async with gate:
            details = await _read_details(service, run_id)
        if details is not None:
            if len(cache) >= DETAILS_KEPT:
                cache.pop(next(iter(cache)))  # the oldest read goes first
            cache[key] = details
    details = details or {"history": False}
    meta = record.get("search_attributes") or {}
    return {
        "run_id": run_id,
        "workflow_id": details.get("workflow_id") or record.get("workflow_id"),
        "workflow": details.get("workflow") or meta.get("flow_name") or record.get("workflow_id"),
        "version": details.get("version") or record.get("version"),
        "node": details.get("node"),
        "node_type": details.get("node_type"),
        "error_kind": details.get("error_kind"),
        "error": details.get("error") or record.get("error"),
        "input": details["input"] if "input" in details else record.get("input"),
        "ended": record.get("end_time"),
        "history": details.get("history", True),
        "retried_as": None,
        "retry_mode": None,
        "retry_status": None,
    }


async def _read_details(service: FlowService, run_id: str) -> dict | None:
    """What the run's history says, or ``{"history": False}`` when it is no longer kept;
    None when Temporal did not answer (the listing shows the run record, and reads it next time)."""
    try:
        events = await service._history_events(run_id)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return {"history": False}
        log.warning("could not read the history of failed run %s: %s", run_id, exc)
        return None
    request = started_request(events)
    if request is None:
        return {"history": False}
    meta = request.get("run") or {}
    return {
        "history": True,
        "workflow_id": meta.get("flow_id"),
        "workflow": meta.get("flow_name"),
        "version": meta.get("version"),
        "input": request.get("input"),
        **failure_of(events),
    }


def _mark_retries(service: FlowService, letters: list[dict]) -> None:
    """Fill ``retried_as``/``retry_mode``/``retry_status`` of the letters some retry started for."""
    wanted = {
        retry_run_id(letter["workflow_id"], letter["run_id"], mode): (letter, mode)
        for letter in letters
        if letter["workflow_id"]
        for mode in MODES
    }
    found = sorted(service.store.get_runs(list(wanted)), key=lambda r: r["start_time"])
    for run in found:  # the newest retry last, so it is the one shown
        letter, mode = wanted[run["run_id"]]
        letter.update(retried_as=run["run_id"], retry_mode=mode, retry_status=run["status"])


# ---------------------------------------------------------------------- retrying
@dataclass
class _Retry:
    """A checked retry, ready to start."""

    run_id: str
    workflow_id: str
    plan: tuple[dict, str, str]
    trigger_node: str
    input: Any
    reuse: dict[str, dict] = field(default_factory=dict)


async def retry(
    service: FlowService, run_ids: Any, *, mode: Any = "start", version: Any = "same", by: str
) -> list[dict]:
    """Retry each dead letter of ``run_ids``; one entry per run: the retry's run id and status,
    and the nodes it reuses. Every run is checked first: on any error nothing starts."""
    if not isinstance(run_ids, list) or not all(isinstance(r, str) and r for r in run_ids):
        raise BadRequest("must be a list of run ids (strings)", field="run_ids")
    if not run_ids:
        raise BadRequest("is empty: name at least one failed run to retry", field="run_ids")
    if len(run_ids) > MAX_RETRY:
        raise BadRequest(f"names {len(run_ids)} runs; retry at most {MAX_RETRY} at once", field="run_ids")
    if mode not in MODES:
        raise BadRequest(
            f"must be 'start' (from the start) or 'resume' (from the failed node), got {mode!r}", field="mode"
        )
    if version not in VERSIONS:
        raise BadRequest(
            f"must be 'same' (the version the run ran) or 'latest' (the latest published one), got {version!r}",
            field="version",
        )
    checked = [await _check(service, run_id, mode, version) for run_id in dict.fromkeys(run_ids)]
    results = []
    for item in checked:
        run = await service.start_run(
            item.workflow_id,
            input=item.input,
            by=by,
            trigger="retry",
            trigger_node=item.trigger_node,
            idempotency_key=retry_key(item.run_id, mode),
            plan=item.plan,
            reuse=item.reuse or None,
            extra_memo={"retry_of": item.run_id, "retry_mode": mode},
        )
        reused = sorted(item.reuse)
        service.store.audit(
            by,
            "run.retry",
            item.run_id,
            {"run": run["run_id"], "mode": mode, "version": item.plan[2], "reused": reused},
        )
        results.append(
            {
                "run_id": item.run_id,
                "retry_run_id": run["run_id"],
                "mode": mode,
                "version": item.plan[2],
                "reused": reused,
                "status": run["status"],
            }
        )
    return results


async def _check(service: FlowService, run_id: str, mode: str, version: str) -> _Retry:
    events: list | None = None
    request: dict | None = None
    try:
        desc, events, request = await service._snapshot(run_id)
        status = run_status(desc.status)
        meta = request["run"]
        workflow_id, run_input = meta.get("flow_id"), request.get("input")
    except NotFound:
        # A run whose history Temporal no longer keeps still has its record: it can start again.
        record = service.store.get_run(run_id)
        if record is None:
            raise NotFound(
                "run", run_id, "dead letters are failed runs of this tenant: see GET /dead-letters"
            ) from None
        status, meta = record["status"], {**(record.get("search_attributes") or {}), "version": record.get("version")}
        workflow_id, run_input, events = record.get("workflow_id"), record.get("input"), None
    if status != "failed":
        hint = " (resume of a running run): wait for it to end, or cancel it first" if status == "running" else ""
        raise Conflict(f"run '{run_id}' is {status}, not failed: only a failed run is a dead letter to retry{hint}")
    if not workflow_id:
        raise Conflict(
            f"run '{run_id}' names no flow (it was not started by FlowOrchestrator), so it cannot be retried"
        )
    try:
        service.get_workflow(workflow_id)
    except NotFound:
        raise NotFound("workflow", workflow_id, f"the flow of run '{run_id}' was deleted") from None

    if version == "latest":
        plan = _named(run_id, lambda: service._plan_for(workflow_id, None))
    elif request is not None:
        plan = (request["plan"], meta.get("plan_hash") or "", str(meta.get("version") or "draft"))
    elif str(meta.get("version") or "draft").isdigit():
        plan = _named(run_id, lambda: service._plan_for(workflow_id, meta["version"]))
    else:
        raise Conflict(
            f"run '{run_id}' ran a draft whose plan is no longer recorded (its history is not kept); retry it with version 'latest'"
        )
    trigger_node = meta.get("trigger_node")
    if trigger_node not in plan[0]["nodes"]:
        trigger_node = default_trigger(plan[0], meta.get("trigger") or "manual")
    _named(run_id, lambda: check_input(plan[0], trigger_node, run_input))

    item = _Retry(run_id, workflow_id, plan, trigger_node, run_input)
    if mode == "resume":
        if events is None or request is None:
            raise Conflict(
                f"run '{run_id}': the inputs and outputs of its nodes are not recorded (Temporal no longer keeps its "
                "history), so it cannot resume from the failed node; retry it with mode 'start'"
            )
        failed = failure_of(events)
        if failed["node"] is None:
            raise Conflict(
                f"run '{run_id}' did not fail at a node ({failed['error'] or 'no node failure recorded'}); retry it with mode 'start'"
            )
        item.reuse = reusable_outputs(run_id, request["plan"], plan[0], events, failed["node"])
    return item


def _named(run_id: str, check):
    """``check()``, with a BadRequest it raises saying which run it is about."""
    try:
        return check()
    except BadRequest as exc:
        message = str(exc)
        if exc.field and message.startswith(f"{exc.field}: "):
            message = message[len(exc.field) + 2 :]
        raise BadRequest(f"retrying run '{run_id}': {message}", field=exc.field, problems=exc.problems) from None
