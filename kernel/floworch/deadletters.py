"""Dead letters in a notebook: the failed runs of each flow, and their retries::

fo.dead_letters(node_type="action.http")          # what failed, where, with what input
runs = fo.retry(fo.dead_letters(), mode="resume")  # from the failed node, reusing the rest
fo.get_run(run_id).retry(version="latest")        # one run, from the start, on the latest version
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from ._loop import run_sync
from ._service import service, user
from .run import Run

COLUMNS = [
    "run_id",
    "workflow",
    "version",
    "node",
    "node_type",
    "error_kind",
    "error",
    "input",
    "ended",
    "workflow_id",
    "retried_as",
]


def dead_letters(
    workflow: Any = None,
    node_type: str | None = None,
    error_kind: str | None = None,
    limit: int = 100,
    include_retried: bool = False,
) -> pd.DataFrame:
    """Failed runs not retried yet, newest first: one row per run with its flow, version, the
    node it failed at, that node's type, the error's kind and message, its input and when it ended.
    ``workflow`` is a flow id (or a ``Flow``); ``include_retried`` also lists retried runs, with
    the run that retried them (``retried_as``)."""
    workflow_id = getattr(workflow, "id", workflow)
    rows = run_sync(
        service().dead_letters(
            workflow_id, node_type=node_type, error_kind=error_kind, limit=limit, include_retried=include_retried
        )
    )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["ended"] = pd.to_datetime(frame["ended"], utc=True)
    return frame


def retry(run_ids: Any, mode: str = "start", version: str = "same") -> list[Run]:
    """Retry failed runs; returns the new runs, in the same order.

    ``run_ids``: a run id, a ``Run``, a list of them, or a frame of ``dead_letters()``.
    ``mode``: "start" (from the start, same input) or "resume" (from the failed node, reusing the
    recorded outputs of the nodes before it). ``version``: "same" (the one the run ran) or
    "latest" (the latest published). Retrying a run again the same way returns the same new run."""
    results = run_sync(service().retry_runs(_ids(run_ids), mode=mode, version=version, by=user()))
    return [
        Run(
            r["retry_run_id"],
            {"run_id": r["retry_run_id"], "status": r["status"], "retry_of": r["run_id"], "reused": r["reused"]},
        )
        for r in results
    ]


def _ids(value: Any) -> list[str]:
    if isinstance(value, pd.DataFrame):
        return [str(r) for r in value["run_id"]]
    if isinstance(value, (str, Run)):
        value = [value]
    if not isinstance(value, Iterable):
        raise TypeError(f"run_ids must be run ids, Runs or a frame of fo.dead_letters(), got {type(value).__name__}")
    return [v.id if isinstance(v, Run) else v for v in value]
