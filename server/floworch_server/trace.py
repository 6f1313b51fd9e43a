"""A run's trace: one segment per activity attempt, timer wait, approval wait and control step,
read from Temporal history (and, for attempts that failed before the last one, from the
store's log lines: history keeps only an activity's last attempt).

A compensated node has a second segment, kind "compensation", from "compensating" to
"compensated" or "compensation_failed" (its compensating node's activity has its own segments);
a node that reused an earlier run's output has an instant segment of kind "reused".

Also the run's inspector data (each node's inputs and outputs, as Temporal recorded them) and its
error with the full cause chain and stack traces."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType

from .messages import NODE_MEMO_PREFIX

SEGMENT_COLUMNS = ["node", "type", "kind", "iteration", "attempt", "scheduled", "started", "ended", "status", "error"]


def _time(ts) -> datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


def _json(payload) -> Any:
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


def _split(activity_id: str) -> tuple[str, str | None]:
    node, _, iteration = activity_id.partition("#")
    return node, iteration.replace("#", ".") or None


FAILURE_KINDS = {
    "activity_failure_info": "ActivityFailure",
    "timeout_failure_info": "Timeout",
    "canceled_failure_info": "Cancelled",
    "terminated_failure_info": "Terminated",
    "server_failure_info": "ServerFailure",
    "child_workflow_execution_failure_info": "ChildWorkflowFailure",
}


def failure_chain(failure) -> list[dict]:
    """A Temporal failure and its causes, outermost first: message, type, stack trace."""
    chain = []
    while failure is not None and (failure.message or failure.stack_trace):
        if failure.HasField("application_failure_info"):
            kind = failure.application_failure_info.type
        else:
            info = failure.WhichOneof("failure_info") or ""
            kind = FAILURE_KINDS.get(info, info)
        chain.append({"message": failure.message, "type": kind, "stack_trace": failure.stack_trace})
        failure = failure.cause if failure.HasField("cause") else None
    return chain


def segments(
    plan: dict, events: Iterable[Any], attempt_logs: Iterable[dict] = (), now: datetime | None = None
) -> list[dict]:
    nodes = plan["nodes"]
    out: list[dict] = []
    open_activities: dict[int, dict] = {}
    control_open: dict[tuple, dict] = {}
    start_time = None
    closed_at = None
    for event in events:
        kind = event.event_type
        when = _time(event.event_time)
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            start_time = when
            trigger = (_json(event.workflow_execution_started_event_attributes.input.payloads[0]) or {}).get(
                "run", {}
            ).get("trigger_node") or (plan["triggers"] or [None])[0]
            if trigger:
                out.append(_segment(trigger, nodes[trigger]["type"], "trigger", None, 1, when, when, when, "success"))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            node, iteration = _split(attrs.activity_id)
            scheduled = _segment(
                node,
                nodes.get(node, {}).get("type", attrs.activity_type.name),
                "activity",
                iteration,
                1,
                when,
                None,
                None,
                "running",
            )
            open_activities[event.event_id] = scheduled
            out.append(scheduled)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            seg = open_activities.get(attrs.scheduled_event_id)
            if seg:
                seg["started"], seg["attempt"] = when, attrs.attempt
        elif kind in (
            EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
            EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
            EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
        ):
            name = {
                EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("activity_task_completed_event_attributes", "success"),
                EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("activity_task_failed_event_attributes", "failed"),
                EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("activity_task_timed_out_event_attributes", "failed"),
                EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("activity_task_canceled_event_attributes", "cancelled"),
            }[kind]
            attrs = getattr(event, name[0])
            seg = open_activities.pop(attrs.scheduled_event_id, None)
            if seg:
                seg["ended"], seg["status"] = when, name[1]
                seg["started"] = seg["started"] or seg["scheduled"]
                if hasattr(attrs, "failure") and attrs.HasField("failure"):
                    chain = failure_chain(attrs.failure)
                    seg["error"] = " <- ".join(c["message"] for c in chain)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
            memo = event.workflow_properties_modified_event_attributes.upserted_memo
            for key, payload in memo.fields.items():
                if not key.startswith(NODE_MEMO_PREFIX):
                    continue
                node = key[len(NODE_MEMO_PREFIX) :]
                state = _json(payload) or {}
                status, iteration = state.get("status"), state.get("iteration")
                ident = (node, iteration)
                node_type = nodes.get(node, {}).get("type", "")
                if status in ("running", "waiting"):
                    reason = state.get("reason")
                    seg_kind = {"timer": "timer", "approval": "approval"}.get(reason or "", "control")
                    previous = control_open.get(ident)
                    if previous and previous["kind"] == "control" and seg_kind != "control":
                        previous["kind"] = seg_kind  # a waiting node: its step is the wait
                        continue
                    if previous is None:
                        seg = _segment(node, node_type, seg_kind, iteration, 1, when, when, None, status)
                        control_open[ident] = seg
                        out.append(seg)
                elif status in ("success", "failed"):
                    seg = control_open.pop(ident, None)
                    if seg is None:
                        seg = _segment(node, node_type, "control", iteration, 1, when, when, None, status)
                        out.append(seg)
                    seg["ended"], seg["status"], seg["error"] = when, status, state.get("error")
                elif status == "skipped":
                    out.append(_segment(node, node_type, "skipped", iteration, 0, when, None, None, "skipped"))
                elif status == "compensating":
                    seg = _segment(node, node_type, "compensation", iteration, 1, when, when, None, "compensating")
                    control_open[(node, "compensation")] = seg
                    out.append(seg)
                elif status in ("compensated", "compensation_failed"):
                    seg = control_open.pop((node, "compensation"), None)
                    if seg is None:
                        seg = _segment(node, node_type, "compensation", iteration, 1, when, when, None, status)
                        out.append(seg)
                    seg["ended"], seg["status"], seg["error"] = when, status, state.get("error")
                elif status == "reused":
                    out.append(_segment(node, node_type, "reused", iteration, 0, when, when, when, "success"))
        elif event.event_type in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        ):
            closed_at = when

    # Earlier failed attempts of activities: the worker logged each with its start time.
    for log in attempt_logs:
        extra = log.get("extra") or {}
        if log.get("level") not in ("error", "warning") or "attempt_started" not in extra:
            continue
        node, iteration = _split(log["node"])
        if any(
            s["node"] == node
            and s["iteration"] == iteration
            and s["attempt"] == log.get("attempt")
            and s["kind"] == "activity"
            for s in out
        ):
            continue  # that attempt is the one history shows
        started = datetime.fromisoformat(extra["attempt_started"])
        status = "cancelled" if extra.get("error_type") == "Cancelled" else "failed"
        out.append(
            _segment(
                node,
                nodes.get(node, {}).get("type", ""),
                "activity",
                iteration,
                log.get("attempt") or 1,
                started,
                started,
                log["timestamp"],
                status,
                log["message"],
            )
        )

    # Still open at the end: running until now, or until the run closed.
    end = closed_at or now or datetime.now(UTC)
    for seg in out:
        if seg["ended"] is None and seg["status"] in ("running", "waiting", "compensating"):
            seg["ended_open"] = True
            seg["ended"] = end
    out.sort(key=lambda s: (s["started"] or s["scheduled"] or start_time or end, s["node"], s["attempt"]))
    return out


def _segment(node, node_type, kind, iteration, attempt, scheduled, started, ended, status, error=None) -> dict:
    return {
        "node": node,
        "type": node_type,
        "kind": kind,
        "iteration": iteration,
        "attempt": attempt,
        "scheduled": scheduled,
        "started": started,
        "ended": ended,
        "status": status,
        "error": error,
    }


def node_io(events: Iterable[Any]) -> dict[str, dict]:
    """Per activity id: the resolved config and inputs it was called with, and its output or failure."""
    calls: dict[int, str] = {}
    out: dict[str, dict] = {}
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            calls[event.event_id] = attrs.activity_id
            call = _json(attrs.input.payloads[0]) if attrs.input.payloads else {}
            out[attrs.activity_id] = {
                "config": call.get("config"),
                "inputs": call.get("inputs"),
                "output": None,
                "error": None,
            }
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            ident = calls.get(attrs.scheduled_event_id)
            if ident:
                payloads = attrs.result.payloads
                out[ident]["output"] = _json(payloads[0]) if payloads else None
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            attrs = event.activity_task_failed_event_attributes
            ident = calls.get(attrs.scheduled_event_id)
            if ident:
                out[ident]["error"] = failure_chain(attrs.failure)
    return out


def run_error(events: list) -> list[dict] | None:
    """The failure that ended the run, with its causes (node failure, activity error) and stack traces."""
    if events and events[-1].HasField("workflow_execution_failed_event_attributes"):
        return failure_chain(events[-1].workflow_execution_failed_event_attributes.failure)
    return None
