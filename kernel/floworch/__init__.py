"""FlowOrchestrator in a notebook::

    import floworch as fo
    flow = fo.Flow.open("notebooks/hello.flow")
    flow.validate()
    flow.publish(note="first")
    run = flow.run(input={"name": "Ada"})
    run.wait(); run.result(); run.node_status()
    fo.runs()
    fo.metrics.success_rate("7d"); fo.dashboard()
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from floworch_server.problems import FlowInvalid, Problem

from . import integrations, metrics
from ._loop import run_async, run_sync
from ._service import connect, service
from .flow import Flow, Problems, Version
from .run import Run, RunFailed

# After this line ``floworch.dashboard`` is the function; the module stays importable by name
# (``from floworch.dashboard import figure``).
from .dashboard import dashboard

__all__ = ["integrations", "metrics", "dashboard", "Flow", "FlowInvalid", "Problem", "Problems", "Run", "RunFailed", "Version", "connect", "nodes", "runs", "runs_async", "get_run", "publish", "schedules"]

RUN_COLUMNS = ["run_id", "workflow_id", "version", "status", "trigger", "start_time", "end_time", "error", "plan_hash"]


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
    return pd.DataFrame(rows, columns=["schedule_id", "workflow_id", "node_id", "version", "cron", "timezone", "paused", "next_runs", "recent_runs"])


def get_run(run_id: str) -> Run:
    return Run(run_id).refresh()


def nodes() -> pd.DataFrame:
    """The node catalogue: every node type with its category, ports and config schema."""
    from floworch_server import nodes as catalogue

    rows = catalogue.catalogue()
    frame = pd.DataFrame(rows, columns=["type", "category", "title", "kind", "description", "inputs", "outputs", "config_schema", "defaults"])
    frame["inputs"] = frame["inputs"].map(lambda ports: [p["name"] for p in ports])
    frame["outputs"] = frame["outputs"].map(lambda ports: [p["name"] for p in ports])
    return frame


def _runs_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for col in ("start_time", "end_time"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame
