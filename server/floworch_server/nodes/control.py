"""Control-flow nodes. They run inside the interpreter workflow, so they must be deterministic:
no I/O, no clocks but ``wctx.now()``, no randomness. ``wctx`` is the interpreter's
`floworch_server.interpreter.ControlContext`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..problems import Problem
from .spec import ControlResult, NodeError, NodeSpec, OutputsFrom, Port, register


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
            raise NodeError(
                f"config.until {config['until']!r} needs a time zone, e.g. 2026-01-01T09:00:00Z", retryable=False
            )
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


# ------------------------------------------------------------------ switch
def _switch_expressions(config: dict):
    for i, case in enumerate(config.get("cases") or []):
        if isinstance(case, dict) and isinstance(case.get("when"), str):
            yield f"cases[{i}].when", case["when"]


async def _switch(wctx: Any, config: dict, inputs: dict) -> ControlResult:
    for i, case in enumerate(config["cases"]):
        if wctx.evaluate(case["when"], f"cases[{i}].when"):
            return ControlResult({"port": case["port"], "case": i}, (case["port"],))
    return ControlResult({"port": "default", "case": None}, ("default",))


SWITCH = register(
    NodeSpec(
        type="control.switch",
        category="Control Flow",
        title="Switch",
        description="Follows the port of the first case whose condition holds, or `default`; the other branches are skipped.",
        kind="control",
        icon="switch",
        control=_switch,
        outputs=(Port("default"),),
        dynamic_outputs=OutputsFrom("cases", "port", then=("default",)),
        expression_fields=("cases",),
        expressions=_switch_expressions,
        config_schema={
            "type": "object",
            "required": ["cases"],
            "additionalProperties": False,
            "properties": {
                "cases": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port", "when"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {
                                "type": "string",
                                "pattern": "^[A-Za-z_][A-Za-z0-9_-]{0,63}$",
                                "not": {"const": "default"},
                            },
                            "when": {
                                "type": "string",
                                "minLength": 1,
                                "description": "An expression, e.g. input.amount > 1000",
                            },
                        },
                    },
                }
            },
        },
        docs="Each case names its own output port; `default` is taken when no case holds.",
    )
)


# ------------------------------------------------------------------ for_each
MAX_ITEMS = 10_000


async def _for_each(wctx: Any, config: dict, inputs: dict) -> ControlResult:
    items = wctx.evaluate(config["items"], "items")
    if not isinstance(items, list):
        raise NodeError(f"config.items must give a list, got {type(items).__name__}", retryable=False)
    limit = config.get("max_items", MAX_ITEMS)
    if len(items) > limit:
        raise NodeError(f"config.items gave {len(items)} items, over max_items {limit}", retryable=False)
    results = await wctx.run_body(items, int(config.get("concurrency", 1)))
    return ControlResult(results, ("done",))


FOR_EACH = register(
    NodeSpec(
        type="control.for_each",
        category="Control Flow",
        title="For each",
        description="Runs the nodes after `item` once per element of a list (at most `concurrency` at a time); "
        "the body ends at the `loop` port. `done` follows with the list of the body's results.",
        kind="control",
        icon="repeat",
        control=_for_each,
        inputs=(Port("in"), Port("loop", "loop back", loop_back=True)),
        outputs=(Port("item"), Port("done")),
        expression_fields=("items",),
        allows_loops=True,
        config_schema={
            "type": "object",
            "required": ["items"],
            "additionalProperties": False,
            "properties": {
                "items": {
                    "type": "string",
                    "minLength": 1,
                    "description": "An expression giving a list, e.g. input.orders",
                },
                "concurrency": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
                "max_items": {"type": "integer", "minimum": 1, "maximum": MAX_ITEMS, "default": MAX_ITEMS},
            },
        },
        docs="Inside the body, `item` and `index` name the current element; activity ids are `<node>#<index>`.",
    )
)
