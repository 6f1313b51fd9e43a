"""A store seeded with runs and node timings whose SLO metrics were worked out by hand.

``seed(store, until)`` writes them relative to ``until``, the "now" of the seeded store; the
constants are what every metric must say of it, whichever way it is read (the engine's
functions, the notebook dashboard, the REST dashboard route).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import create_engine, insert

from conftest import wait_until
from floworch_server.store import Store
from floworch_server.store.repo import runs as runs_table

H = timedelta(hours=1)
MS = timedelta(milliseconds=1)


def spread(status: str, count: int, start: datetime, end: datetime, prefix: str) -> list[dict]:
    """``count`` runs with ``status`` ending evenly inside ``[start, end)``, each 5 s long."""
    step = (end - start) / (count + 1)
    rows = []
    for i in range(count):
        ended = start + step * (i + 1)
        rows.append(
            {
                "run_id": f"{prefix}-{status}-{i}",
                "start_time": ended - timedelta(seconds=5),
                "end_time": ended,
                "status": status,
            }
        )
    return rows


def seed(store: Store, until: datetime) -> None:
    """Runs, by when they ended before ``until``:

    - last hour: 9 success, 1 failed, 2 cancelled, and 1 still running (started 10 min ago);
    - 1h-2h ago: 199 success, 1 failed;      2h-6h ago: 790 success;
    - 6h-24h ago: 1000 success;              24h-72h ago: 3000 success;
    - 72h-30d ago: 6000 success;             older than 30 days: 5 failed (outside every window).
    """
    t0 = until
    rows = [
        *spread("success", 9, t0 - H, t0, "a"),
        *spread("failed", 1, t0 - H, t0, "a"),
        *spread("cancelled", 2, t0 - H, t0, "a"),
        *spread("success", 199, t0 - 2 * H, t0 - H, "b"),
        *spread("failed", 1, t0 - 2 * H, t0 - H, "b"),
        *spread("success", 790, t0 - 6 * H, t0 - 2 * H, "c"),
        *spread("success", 1000, t0 - 24 * H, t0 - 6 * H, "d"),
        *spread("success", 3000, t0 - 72 * H, t0 - 24 * H, "e"),
        *spread("success", 6000, t0 - timedelta(days=30), t0 - 72 * H, "f"),
        *spread("failed", 5, t0 - timedelta(days=40), t0 - timedelta(days=31), "g"),
    ]
    common = {"workflow_id": "wf", "trigger": "manual", "tenant": "default", "search_attributes": {}, "updated_at": t0}
    engine = create_engine(store.url)  # one bulk insert: 11 000 upserts would be slow, not different
    try:
        with engine.begin() as conn:
            conn.execute(insert(runs_table), [{**common, **row} for row in rows])
    finally:
        engine.dispose()
    store.upsert_run({"run_id": "a-running", "start_time": t0 - timedelta(minutes=10), "status": "running"})

    # Activity attempts: http 100..1000 ms (10), transform 5, 5, 10, 20 ms; a 5 s timer wait;
    # and a 99.999 s http call two days ago, outside the last day.
    def timing(node, node_type, ms, kind="activity", at=t0 - timedelta(minutes=30), attempt=1):
        return {
            "node": node,
            "node_type": node_type,
            "kind": kind,
            "attempt": attempt,
            "started": at,
            "ended": at + ms * MS,
            "status": "success",
        }

    store.add_node_timings(
        "a-success-0", [timing("fetch", "http", ms, attempt=n) for n, ms in enumerate(range(100, 600, 100), 1)]
    )
    store.add_node_timings("a-success-1", [timing("fetch", "http", ms) for ms in range(600, 1100, 100)])
    store.add_node_timings(
        "a-success-2",
        [timing("shape", "transform", ms) for ms in (5, 5, 10, 20)] + [timing("wait", "control.delay", 5000, "timer")],
    )
    store.add_node_timings("e-success-0", [timing("fetch", "http", 99_999, at=t0 - 48 * H)])


# Worked out by hand from the seed (allowed error rate of a 99.95 % SLO: 0.0005).
BURN = [
    # window, success, failed, total, error rate, burn rate, threshold, alerting
    ("1h", 9, 1, 10, 0.1, 200.0, 14.4, True),
    ("6h", 998, 2, 1000, 0.002, 4.0, 6.0, False),
    ("24h", 1998, 2, 2000, 0.001, 2.0, 3.0, False),
    ("72h", 4998, 2, 5000, 0.0004, 0.8, 1.0, False),
]
BUDGET_CONSUMED = (2 / 11000) / 0.0005  # 30 days: 10 998 success, 2 failed
# Linear interpolation between closest ranks, as percentile_cont: rank (n - 1) * p.
HTTP = {"count": 10, "mean_ms": 550.0, "p50_ms": 550.0, "p95_ms": 955.0, "p99_ms": 991.0, "max_ms": 1000.0}
TRANSFORM = {"count": 4, "mean_ms": 10.0, "p50_ms": 7.5, "p95_ms": 18.5, "p99_ms": 19.7, "max_ms": 20.0}


async def session_worker_polling(service, supervisor):
    """``(queues, the session worker's pollers)`` once it polls both queue types (it may still be starting)."""
    queue = service.settings.task_queue
    [worker_pid] = supervisor.worker_pids()

    async def polled():
        queues, workers = await service.task_queue_health()
        ours = workers[workers["identity"].str.startswith(f"{worker_pid}@") & (workers["task_queue"] == queue)]
        return (queues, ours) if set(ours["type"]) == {"workflow", "activity"} else None

    return await wait_until(polled, timeout=60, interval=0.5)
