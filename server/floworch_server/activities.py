"""Activity side of the interpreter: one Temporal activity per activity node type.

The activity type name is the node type (``action.http``), its activity id the node id, so
Temporal's own tools show the flow's vocabulary. Each call checks the resolved config against the
node's schema, gives the executor a `NodeContext` (attempt, idempotency key, logger, heartbeat),
heartbeats in the background when the node has a heartbeat timeout, and turns a `NodeError`
into a Temporal failure that is retried only when the error says it may be.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import jsonschema
from temporalio import activity
from temporalio.exceptions import ApplicationError

from . import integrations, nodes, tracing
from .flowdoc import format_path
from .messages import NodeCall
from .nodes.spec import NodeError, NodeSpec

log = logging.getLogger("floworch.node")

# Where node log lines go besides Python logging: set by the worker to the store's writer.
log_sink: Callable[..., None] | None = None


class NodeContext:
    """What an executor may use while it runs."""

    def __init__(self, call: NodeCall):
        self.call = call
        # The activity's task (and threads it starts with asyncio.to_thread) act in the run's tenant.
        integrations.RUN_TENANT.set(call.tenant)
        info = activity.info()
        self.run_id = call.run_id
        self.node_id = call.node_id
        self.node_type = call.node_type
        self.attempt = info.attempt
        self.idempotency_key = call.idempotency_key
        # Only the newest heartbeat's details reach a retried attempt, so keep-alive beats
        # resend what the node last recorded (e.g. a provider's job id) instead of erasing it.
        self.heartbeat_details: tuple = ()
        # Provider calls this attempt made (ratelimit.provider_turn): a rate limit reached before
        # the first one ends the attempt, after it is waited out (the calls made are not redone).
        self.provider_calls = 0

    def heartbeat(self, *details: Any) -> None:
        if details:
            self.heartbeat_details = details
        activity.heartbeat(*self.heartbeat_details)

    def log(self, level: str, message: str, **extra: Any) -> None:
        # The activity runs inside its run's trace (tracing.py), so a log line leads to its spans.
        trace_id = tracing.current_trace_id()
        log.log(
            logging.getLevelName(level.upper()), message,
            extra={"run_id": self.run_id, "node": self.node_id, "attempt": self.attempt, "trace_id": trace_id},
        )  # fmt: skip
        if log_sink is not None:
            try:
                log_sink(
                    self.run_id,
                    self.node_id,
                    level.lower(),
                    message,
                    attempt=self.attempt,
                    trace_id=trace_id,
                    extra=extra or None,
                )
            except Exception:  # a log line must never fail the node
                log.exception("could not store a log line of %s/%s", self.run_id, self.node_id)


@cache
def _config_validator(node_type: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(nodes.require(node_type).config_schema)


def _check_config(call: NodeCall) -> None:
    errors = sorted(
        _config_validator(call.node_type).iter_errors(call.config), key=lambda e: list(map(str, e.absolute_path))
    )
    if errors:
        err = errors[0]
        path = format_path(["config", *err.absolute_path])
        raise ApplicationError(
            f"node '{call.node_id}' ({call.node_type}) {path}: {err.message} (after resolving references)",
            type="InvalidConfig",
            non_retryable=True,
        )


def make_activity(spec: NodeSpec) -> Callable:
    execute = spec.execute
    assert execute is not None, "an activity node's spec has execute()"

    async def run_node(call: NodeCall) -> Any:
        _check_config(call)
        ctx = NodeContext(call)
        started = datetime.now(UTC)
        pulse = None
        timeout = activity.info().heartbeat_timeout
        if timeout:
            pulse = asyncio.create_task(_heartbeat_every(ctx, timeout.total_seconds() / 3))
        try:
            return await execute(ctx, call.config, call.inputs)
        except NodeError as exc:
            # Temporal's history keeps only the last attempt; the store keeps each failed one.
            ctx.log("error", str(exc), attempt_started=started.isoformat(), error_type=exc.kind)
            raise ApplicationError(
                str(exc),
                *(() if exc.details is None else (exc.details,)),
                type=exc.kind,
                non_retryable=not exc.retryable,
                next_retry_delay=timedelta(seconds=exc.retry_after) if exc.retry_after else None,
            ) from exc
        except asyncio.CancelledError:
            ctx.log("warning", "cancelled", attempt_started=started.isoformat(), error_type="Cancelled")
            raise
        except Exception as exc:
            ctx.log(
                "error",
                f"{type(exc).__name__}: {exc}",
                attempt_started=started.isoformat(),
                error_type=type(exc).__name__,
                stack=traceback.format_exc(),
            )
            raise
        finally:
            if pulse:
                pulse.cancel()

    run_node.__name__ = run_node.__qualname__ = "node_" + spec.type.replace(".", "_")
    return activity.defn(name=spec.type)(run_node)


async def _heartbeat_every(ctx: NodeContext, interval: float) -> None:
    while True:
        ctx.heartbeat()
        await asyncio.sleep(interval)


_ACTIVITIES: dict[str, Callable] = {}


def activity_functions() -> list[Callable]:
    """One activity per registered activity node type (created once per process)."""
    for spec in nodes.all_specs():
        if spec.kind == "activity" and spec.type not in _ACTIVITIES:
            _ACTIVITIES[spec.type] = make_activity(spec)
    return list(_ACTIVITIES.values())
