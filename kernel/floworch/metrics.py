"""SLO and operations metrics in a notebook, as DataFrames::

    fo.metrics.success_rate("7d", bucket="1d")   # success / (success + failed) per day
    fo.metrics.burn_rates()                      # 1h/6h/24h/72h burn of the 99.95 % SLO
    fo.metrics.error_budget()                    # what is left of the 30-day budget
    fo.metrics.latency("24h")                    # p50/p95/p99 per node type
    fo.metrics.throughput("24h")                 # runs per bucket by status
    fo.metrics.queue(); fo.metrics.workers()     # task-queue backlog and pollers, now

A range is ``"1h"``, ``"24h"``, ``"7d"``... ending now, or explicit ``since``/``until``
(datetimes or ISO strings, taken as UTC when naive). Definitions are in
``floworch_server.metrics``; cancelled runs do not count against the success rate.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from floworch_server import metrics as _m

from ._loop import run_sync
from ._service import service

__all__ = ["DEFAULT_SLO", "burn_rates", "error_budget", "latency", "queue", "success_rate", "throughput", "workers"]

DEFAULT_SLO = _m.DEFAULT_SLO


def success_rate(range: str = "24h", *, since: Any = None, until: Any = None, bucket: Any = None) -> pd.DataFrame:
    """Columns bucket, success, failed, cancelled, total, success_rate (0..1) of runs that ended
    in the range; one row overall, or one per ``bucket`` (``"1h"``, ``"auto"``)."""
    start, end = _m.time_range(range, since, until)
    return _m.success_rate(service().store, start, end, bucket)


def burn_rates(until: Any = None, *, slo: float = DEFAULT_SLO) -> pd.DataFrame:
    """Per window (1h, 6h, 24h, 72h ending at ``until``, default now): success, failed, total,
    error_rate, burn_rate (1 = spending the budget exactly), threshold, alerting."""
    return _m.burn_rates(service().store, until, slo)


def error_budget(until: Any = None, *, slo: float = DEFAULT_SLO, window: str = "30d") -> dict:
    """The ``window`` error budget: counts, error_rate, budget_consumed, budget_remaining (1 untouched)."""
    return _m.error_budget(service().store, until, slo, window)


def latency(
    range: str = "24h",
    *,
    since: Any = None,
    until: Any = None,
    kind: str | None = "activity",
    node_type: str | None = None,
) -> pd.DataFrame:
    """Per node type: count, mean_ms, p50_ms, p95_ms, p99_ms, max_ms of node timings started in
    the range (activity attempts by default; ``kind=None`` for timers, approvals, control too)."""
    start, end = _m.time_range(range, since, until)
    return _m.latency(service().store, start, end, kind=kind, node_type=node_type)


def throughput(
    range: str = "24h", *, since: Any = None, until: Any = None, bucket: Any = "auto", by: str = "start"
) -> pd.DataFrame:
    """Runs per bucket with a column per status and the total; ``by="end"`` counts where runs ended."""
    start, end = _m.time_range(range, since, until)
    return _m.throughput(service().store, start, end, bucket, by)


def queue(task_queues: list[str] | None = None) -> pd.DataFrame:
    """Now, per task queue and type (workflow, activity): backlog, backlog_age_s, add_rate,
    dispatch_rate, pollers. Temporal reports only the present, so there is no range."""
    return run_sync(service().queue_depth(task_queues))


def workers(task_queues: list[str] | None = None) -> pd.DataFrame:
    """Now, one row per polling worker: task_queue, type, identity, last_access_time,
    seconds_since_poll, rate_per_second, healthy (polled within the last 70 s)."""
    return run_sync(service().workers(task_queues))
