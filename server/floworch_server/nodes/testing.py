"""`test.fail`: fails a given number of attempts, then succeeds. For tests and demos of retries."""

from __future__ import annotations

import asyncio
from typing import Any

from .spec import NodeError, NodeSpec, RetryDefaults, register


async def _execute(ctx: Any, config: dict, inputs: dict) -> Any:
    if config.get("sleep_seconds"):
        # Sleep in small steps so heartbeats go out and cancellation is noticed.
        remaining = float(config["sleep_seconds"])
        while remaining > 0:
            step = min(remaining, 0.2)
            await asyncio.sleep(step)
            remaining -= step
            ctx.heartbeat()
    if ctx.attempt <= config.get("fail_times", 0):
        raise NodeError(
            f"{config.get('message', 'failing on purpose')} (attempt {ctx.attempt} of {config.get('fail_times', 0)} planned failures)",
            retryable=not config.get("permanent", False),
            kind="TestFailure",
        )
    return {"attempt": ctx.attempt, "output": config.get("output")}


TEST_FAIL = register(
    NodeSpec(
        type="test.fail",
        category="Actions",
        title="Fail N times",
        description="Raises on its first `fail_times` attempts, then returns. For testing retries and failures.",
        kind="activity",
        icon="bug",
        execute=_execute,
        retry=RetryDefaults(max_attempts=5, initial_interval_seconds=0.5, backoff=1.0),
        timeout_seconds=30,
        config_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "fail_times": {"type": "integer", "minimum": 0, "default": 0},
                "message": {"type": "string"},
                "permanent": {"type": "boolean", "description": "Fail without retries."},
                "sleep_seconds": {"type": "number", "minimum": 0, "description": "Work this long before answering."},
                "output": {"description": "Returned once it succeeds."},
            },
        },
    )
)
