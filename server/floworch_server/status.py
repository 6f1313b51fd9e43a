"""Per-node status, derived from Temporal history (the single source of truth).

- activity nodes: from activity events (scheduled, started with its attempt, completed, failed,
  timed out, cancelled) and, while the run runs, from the pending-activity part of the workflow
  description, which is where Temporal keeps a retrying activity's attempt and last failure;
- control nodes: from the ``fo.node.<id>`` memo entries the interpreter writes (waiting for a
  timer or an approval, success with the branch taken, skipped, failed);
- the trigger that started the run: success at the start of the run;
- compensation and reuse, from the same memo entries: a node whose compensation runs is
  "compensating", then "compensated" (or "compensation_failed", with the compensation's error);
  its own attempts and times stay those of the step it undoes. A node that took its recorded
  output from an earlier run is "success" with ``detail = {"reused": True, "from_run": <run id>}``.

Statuses: idle, running, retrying, waiting, success, failed, skipped, cancelled, compensating,
compensated, compensation_failed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState

from .messages import NODE_MEMO_PREFIX

STATUSES = (
    "idle",
    "running",
    "retrying",
    "waiting",
    "success",
    "failed",
    "skipped",
    "cancelled",
    "compensating",
    "compensated",
    "compensation_failed",
)
COMPENSATION_STATUSES = ("compensating", "compensated", "compensation_failed")


@dataclass
class NodeStatus:
    node: str
    type: str
    status: str = "idle"
    attempts: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("started", "ended"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def _time(ts) -> datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


def _payload_json(payload) -> Any:
    try:
        return json.loads(payload.data)
    except ValueError:
        return None


def _failure_message(failure) -> str:
    message = failure.message
    cause = failure.cause if failure.HasField("cause") else None
    if cause is not None and cause.message and cause.message not in message:
        message = f"{message}: {cause.message}"
    return message


def node_statuses(
    plan: dict[str, Any],
    events: Iterable[Any],
    pending_activities: Iterable[Any] = (),
    start_node: str | None = None,
) -> dict[str, NodeStatus]:
    """Status of every node of ``plan`` after the given history events."""
    result = {nid: NodeStatus(nid, node["type"]) for nid, node in plan["nodes"].items()}
    start_node = start_node or (plan["triggers"][0] if plan["triggers"] else None)
    by_scheduled: dict[int, str] = {}

    def node_of(activity_id: str) -> NodeStatus | None:
        return result.get(activity_id.split("#", 1)[0])

    for event in events:
        kind = event.event_type
        when = _time(event.event_time)
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            for trigger in plan["triggers"]:
                trig = result[trigger]
                if trigger == start_node:
                    trig.status, trig.started, trig.ended, trig.attempts = "success", when, when, 1
                else:  # another way to start this flow, not taken by this run
                    trig.status, trig.ended = "skipped", when
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            by_scheduled[event.event_id] = attrs.activity_id
            st = node_of(attrs.activity_id)
            if st:
                st.status, st.started, st.ended, st.error = "running", when, None, None
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            st = node_of(by_scheduled.get(attrs.scheduled_event_id, ""))
            if st:
                st.attempts = attrs.attempt
                st.detail["last_started"] = when.isoformat() if when else None
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            st = node_of(by_scheduled.get(attrs.scheduled_event_id, ""))
            if st:
                st.status, st.ended = "success", when
                st.attempts = max(st.attempts, 1)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            attrs = event.activity_task_failed_event_attributes
            st = node_of(by_scheduled.get(attrs.scheduled_event_id, ""))
            if st:
                st.status, st.ended, st.error = "failed", when, _failure_message(attrs.failure)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            attrs = event.activity_task_timed_out_event_attributes
            st = node_of(by_scheduled.get(attrs.scheduled_event_id, ""))
            if st:
                st.status, st.ended, st.error = "failed", when, _failure_message(attrs.failure)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            attrs = event.activity_task_canceled_event_attributes
            st = node_of(by_scheduled.get(attrs.scheduled_event_id, ""))
            if st:
                st.status, st.ended = "cancelled", when
        elif kind == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
            memo = event.workflow_properties_modified_event_attributes.upserted_memo
            for key, payload in memo.fields.items():
                if key.startswith(NODE_MEMO_PREFIX):
                    st = result.get(key[len(NODE_MEMO_PREFIX) :])
                    state = _payload_json(payload)
                    if st and isinstance(state, dict):
                        _apply_control_state(st, state, when)

    for pending in pending_activities:
        st = node_of(pending.activity_id)
        if st is None or st.status not in ("running", "retrying"):
            continue
        st.attempts = pending.attempt
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED:
            st.detail["last_started"] = _iso(_time(pending.last_started_time))
        if pending.attempt > 1 or pending.HasField("last_failure"):
            st.status = "retrying"
            if pending.HasField("last_failure"):
                st.error = _failure_message(pending.last_failure)
            next_at = _time(pending.next_attempt_schedule_time)
            if next_at:
                st.detail["next_attempt"] = next_at.isoformat()
    return result


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _apply_control_state(st: NodeStatus, state: dict[str, Any], when: datetime | None) -> None:
    status = state.get("status", "running")
    if status in COMPENSATION_STATUSES:
        # The step's own attempts and times stay; the compensation adds its node and outcome.
        st.status, st.error = status, state.get("error")
        st.detail = {**st.detail, "compensation": state.get("compensation")}
        return
    if status == "reused":
        st.status, st.started, st.ended, st.attempts, st.error = "success", when, when, 0, None
        st.detail = {"reused": True, "from_run": state.get("from_run")}
        return
    if status in ("running", "waiting") and st.started is None:
        st.started = when
    if status in ("success", "failed", "skipped"):
        st.ended = when
        if st.started is None and status != "skipped":
            st.started = when
        st.attempts = max(st.attempts, 1) if status != "skipped" else 0
    st.status = status
    st.error = state.get("error")
    st.detail = {k: v for k, v in state.items() if k not in ("status", "at", "error")}


RUN_STATUS_BY_TEMPORAL = {
    "RUNNING": "running",
    "COMPLETED": "success",
    "FAILED": "failed",
    "CANCELED": "cancelled",
    "TERMINATED": "cancelled",
    "CONTINUED_AS_NEW": "success",
    "TIMED_OUT": "failed",
}


def run_status(temporal_status: Any) -> str:
    """Our run status for a Temporal execution status (enum or name)."""
    name = getattr(temporal_status, "name", str(temporal_status or "RUNNING"))
    return RUN_STATUS_BY_TEMPORAL.get(name.replace("WORKFLOW_EXECUTION_STATUS_", ""), "running")
