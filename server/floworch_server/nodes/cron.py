"""`trigger.cron`: runs the published version on a schedule, as a Temporal Schedule.

Publishing a flow with this trigger creates (or updates) the schedule
``floworch-<flow id>-<node id>``; unpublishing or deleting the flow deletes it. Temporal owns
the timing: overlap, catch-up after downtime, pause and resume are its schedule policies."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..problems import Problem
from .spec import NodeSpec, Port, TriggerContext, register

OVERLAP = ("skip", "buffer_one", "buffer_all", "cancel_other", "terminate_other", "allow_all")
_FIELD = re.compile(r"^(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*$")
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def schedule_id(workflow_id: str, node_id: str) -> str:
    return f"floworch-{workflow_id}-{node_id}"


def cron_problem(expression: str) -> str | None:
    """Why a cron expression is not one Temporal accepts, or None. Five fields: minute hour day month weekday."""
    text = expression.strip()
    if text in _MACROS or text.startswith("@every "):
        return None
    fields = text.split()
    if len(fields) != 5:
        return f"{expression!r} has {len(fields)} fields; a cron expression has 5: minute hour day-of-month month day-of-week"
    names = ("minute", "hour", "day-of-month", "month", "day-of-week")
    for name, value in zip(names, fields, strict=True):
        if not _FIELD.match(value):
            return f"{expression!r}: the {name} field {value!r} is not valid cron syntax"
    return None


def _check(node: Any, doc: Any) -> list[Problem]:
    problems = []
    cron = node.config.get("cron")
    if isinstance(cron, str) and (why := cron_problem(cron)):
        problems.append(
            Problem(
                "invalid-cron",
                why,
                node=node.id,
                field="config.cron",
                hint="e.g. '0 9 * * MON-FRI' for 9:00 on weekdays",
            )
        )
    tz = node.config.get("timezone", "UTC")
    if isinstance(tz, str):
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                Problem(
                    "invalid-timezone",
                    f"unknown time zone {tz!r}",
                    node=node.id,
                    field="config.timezone",
                    hint="use an IANA name such as 'Europe/Paris' or 'UTC'",
                )
            )
    return problems


def _schedule(ctx: TriggerContext):
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleState,
    )

    from ..messages import WORKFLOW_TYPE

    config = ctx.config
    service = ctx.service
    request, meta, attrs = service.run_request(
        ctx.workflow_id,
        ctx.plan,
        ctx.plan_hash,
        str(ctx.version),
        "cron",
        ctx.node_id,
        config.get("input", {}),
        "schedule",
    )
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,
            request,
            # Temporal appends the scheduled time, so every run has its own id.
            id=f"run-cron-{ctx.workflow_id}-{ctx.node_id}",
            task_queue=service.settings.task_queue,
            memo={"floworch": meta},
            typed_search_attributes=attrs,
        ),
        spec=ScheduleSpec(cron_expressions=[config["cron"]], time_zone_name=config.get("timezone", "UTC")),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy[config.get("overlap", "skip").upper()],
            catchup_window=timedelta(seconds=config.get("catchup_window_seconds", 60)),
        ),
        state=ScheduleState(
            paused=bool(config.get("paused", False)), note=f"FlowOrchestrator flow {ctx.workflow_id} v{ctx.version}"
        ),
    )


async def _on_publish(ctx: TriggerContext) -> dict:
    from temporalio.client import ScheduleAlreadyRunningError, ScheduleUpdate

    sid = schedule_id(ctx.workflow_id, ctx.node_id)
    schedule = _schedule(ctx)
    try:
        await ctx.service.client.create_schedule(sid, schedule)
    except ScheduleAlreadyRunningError:
        await ctx.service.client.get_schedule_handle(sid).update(lambda _: ScheduleUpdate(schedule=schedule))
    return {
        "kind": "cron",
        "key": sid,
        "config": {"cron": ctx.config["cron"], "timezone": ctx.config.get("timezone", "UTC")},
    }


async def _on_unpublish(ctx: TriggerContext, registration: dict) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    try:
        await ctx.service.client.get_schedule_handle(registration["key"]).delete()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:  # already gone is what we wanted
            raise


CRON = register(
    NodeSpec(
        type="trigger.cron",
        category="Triggers",
        title="Schedule",
        description="Runs the published version on a cron schedule (a Temporal Schedule), with the given input.",
        kind="trigger",
        icon="calendar",
        inputs=(),
        outputs=(Port("out", "input"),),
        check=_check,
        on_publish=_on_publish,
        on_unpublish=_on_unpublish,
        config_schema={
            "type": "object",
            "required": ["cron"],
            "additionalProperties": False,
            "properties": {
                "cron": {
                    "type": "string",
                    "description": "minute hour day-of-month month day-of-week, e.g. '0 9 * * MON-FRI'",
                },
                "timezone": {
                    "type": "string",
                    "default": "UTC",
                    "description": "IANA time zone the cron expression is read in.",
                },
                "overlap": {
                    "enum": list(OVERLAP),
                    "default": "skip",
                    "description": "What to do when a run is still going at the next time.",
                },
                "catchup_window_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "default": 60,
                    "description": "How late a missed run may still start (after downtime).",
                },
                "paused": {"type": "boolean", "default": False},
                "input": {"type": "object", "description": "The run input of each scheduled run."},
            },
        },
        docs="Pause and resume with `fo.schedules()` / `FlowService.pause_schedule`. Scheduled runs have trigger `cron`.",
    )
)
