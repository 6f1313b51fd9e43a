"""Control-flow nodes. They run inside the interpreter workflow, so they must be deterministic:
no I/O, no clocks but ``wctx.now()``, no randomness. ``wctx`` is the interpreter's
`floworch_server.interpreter.ControlContext`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..problems import Problem
from .spec import ControlResult, NodeError, NodeSpec, Port, register


# ------------------------------------------------------------------ if
async def _if(wctx: Any, config: dict, inputs: dict) -> ControlResult:
    value = bool(wctx.evaluate(config["condition"], "condition"))
    return ControlResult({"value": value}, ("true" if value else "false",))


IF = register(
    NodeSpec(
        type="control.if",
        category="Control Flow",
        title="If / else",
        description="Follows the `true` or the `false` branch by a condition; the other branch is skipped.",
        kind="control",
        icon="split",
        control=_if,
        outputs=(Port("true"), Port("false")),
        expression_fields=("condition",),
        config_schema={
            "type": "object",
            "required": ["condition"],
            "additionalProperties": False,
            "properties": {
                "condition": {
                    "type": "string",
                    "minLength": 1,
                    "description": "An expression, e.g. input.amount > 100 and nodes.check.output.ok",
                }
            },
        },
    )
)


# ------------------------------------------------------------------ parallel
async def _parallel(wctx: Any, config: dict, inputs: dict) -> ControlResult:
    return ControlResult(wctx.single_input(inputs), ("branches",))


PARALLEL = register(
    NodeSpec(
        type="control.parallel",
        category="Control Flow",
        title="Parallel",
        description="Runs every branch connected to `branches` at the same time. A node with several "
        "incoming edges joins them: it waits for all of them (skipped branches count as done).",
        kind="control",
        icon="parallel",
        control=_parallel,
        outputs=(Port("branches"),),
        config_schema={"type": "object", "additionalProperties": False, "properties": {}},
        docs="Join: give the node after the branches one incoming edge from each branch; "
        "its `inputs` hold each branch's output by node id.",
    )
)


# ------------------------------------------------------------------ delay
async def _delay(wctx: Any, config: dict, inputs: dict) -> ControlResult:
    if "until" in config:
        try:
            until = datetime.fromisoformat(str(config["until"]).replace("Z", "+00:00"))
        except ValueError:
            raise NodeError(f"config.until {config['until']!r} is not an ISO 8601 timestamp", retryable=False) from None
        if until.tzinfo is None:
            raise NodeError(f"config.until {config['until']!r} needs a time zone, e.g. 2026-01-01T09:00:00Z", retryable=False)
        seconds = max(0.0, (until - wctx.now()).total_seconds())
    else:
        seconds = float(config["seconds"])
    await wctx.sleep(seconds)
    return ControlResult(wctx.single_input(inputs), ("out",))


DELAY = register(
    NodeSpec(
        type="control.delay",
        category="Control Flow",
        title="Delay",
        description="Waits a duration, or until a timestamp, on a durable Temporal timer (survives restarts).",
        kind="control",
        icon="clock",
        control=_delay,
        config_schema={
            "type": "object",
            "additionalProperties": False,
            "oneOf": [{"required": ["seconds"]}, {"required": ["until"]}],
            "properties": {
                "seconds": {"type": "number", "minimum": 0},
                "until": {"type": "string", "description": "ISO 8601 timestamp with a time zone."},
            },
        },
        docs="Passes its input through unchanged.",
    )
)


# ------------------------------------------------------------------ approval
async def _approval(wctx: Any, config: dict, inputs: dict) -> ControlResult:
    decision = await wctx.wait_for_decision(config.get("timeout_seconds"), config.get("approvers"))
    if decision is None:
        return ControlResult({"decision": "timeout", "by": None, "at": wctx.now().isoformat()}, ("timeout",))
    port = "approved" if decision["decision"] == "approved" else "rejected"
    return ControlResult(decision, (port,))


def _approval_check(node: Any, doc: Any) -> list[Problem]:
    if node.config.get("timeout_seconds") is None:
        return []
    if any(e.source == node.id and e.sourceHandle == "timeout" for e in doc.edges):
        return []
    return [
        Problem(
            "approval-timeout-unconnected",
            "timeout_seconds is set but the 'timeout' branch leads nowhere",
            node=node.id,
            field="config.timeout_seconds",
            hint="connect the 'timeout' port to the node that should run on timeout, or remove timeout_seconds",
        )
    ]


APPROVAL = register(
    NodeSpec(
        type="control.approval",
        category="Control Flow",
        title="Human approval",
        description="Waits until someone approves or rejects (from a notebook, the canvas or the REST API); "
        "optionally gives up after a timeout and follows the `timeout` branch.",
        kind="control",
        icon="user-check",
        control=_approval,
        outputs=(Port("approved"), Port("rejected"), Port("timeout")),
        check=_approval_check,
        config_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "title": {"type": "string"},
                "message": {"type": "string", "description": "Shown to the approver; may hold {{ }} references."},
                "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
                "approvers": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Who may decide; empty means anyone with access to the run.",
                },
            },
        },
        docs="Output: {decision: approved|rejected|timeout, by, comment, at}.",
    )
)
