"""FlowOrchestrator in a notebook::

import floworch as fo
flow = fo.Flow.open("notebooks/hello.flow")
flow.validate()
flow.publish(note="first")
run = flow.run(input={"name": "Ada"})
run.wait(); run.result(); run.node_status()
fo.runs()
fo.metrics.success_rate("7d"); fo.dashboard()
fo.alerts(); fo.purge()              # SLA alerts; what the retention policy would delete
fo.dead_letters(); fo.retry(run_ids, mode="resume")   # failed runs; retry them
run.replay(); run.node("extract").rerun_here(config={...}); fo.diff(run_a, run_b)   # debugging
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from floworch_server.problems import FlowInvalid, Problem

from . import integrations, metrics
from ._loop import run_async, run_sync
from ._service import connect, service
from .canvas import Canvas

# After this line ``floworch.dashboard`` is the function; the module stays importable by name
# (``from floworch.dashboard import figure``).
from .dashboard import dashboard
from .deadletters import dead_letters, retry
from .diff import RunDiff, diff
from .flow import Flow, Problems, Version
from .run import Run, RunFailed
from .session import login

__all__ = [
    "Canvas",
    "Flow",
    "FlowInvalid",
    "Problem",
    "Problems",
    "Run",
    "RunDiff",
    "RunFailed",
    "Version",
    "alerts",
    "audit",
    "connect",
    "dashboard",
    "dead_letters",
    "diff",
    "get_run",
    "integrations",
    "login",
    "metrics",
    "nodes",
    "publish",
    "purge",
    "retry",
    "runs",
    "runs_async",
    "schedules",
]

RUN_COLUMNS = ["run_id", "workflow_id", "version", "status", "trigger", "start_time", "end_time", "error", "plan_hash"]
AUDIT_COLUMNS = ["timestamp", "actor", "action", "target", "detail", "tenant", "id"]
ALERT_COLUMNS = [
    "id",
    "open",
    "rule",
    "kind",
    "value",
    "threshold",
    "message",
    "opened_at",
    "cleared_at",
    "action_run_id",
]


def runs(workflow: str | None = None, status: str | None = None, limit: int = 100) -> pd.DataFrame:
    """Runs, newest first, as Temporal knows them (started from anywhere)."""
    return _runs_frame(run_sync(service().list_runs(workflow_id=workflow, status=status, limit=limit)))


async def runs_async(workflow: str | None = None, status: str | None = None, limit: int = 100) -> pd.DataFrame:
    return _runs_frame(await run_async(service().list_runs(workflow_id=workflow, status=status, limit=limit)))


def publish(topic: str, payload: Any = None, *, event_id: str | None = None) -> list[dict]:
    """Publish an event: every published flow with a trigger.event on ``topic`` starts a run.
    The same ``event_id`` never starts a second run of a flow."""
    from ._service import user

    return run_sync(service().publish_event(topic, payload, event_id=event_id, by=user()))


def schedules() -> pd.DataFrame:
    """The schedules of published flows with a trigger.cron node."""
    rows = run_sync(service().list_schedules())
    return pd.DataFrame(
        rows,
        columns=[
            "schedule_id",
            "workflow_id",
            "node_id",
            "version",
            "cron",
            "timezone",
            "paused",
            "next_runs",
            "recent_runs",
        ],
    )


def alerts(open_only: bool = False, limit: int = 100) -> pd.DataFrame:
    """SLA alerts, newest first; ``open`` marks the ones not cleared yet."""
    frame = pd.DataFrame(service().list_alerts(open_only=open_only, limit=limit), columns=ALERT_COLUMNS)
    for col in ("opened_at", "cleared_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def audit(
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: Any = None,
    until: Any = None,
    limit: int = 100,
) -> pd.DataFrame:
    """The tenant's audit log, newest first: who did what, when, to what. ``action`` is one
    (``workflow.publish``) or a family ending in a dot (``workflow.``, ``member.``, ``run.``)."""
    rows = service().store.list_audit(actor=actor, action=action, target=target, since=since, until=until, limit=limit)
    frame = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def purge(dry_run: bool = True) -> dict:
    """Apply the retention policy (settings run/log/blob_retention_days): counts per kind of
    what goes. By default nothing is deleted, only counted; ``dry_run=False`` deletes."""
    return run_sync(service().purge(dry_run=dry_run))


def get_run(run_id: str) -> Run:
    return Run(run_id).refresh()


def nodes() -> pd.DataFrame:
    """The node catalogue: every node type with its category, ports and config schema."""
    from floworch_server import nodes as catalogue

    rows = catalogue.catalogue()
    frame = pd.DataFrame(
        rows,
        columns=["type", "category", "title", "kind", "description", "inputs", "outputs", "config_schema", "defaults"],
    )
    frame["inputs"] = frame["inputs"].map(lambda ports: [p["name"] for p in ports])
    frame["outputs"] = frame["outputs"].map(lambda ports: [p["name"] for p in ports])
    return frame


def _runs_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for col in ("start_time", "end_time"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame
