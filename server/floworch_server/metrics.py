"""SLO and operations metrics: pure functions over the store, plus two live views of Temporal.

Store metrics aggregate in SQL (the rows never leave the database, except activity durations on
SQLite, which has no percentile function), over the covering indexes of migration 0003:

- ``success_rate``: success / (success + failed) of the runs that *ended* in the range, per
  bucket or overall. Cancelled runs (including terminated ones) are counted but left out of the
  rate: a cancel is somebody's decision, not the service failing. Timed-out runs count as failed.
- ``slo_report`` / ``burn_rates`` / ``error_budget``: the same ratio against an SLO target
  (99.95 % by default). Burn rate = error rate / allowed error rate over 1h, 6h, 24h and 72h
  windows ending at ``until``, each with the multi-window alerting threshold of the Google SRE
  workbook (14.4, 6, 3, 1: the rate that spends 2 %, 5 %, 10 % and 10 % of a 30-day budget in
  that window). The budget is the 30-day window's: 1 - error rate / allowed error rate.
- ``latency``: count, mean, p50, p95, p99 and max of node durations per node type, from the
  ``node_timings`` table (activity attempts by default). Percentiles interpolate linearly
  (``percentile_cont`` on Postgres; on SQLite, which has no percentile aggregate, numpy's
  default method over the durations read off a covering index: the same definition).
- ``throughput``: runs per bucket, one column per status, by start time (or end time).
- ``dashboard_data``: all of the above for one range, as the notebook dashboard and the REST
  dashboard route show it; ``to_json`` makes it plain JSON for the route.

Live (what Temporal reports now, so they take no time range): ``describe_task_queues`` gives
backlog counts per task queue and type (``DescribeTaskQueue`` with ``report_stats``, the default
API mode; the ENHANCED mode is deprecated) and the pollers with identity and last access time.

Time ranges are ``since`` (inclusive) and ``until`` (exclusive), aware datetimes or ISO
strings; ``time_range("24h")`` makes one ending now. Buckets are aligned to the UTC epoch, so
the same hour is the same bucket on every refresh. Every function returns a DataFrame, or a
dict for scalars; bucket and time columns are UTC timestamps.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Integer, and_, case, column, func, literal, select, union_all, values

from .store.models import FINAL_STATUSES, RUN_STATUSES, UTCDateTime, as_utc
from .store.repo import TIMING_KINDS, node_timings, runs

DEFAULT_SLO = 99.95  # percent of runs that end in success (cancelled runs aside)
BUDGET_WINDOW = timedelta(days=30)
# Burn-rate windows and the rate at which each pages (SRE workbook, multi-window alerting).
BURN_WINDOWS: dict[str, float] = {"1h": 14.4, "6h": 6.0, "24h": 3.0, "72h": 1.0}
PERCENTILES = (0.5, 0.95, 0.99)
# Candidate bucket sizes; ``auto_bucket`` picks the smallest giving at most MAX_BUCKETS.
BUCKET_STEPS = ("1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1d", "7d")
MAX_BUCKETS = 60
MAX_BUCKET_ROWS = 10_000  # per query: 3 bound values each, under SQLite's 32 766
# A poller re-polls at least every minute (long polls time out at 60 s); older means the worker
# is saturated or gone. Temporal drops a poller from the list 5 minutes after its last poll.
POLLER_STALE_AFTER_S = 70.0

SUCCESS_COLUMNS = ["bucket", "success", "failed", "cancelled", "total", "success_rate"]
THROUGHPUT_COLUMNS = ["bucket", *RUN_STATUSES, "total"]
BURN_COLUMNS = [
    "window",
    "since",
    "until",
    "success",
    "failed",
    "total",
    "error_rate",
    "burn_rate",
    "threshold",
    "alerting",
]
LATENCY_COLUMNS = ["node_type", "count", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
QUEUE_COLUMNS = ["task_queue", "type", "backlog", "backlog_age_s", "add_rate", "dispatch_rate", "pollers", "observed"]
WORKER_COLUMNS = [
    "task_queue",
    "type",
    "identity",
    "last_access_time",
    "seconds_since_poll",
    "rate_per_second",
    "healthy",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# ---------------------------------------------------------------------- time ranges
def duration(value: str | timedelta | float | int) -> timedelta:
    """``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"``, a timedelta or a number of seconds."""
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        result = timedelta(seconds=value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        result = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    else:
        raise ValueError(f"expected a duration such as '15m', '24h' or '7d' (or a timedelta), got {value!r}")
    if result <= timedelta(0):
        raise ValueError(f"a duration must be positive, got {value!r}")
    return result


def time_range(
    range: str | timedelta | None = "24h", since: Any = None, until: Any = None
) -> tuple[datetime, datetime]:
    """``(since, until)``: explicit bounds win; otherwise the ``range`` ending at ``until`` (now)."""
    end = as_utc(until) if until is not None else datetime.now(UTC)
    start = as_utc(since) if since is not None else end - duration(range or "24h")
    if start >= end:
        raise ValueError(f"empty time range: since {start.isoformat()} is not before until {end.isoformat()}")
    return start, end


def auto_bucket(since: datetime, until: datetime) -> timedelta:
    """A bucket size that draws the range in at most ``MAX_BUCKETS`` bars or points."""
    span = (until - since).total_seconds()
    for step in BUCKET_STEPS:
        if span / duration(step).total_seconds() <= MAX_BUCKETS:
            return duration(step)
    return duration(BUCKET_STEPS[-1])


def bucket_size(bucket: Any, since: Any, until: Any) -> timedelta:
    """The bucket a per-bucket query over ``[since, until)`` uses (``"auto"``: ``auto_bucket``'s);
    ValueError when it is not a whole number of seconds or makes too many buckets."""
    since, until = as_utc(since), as_utc(until)
    seconds = _bucket_seconds(bucket, since, until)
    _bucket_starts(since, until, seconds)
    return timedelta(seconds=seconds)


def _bucket_seconds(bucket: Any, since: datetime, until: datetime) -> int:
    seconds = (auto_bucket(since, until) if bucket in (None, "auto") else duration(bucket)).total_seconds()
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"a bucket must be a whole number of seconds, got {bucket!r}")
    return int(seconds)


def _bucket_table(since: datetime, until: datetime, seconds: int):
    """``(buckets, starts)``: a VALUES table of (n, lo, hi) per bucket, clipped to the range,
    and the bucket starts. Joined to runs on ``lo <= time < hi``, each bucket is one range seek
    of a (time, status) index: no per-row date arithmetic, on either backend."""
    starts = _bucket_starts(since, until, seconds)
    step = timedelta(seconds=seconds)
    rows = [
        (n, max(start.to_pydatetime(), since), min(start.to_pydatetime() + step, until))
        for n, start in enumerate(starts)
    ]
    table = values(column("n", Integer), column("lo", UTCDateTime), column("hi", UTCDateTime), name="buckets").data(
        rows
    )
    return table.cte("buckets"), starts


def _bucket_starts(since: datetime, until: datetime, seconds: int) -> pd.DatetimeIndex:
    starts = _all_buckets(since, until, seconds)
    if len(starts) > MAX_BUCKET_ROWS:
        raise ValueError(
            f"{len(starts)} buckets of {_label(timedelta(seconds=seconds))} in {until - since} is too many "
            f"(at most {MAX_BUCKET_ROWS}): choose a larger bucket"
        )
    return starts


def _all_buckets(since: datetime, until: datetime, seconds: int) -> pd.DatetimeIndex:
    first = int(since.timestamp()) // seconds * seconds
    last = (math.ceil(until.timestamp()) - 1) // seconds * seconds
    return pd.DatetimeIndex(pd.to_datetime(range(first, last + 1, seconds), unit="s", utc=True), name="bucket")


def _frame(rows: Iterable, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=columns)


# ---------------------------------------------------------------------- success rate
def success_rate(store, since: Any, until: Any, bucket: Any = None) -> pd.DataFrame:
    """Runs that ended in ``[since, until)``: success, failed, cancelled, total (success + failed)
    and success_rate = success / total (NaN when nothing succeeded or failed).

    ``bucket=None``: one row for the whole range (its ``bucket`` is ``since``); a duration
    (``"1h"``) or ``"auto"``: one row per bucket, empty buckets included."""
    since, until = as_utc(since), as_utc(until)
    status = runs.c.status
    counts = [func.sum(case((status == s, 1), else_=0)).label(s) for s in FINAL_STATUSES]
    where = and_(store.mine(runs), runs.c.end_time >= since, runs.c.end_time < until, status.in_(FINAL_STATUSES))
    if bucket is None:
        with store.reader() as conn:
            row = conn.execute(select(*counts).where(where)).one()
        data = pd.DataFrame([{"bucket": pd.Timestamp(since), **{s: int(row._mapping[s] or 0) for s in FINAL_STATUSES}}])
    else:
        buckets, starts = _bucket_table(since, until, _bucket_seconds(bucket, since, until))
        inside = and_(runs.c.end_time >= buckets.c.lo, runs.c.end_time < buckets.c.hi)
        query = (
            select(buckets.c.n, *counts)
            .select_from(buckets.join(runs, inside))
            .where(store.mine(runs), status.in_(FINAL_STATUSES))
            .group_by(buckets.c.n)
        )
        with store.reader() as conn:
            rows = [tuple(r) for r in conn.execute(query)]
        found = pd.DataFrame(rows, columns=["n", *FINAL_STATUSES]).set_index("n")
        data = found.reindex(range(len(starts)), fill_value=0).reset_index(drop=True)
        data.insert(0, "bucket", starts)
    return _with_rate(data)


def _with_rate(data: pd.DataFrame) -> pd.DataFrame:
    """Adds total and success_rate to counts per final status: the one definition of the rate."""
    for s in FINAL_STATUSES:
        data[s] = data[s].astype("int64")
    data["total"] = data["success"] + data["failed"]
    data["success_rate"] = data["success"] / data["total"].where(data["total"] > 0)
    return data[SUCCESS_COLUMNS]


# ---------------------------------------------------------------------- SLO: burn rates and budget
@dataclass(frozen=True)
class SLO:
    """A success-rate objective: ``target`` percent over a rolling ``window``."""

    target: float = DEFAULT_SLO
    window: timedelta = BUDGET_WINDOW

    def __post_init__(self) -> None:
        if not 0 < self.target < 100:
            raise ValueError(f"an SLO target is a percentage between 0 and 100 (exclusive), got {self.target!r}")

    @property
    def allowed_error_rate(self) -> float:
        # Rounded: 1 - 99.95 / 100 is 0.000499999999999945 in floating point, not 0.0005.
        return round((100 - self.target) / 100, 12)


def slo_report(
    store,
    until: Any = None,
    slo: float = DEFAULT_SLO,
    windows: dict[str, float] | None = None,
    budget_window: Any = BUDGET_WINDOW,
) -> tuple[pd.DataFrame, dict]:
    """Burn rates per window and the error budget, ending at ``until`` (now), in one query."""
    objective = SLO(float(slo), duration(budget_window))
    windows = BURN_WINDOWS if windows is None else windows
    end = as_utc(until) if until is not None else datetime.now(UTC)
    spans = {name: duration(name) for name in windows}
    # The windows are nested (each ends at ``until``): count the disjoint slices between their
    # starts, each a range scan of the (end_time, status) index, and add them up. Every run is
    # read once, with no per-row CASE over all windows.
    starts = sorted({end - span for span in [*spans.values(), objective.window]}, reverse=True)
    bounds = [end, *starts]
    status, ended = runs.c.status, runs.c.end_time
    slices = [
        select(
            literal(n, Integer).label("slice"),
            func.sum(case((status == "success", 1), else_=0)).label("success"),
            func.sum(case((status == "failed", 1), else_=0)).label("failed"),
        ).where(store.mine(runs), ended >= lo, ended < hi, status.in_(("success", "failed")))
        for n, (hi, lo) in enumerate(itertools.pairwise(bounds))
    ]
    with store.reader() as conn:
        found = {row.slice: (int(row.success or 0), int(row.failed or 0)) for row in conn.execute(union_all(*slices))}
    allowed = objective.allowed_error_rate

    def counts(span: timedelta) -> tuple[int, int, int, float]:
        inside = [found.get(n, (0, 0)) for n, lo in enumerate(starts) if lo >= end - span]
        ok, bad = sum(c[0] for c in inside), sum(c[1] for c in inside)
        total = ok + bad
        return ok, bad, total, (bad / total if total else math.nan)

    burn = []
    for name, span in spans.items():
        ok, bad, total, error_rate = counts(span)
        rate = error_rate / allowed if total else math.nan
        threshold = windows[name]
        burn.append(
            [
                name,
                pd.Timestamp(end - span),
                pd.Timestamp(end),
                ok,
                bad,
                total,
                error_rate,
                rate,
                threshold,
                bool(total and rate >= threshold),
            ]
        )
    ok, bad, total, error_rate = counts(objective.window)
    consumed = (error_rate / allowed) if total else 0.0
    budget = {
        "slo": objective.target,
        "window": _label(objective.window),
        "since": pd.Timestamp(end - objective.window),
        "until": pd.Timestamp(end),
        "success": ok,
        "failed": bad,
        "total": total,
        "error_rate": error_rate,
        "allowed_error_rate": allowed,
        "allowed_failures": allowed * total,
        "budget_consumed": consumed,
        "budget_remaining": 1 - consumed,
    }
    return _frame(burn, BURN_COLUMNS), budget


def burn_rates(
    store, until: Any = None, slo: float = DEFAULT_SLO, windows: dict[str, float] | None = None
) -> pd.DataFrame:
    """One row per window (1h, 6h, 24h, 72h ending at ``until``): counts, error rate, burn rate,
    its alerting threshold and whether it is reached. Burn rate 1 spends the budget exactly."""
    return slo_report(store, until, slo, windows)[0]


def error_budget(store, until: Any = None, slo: float = DEFAULT_SLO, window: Any = BUDGET_WINDOW) -> dict:
    """The error budget of the ``window`` (30 days) ending at ``until``: budget_remaining is 1
    when nothing failed, 0 when exactly the allowed share failed, negative past that."""
    return slo_report(store, until, slo, {}, window)[1]


def _label(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# ---------------------------------------------------------------------- latency
def latency(store, since: Any, until: Any, kind: str | None = "activity", node_type: str | None = None) -> pd.DataFrame:
    """Per node type, of the node timings that started in ``[since, until)``: count, mean_ms,
    p50_ms, p95_ms, p99_ms and max_ms. By default activity attempts only (each retry attempt
    is its own sample: it is what the worker spent); ``kind=None`` takes every kind."""
    since, until = as_utc(since), as_utc(until)
    if kind is not None and kind not in TIMING_KINDS:
        raise ValueError(f"kind must be one of {', '.join(TIMING_KINDS)} or None; got {kind!r}")
    t = node_timings.c
    where = [store.mine(node_timings), t.started >= since, t.started < until, t.duration_ms.isnot(None)]
    if kind is not None:
        where.append(t.kind == kind)
    if node_type is not None:
        where.append(t.node_type == node_type)
    if store.dialect == "postgresql":
        query = (
            select(
                t.node_type,
                func.count(),
                func.avg(t.duration_ms),
                *(func.percentile_cont(p).within_group(t.duration_ms) for p in PERCENTILES),
                func.max(t.duration_ms),
            )
            .where(*where)
            .group_by(t.node_type)
            .order_by(t.node_type)
        )
        with store.reader() as conn:
            rows = [tuple(r) for r in conn.execute(query)]
        data = _frame(rows, LATENCY_COLUMNS)
    else:
        data = _sqlite_latency(store, since, until, kind, node_type)
    data["count"] = data["count"].astype("int64")
    for name in LATENCY_COLUMNS[2:]:
        data[name] = data[name].astype("float64")
    return data


def _sqlite_latency(store, since: datetime, until: datetime, kind: str | None, node_type: str | None) -> pd.DataFrame:
    """SQLite has no percentile aggregate: read each node type's durations and let numpy do it.

    One query per node type, on the (tenant, node_type, started, kind, duration_ms) index, which holds
    everything asked for, and through the DBAPI cursor: SQLAlchemy rows cost several times
    more than the query at a few hundred thousand rows. numpy's default percentile method is
    linear interpolation, the definition of Postgres' percentile_cont."""
    # The format SQLAlchemy stores SQLite datetimes in (UTC, see models.UTCDateTime).
    bounds = tuple(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") for value in (since, until))
    sql = "SELECT duration_ms FROM node_timings WHERE tenant = ? AND node_type = ? AND started >= ? AND started < ? AND duration_ms IS NOT NULL"
    if kind is not None:
        sql += " AND kind = ?"
    rows = []
    with store.reader() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            distinct = "SELECT DISTINCT node_type FROM node_timings WHERE tenant = ?"
            types = (
                [node_type]
                if node_type is not None
                else [r[0] for r in cursor.execute(distinct, (store.tenant,)).fetchall()]
            )
            for name in sorted(types):
                found = cursor.execute(
                    sql, (store.tenant, name, *bounds, *((kind,) if kind is not None else ()))
                ).fetchall()
                if not found:
                    continue
                values = np.array(found, dtype="float64").ravel()
                rows.append(
                    [
                        name,
                        len(values),
                        values.mean(),
                        *np.percentile(values, [p * 100 for p in PERCENTILES]),
                        values.max(),
                    ]
                )
        finally:
            cursor.close()
    return _frame(rows, LATENCY_COLUMNS)


# ---------------------------------------------------------------------- throughput
def throughput(store, since: Any, until: Any, bucket: Any = "auto", by: str = "start") -> pd.DataFrame:
    """Runs per bucket, one column per status (as the runs stand now) and their total.
    ``by="start"`` counts runs where they started (in-flight runs show as queued/running);
    ``by="end"`` counts finished runs where they ended."""
    since, until = as_utc(since), as_utc(until)
    if by not in ("start", "end"):
        raise ValueError(f"by must be 'start' or 'end', got {by!r}")
    when = runs.c.start_time if by == "start" else runs.c.end_time
    buckets, starts = _bucket_table(since, until, _bucket_seconds(bucket, since, until))
    inside = and_(when >= buckets.c.lo, when < buckets.c.hi)
    query = (
        select(buckets.c.n, runs.c.status, func.count())
        .select_from(buckets.join(runs, inside))
        .where(store.mine(runs))
        .group_by(buckets.c.n, runs.c.status)
    )
    with store.reader() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
    long = pd.DataFrame(rows, columns=["n", "status", "runs"])
    wide = long.pivot_table(index="n", columns="status", values="runs", aggfunc="sum", fill_value=0)
    data = wide.reindex(index=range(len(starts)), columns=list(RUN_STATUSES), fill_value=0).fillna(0).astype("int64")
    data.columns.name = None
    data["total"] = data.sum(axis=1)
    data = data.reset_index(drop=True)
    data.insert(0, "bucket", starts)
    return data[THROUGHPUT_COLUMNS]


# ---------------------------------------------------------------------- everything the dashboard shows
def dashboard_data(
    store, since: Any, until: Any, bucket: Any = "auto", slo: float = DEFAULT_SLO, live: tuple | None = None
) -> dict[str, Any]:
    """Everything the dashboard shows for one range: success_rate and throughput (per
    ``bucket``, the size used is in ``bucket``), ``success`` (the rate of the whole range,
    a dict), latency (per node type), burn_rates and budget (windows ending at ``until``),
    and ``queues`` and ``workers`` from ``live``, a ``(queues, workers)`` pair of
    ``describe_task_queues`` (None: Temporal did not answer)."""
    since, until = as_utc(since), as_utc(until)
    size = bucket_size(bucket, since, until)
    burn, budget = slo_report(store, until, slo)
    rate = success_rate(store, since, until, size)
    # The buckets partition the range: their sum is the range's count, with no second query.
    totals = rate[list(FINAL_STATUSES)].sum().to_frame().T
    totals.insert(0, "bucket", pd.Timestamp(since))
    whole = _with_rate(totals)
    queues, workers = live if live is not None else (None, None)
    return {
        "since": pd.Timestamp(since),
        "until": pd.Timestamp(until),
        "bucket": _label(size),
        "slo": slo,
        "success": {name: whole[name].iloc[0].item() for name in SUCCESS_COLUMNS[1:]},
        "success_rate": rate,
        "throughput": throughput(store, since, until, size),
        "latency": latency(store, since, until),
        "burn_rates": burn,
        "budget": budget,
        "queues": queues,
        "workers": workers,
    }


def to_json(value: Any) -> Any:
    """``value`` (dashboard data: DataFrames, dicts, Timestamps, numpy scalars) as plain JSON
    values: frames become lists of row objects, times ISO 8601 strings, NaN and NaT null."""
    if isinstance(value, pd.DataFrame):
        return [to_json(row) for row in value.to_dict("records")]
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


# ---------------------------------------------------------------------- node timings from a trace
def timings_from_segments(segments: Iterable[dict]) -> list[dict]:
    """The rows ``Store.add_node_timings`` takes, from ``trace.segments`` of a finished run.

    The trigger (an instant) and skipped nodes (never ran) have no duration worth a row. A
    segment still open when the run closed (a wait the run was cancelled in) is ``cancelled``."""
    rows = []
    for seg in segments:
        if seg["kind"] not in TIMING_KINDS:
            continue
        started = seg.get("started") or seg.get("scheduled")
        if started is None:
            continue
        rows.append(
            {
                "node": seg["node"],
                "node_type": seg.get("type") or "unknown",
                "kind": seg["kind"],
                "iteration": seg.get("iteration"),
                "attempt": seg.get("attempt") or 1,
                "started": started,
                "ended": seg.get("ended"),
                "status": "cancelled" if seg.get("ended_open") else seg["status"],
            }
        )
    return rows


# ---------------------------------------------------------------------- live: task queues and workers
QUEUE_TYPES: dict[str, Any] = {"workflow": 1, "activity": 2}  # temporalio.api.enums.v1.TaskQueueType values


async def describe_task_queues(
    client, namespace: str, task_queues: Iterable[str], now: datetime | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(queues, workers)`` as Temporal sees them now: one ``DescribeTaskQueue`` per queue and
    type (workflow, activity) gives both the backlog statistics and the pollers.

    queues: task_queue, type, backlog (approximate count), backlog_age_s, add_rate and
    dispatch_rate (tasks/s), pollers (count), observed (when asked).
    workers: one row per poller: task_queue, type, identity, last_access_time,
    seconds_since_poll, rate_per_second, healthy (polled within ``POLLER_STALE_AFTER_S``)."""
    import asyncio

    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    now = now or datetime.now(UTC)
    pairs = [(name, kind) for name in dict.fromkeys(task_queues) for kind in QUEUE_TYPES]

    async def describe(name: str, kind: str):
        request = DescribeTaskQueueRequest(
            namespace=namespace, task_queue=TaskQueue(name=name), task_queue_type=QUEUE_TYPES[kind], report_stats=True
        )
        return await client.workflow_service.describe_task_queue(request)

    replies = await asyncio.gather(*(describe(name, kind) for name, kind in pairs))
    queues, workers = [], []
    for (name, kind), reply in zip(pairs, replies, strict=True):
        stats = reply.stats
        queues.append(
            [
                name,
                kind,
                int(stats.approximate_backlog_count),
                stats.approximate_backlog_age.ToTimedelta().total_seconds(),
                float(stats.tasks_add_rate),
                float(stats.tasks_dispatch_rate),
                len(reply.pollers),
                pd.Timestamp(now),
            ]
        )
        for poller in reply.pollers:
            seen = poller.last_access_time.ToDatetime(tzinfo=UTC) if poller.HasField("last_access_time") else None
            age = (now - seen).total_seconds() if seen else math.nan
            workers.append(
                [
                    name,
                    kind,
                    poller.identity,
                    pd.Timestamp(seen) if seen else pd.NaT,
                    max(age, 0.0),
                    float(poller.rate_per_second),
                    bool(seen and age <= POLLER_STALE_AFTER_S),
                ]
            )
    queue_frame = _frame(queues, QUEUE_COLUMNS)
    worker_frame = _frame(workers, WORKER_COLUMNS)
    worker_frame["last_access_time"] = pd.to_datetime(worker_frame["last_access_time"], utc=True)
    return queue_frame, worker_frame


# ---------------------------------------------------------------------- Prometheus text format
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_WINDOW = timedelta(hours=1)  # the window of the latency quantiles a scrape reports


@dataclass
class Family:
    """One metric family: name, type (gauge, counter, summary), help and its samples.

    A sample is ``(suffix, labels, value)``; the suffix is "" or e.g. "_sum" / "_count"."""

    name: str
    type: str
    help: str
    samples: list[tuple[str, dict[str, str], float]]


def format_prometheus(families: Iterable[Family]) -> str:
    """The Prometheus text exposition format (version 0.0.4) of ``families``."""
    lines = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for suffix, labels, value in family.samples:
            label_text = ",".join(f'{key}="{_escape_label(str(val))}"' for key, val in labels.items())
            lines.append(
                f"{family.name}{suffix}{{{label_text}}} {_number(value)}"
                if label_text
                else f"{family.name}{suffix} {_number(value)}"
            )
    return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> str:
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def store_families(
    store, now: datetime | None = None, slo: float = DEFAULT_SLO, latency_window: timedelta = LATENCY_WINDOW
) -> list[Family]:
    """Run counts by status, activity latency summaries per node type and the SLO's burn rates.

    Latency quantiles are over the last ``latency_window`` (a summary's quantiles are always
    over a recent window); its ``_sum`` and ``_count`` are over all recorded timings, so they
    only grow and ``rate()`` over them works as for any Prometheus summary."""
    now = now or datetime.now(UTC)
    with store.reader() as conn:
        by_status = dict(
            conn.execute(select(runs.c.status, func.count()).where(store.mine(runs)).group_by(runs.c.status)).all()
        )
        t = node_timings.c
        totals = conn.execute(
            select(t.node_type, func.count(), func.sum(t.duration_ms))
            .where(store.mine(node_timings), t.kind == "activity", t.duration_ms.isnot(None))
            .group_by(t.node_type)
        ).all()
    recent = latency(store, now - latency_window, now).set_index("node_type")
    summary: list[tuple[str, dict[str, str], float]] = []
    for node_type, count, total_ms in sorted(totals):
        for p in PERCENTILES:
            value = recent.at[node_type, f"p{round(p * 100)}_ms"] / 1000 if node_type in recent.index else math.nan
            summary.append(("", {"node_type": node_type, "quantile": _quantile(p)}, value))
        summary.append(("_sum", {"node_type": node_type}, (total_ms or 0) / 1000))
        summary.append(("_count", {"node_type": node_type}, count))
    burn, budget = slo_report(store, now, slo)
    return [
        Family(
            "floworch_runs",
            "gauge",
            "Runs in the store by status (final statuses only ever grow).",
            [("", {"status": s}, by_status.get(s, 0)) for s in RUN_STATUSES],
        ),
        Family(
            "floworch_activity_duration_seconds",
            "summary",
            f"Activity attempt durations per node type; quantiles over the last {_label(latency_window)}.",
            summary,
        ),
        Family(
            "floworch_slo_burn_rate",
            "gauge",
            f"Error-budget burn rate of the {budget['slo']}% run success SLO per window (1 = on budget).",
            [("", {"window": w}, r) for w, r in zip(burn["window"], burn["burn_rate"], strict=True)],
        ),
        Family(
            "floworch_slo_error_budget_remaining",
            "gauge",
            f"Share of the {budget['window']} error budget left (1 = untouched, below 0 = overspent).",
            [("", {}, budget["budget_remaining"])],
        ),
    ]


def live_families(queues: pd.DataFrame | None, workers: pd.DataFrame | None) -> list[Family]:
    """Task-queue backlog and worker pollers; ``floworch_temporal_up`` 0 when Temporal did not answer."""
    up = queues is not None
    families = [
        Family(
            "floworch_temporal_up",
            "gauge",
            "1 when Temporal answered the task-queue queries of this scrape.",
            [("", {}, 1 if up else 0)],
        )
    ]
    if queues is None:
        return families
    key = lambda row: {"task_queue": row.task_queue, "type": row.type}  # noqa: E731
    families += [
        Family(
            "floworch_task_queue_backlog",
            "gauge",
            "Approximate number of tasks waiting in the task queue.",
            [("", key(r), r.backlog) for r in queues.itertuples()],
        ),
        Family(
            "floworch_task_queue_backlog_age_seconds",
            "gauge",
            "Age of the oldest task waiting in the task queue.",
            [("", key(r), r.backlog_age_s) for r in queues.itertuples()],
        ),
        Family(
            "floworch_worker_pollers",
            "gauge",
            "Workers polling the task queue.",
            [("", key(r), r.pollers) for r in queues.itertuples()],
        ),
    ]
    if workers is not None:
        families.append(
            Family(
                "floworch_worker_seconds_since_poll",
                "gauge",
                f"Seconds since each worker last polled (over {POLLER_STALE_AFTER_S:.0f} s: saturated or gone).",
                [("", {**key(r), "identity": r.identity}, r.seconds_since_poll) for r in workers.itertuples()],
            )
        )
    return families


def _quantile(p: float) -> str:
    return f"{p:g}"
