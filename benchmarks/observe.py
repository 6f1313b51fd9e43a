"""The observability benchmark: a 500-step run's trace, and the SLO dashboard over 100 000 runs.

    python -m benchmarks.observe [--quick]

(a) trace: a sequential flow of 500 nodes (``trigger.manual`` then 499 transforms, each passing
    the previous value on) runs once on a Temporal dev server started by the `Supervisor`, with
    its real worker process. Then, several times: fetch the run's history, read its plan from
    the first event, its attempt logs from the store, ``trace.segments``, and the kernel's Gantt
    ``trace.figure(...).to_json()`` (what a notebook sends to the browser). Median of the total.

(b) dashboard: 100 000 runs that ended over the last 24 hours (99.9 % success, a few failed,
    cancelled and still running), each with 3 activity timings (http, transform, db.write:
    300 000 rows), written straight into a fresh store: a SQLite file, then a fresh schema on
    the local PostgreSQL (skipped, with the reason printed, when it is not reachable). Both are
    ANALYZEd, as autovacuum / a long-lived database would be. Timed: every store query of the
    dashboard's 24-hour view together (``metrics.dashboard_data``: bucketed success rate and
    throughput, p50/p95/p99 latency per node type, burn rates and error budget), median of
    several after one warm-up. The live panels (task-queue backlog, workers) ask Temporal, not
    the store, and cost the same whatever the number of runs: they are not part of this figure.

The last stdout line is one JSON object. Targets are reported, never asserted: trace <= 300 ms,
dashboard <= 1000 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

from floworch_server import metrics, trace
from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.store import Store
from floworch_server.store.repo import node_timings, runs
from floworch_server.supervisor import Supervisor

from .engine import flow_document

TRACE_TARGET_MS = 300.0
DASHBOARD_TARGET_MS = 1000.0
TRACE_NODES = 500  # the trigger and 499 transforms
RUNS = 100_000
NODE_TYPES = {"http": (180.0, 0.6), "transform": (4.0, 0.4), "db.write": (25.0, 0.5)}  # lognormal median ms, sigma
INSERT_CHUNK = 5000
POSTGRES = ("127.0.0.1", 5432, "test", ("postgres", "root"))


@dataclass(frozen=True)
class Counts:
    trace_repeats: int
    dashboard_repeats: int
    log_lines: int


FULL = Counts(trace_repeats=9, dashboard_repeats=9, log_lines=1000)
QUICK = Counts(trace_repeats=3, dashboard_repeats=3, log_lines=200)
LOG_TAIL_TARGET_MS = 100.0
LOG_INTERVAL_S = 0.01


# ---------------------------------------------------------------------- (a) the 500-step trace
async def measure_trace(settings: Settings, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    from floworch import trace as ktrace

    service = await FlowService.connect(settings)
    try:
        doc = flow_document(TRACE_NODES - 1)
        doc["meta"]["id"] = str(uuid.uuid4())
        flow = service.create_workflow(doc, by="benchmark")
        began = time.perf_counter()
        run_id = (await service.start_run(flow["id"], version="draft", input={"value": 1}, by="benchmark"))["run_id"]
        result = await service.result(run_id, timeout=900)
        run_s = time.perf_counter() - began
        if result["outputs"] != {f"t{TRACE_NODES - 1}": {"step": TRACE_NODES - 1, "value": 1}}:
            raise RuntimeError(f"the {TRACE_NODES}-node run returned {result!r}")
        log(f"{TRACE_NODES}-node run took {run_s:.1f} s")

        steps: dict[str, list[float]] = {"fetch": [], "segments": [], "figure": [], "total": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            events = list((await service.client.get_workflow_handle(run_id).fetch_history()).events)
            t1 = time.perf_counter()
            request = json.loads(events[0].workflow_execution_started_event_attributes.input.payloads[0].data)
            segments = trace.segments(request["plan"], events, service.store.list_logs(run_id, limit=100_000))
            t2 = time.perf_counter()
            payload = ktrace.figure(ktrace.frame(segments), title=f"Run {run_id}").to_json()
            t3 = time.perf_counter()
            steps["fetch"].append((t1 - t0) * 1000)
            steps["segments"].append((t2 - t1) * 1000)
            steps["figure"].append((t3 - t2) * 1000)
            steps["total"].append((t3 - t0) * 1000)
        activities = sum(1 for s in segments if s["kind"] == "activity")
        return {
            "samples": steps,
            "events": len(events),
            "activities": activities,
            "figure_bytes": len(payload),
            "run_s": run_s,
        }
    finally:
        service.store.close()


def run_trace(counts: Counts, log: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="floworch-observe-") as tmp:
        log("starting the Temporal dev server and a worker")
        with Supervisor(Settings(data_dir=tmp, workers=1)) as supervisor:
            log(f"running a {TRACE_NODES}-node flow on {supervisor.address}")
            return asyncio.run(measure_trace(supervisor.settings, counts.trace_repeats, log))


# ---------------------------------------------------------------------- (b) the dashboard over 100k runs
def generate(until: datetime, count: int, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """``count`` runs ending over the 24 hours before ``until``, and their activity timings."""
    rng = random.Random(seed)
    span = 24 * 3600.0
    run_rows, timing_rows = [], []
    for i in range(count):
        ended = until - timedelta(seconds=span * (i + 0.5) / count)
        roll = rng.random()
        status = "failed" if roll < 0.0008 else "cancelled" if roll < 0.001 else "success"
        run_id = f"bench-{i:06d}"
        at = ended - timedelta(seconds=1)
        if ended > until - timedelta(seconds=60) and i % 2 == 0:
            status = "running"  # the last minute: some are still going
        run_rows.append(
            {
                "run_id": run_id, "workflow_id": f"flow-{i % 20}", "version": "1", "trigger": "manual", "tenant": "default",
                "start_time": at, "end_time": None if status == "running" else ended, "status": status,
                "search_attributes": {}, "updated_at": until,
            }
        )  # fmt: skip
        if status == "running":
            continue
        for node, (median, sigma) in NODE_TYPES.items():
            ms = rng.lognormvariate(0, sigma) * median
            timing_rows.append(
                {
                    "run_id": run_id, "node": node.split(".")[0], "node_type": node, "kind": "activity", "iteration": None,
                    "attempt": 1, "started": at, "ended": at + timedelta(milliseconds=ms), "duration_ms": ms,
                    "status": "failed" if status == "failed" and node == "db.write" else "success",
                    "workflow_id": f"flow-{i % 20}", "tenant": "default",
                }
            )  # fmt: skip
            at += timedelta(milliseconds=ms)
    return run_rows, timing_rows


def load(url: str, run_rows: list[dict], timing_rows: list[dict]) -> float:
    """Write the rows in bulk (as an import would, not run by run) and ANALYZE; seconds taken."""
    Store(url).close()  # migrate the fresh database first
    began = time.perf_counter()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for table, rows in ((runs, run_rows), (node_timings, timing_rows)):
                for i in range(0, len(rows), INSERT_CHUNK):
                    conn.execute(insert(table), rows[i : i + INSERT_CHUNK])
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - began


def measure_dashboard(url: str, until: datetime, repeats: int) -> dict[str, Any]:
    since = until - timedelta(hours=24)
    with Store(url) as store:
        parts: dict[str, Callable[[], Any]] = {
            "success_rate": lambda: metrics.success_rate(store, since, until, "auto"),
            "throughput": lambda: metrics.throughput(store, since, until, "auto"),
            "latency": lambda: metrics.latency(store, since, until),
            "slo_report": lambda: metrics.slo_report(store, until),
        }
        data = metrics.dashboard_data(store, since, until)  # warm-up: caches, prepared plans
        samples: list[float] = []
        part_samples: dict[str, list[float]] = {name: [] for name in parts}
        # Totals and parts take turns, so a drift in the machine's load falls on both alike.
        for _ in range(repeats):
            t0 = time.perf_counter()
            data = metrics.dashboard_data(store, since, until)
            samples.append((time.perf_counter() - t0) * 1000)
            for name, call in parts.items():
                t0 = time.perf_counter()
                call()
                part_samples[name].append((time.perf_counter() - t0) * 1000)
    finished = int(data["success_rate"][["success", "failed", "cancelled"]].to_numpy().sum())
    return {
        "samples": samples,
        "parts": {name: statistics.median(times) for name, times in part_samples.items()},
        "finished_runs": finished,
        "latency_types": len(data["latency"]),
    }


def postgres_base() -> tuple[str | None, str]:
    """A server URL whose user may create schemas, or None and the reason."""
    import psycopg

    host, port, db, users = POSTGRES
    errors = []
    for user in users:
        try:
            psycopg.connect(host=host, port=port, dbname=db, user=user, connect_timeout=3).close()
            return f"postgresql+psycopg://{user}@{host}:{port}/{db}", ""
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable", with the reason
            errors.append(f"user {user}: {' '.join(str(exc).split()) or type(exc).__name__}")
    return None, f"PostgreSQL not reachable at {host}:{port}/{db}: " + "; ".join(errors)


def run_dashboards(counts: Counts, log: Callable[[str], None]) -> dict[str, Any]:
    until = datetime.now(UTC).replace(microsecond=0)
    run_rows, timing_rows = generate(until, RUNS)
    log(f"generated {len(run_rows)} runs and {len(timing_rows)} node timings")
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="floworch-observe-") as tmp:
        url = f"sqlite:///{tmp}/dashboard.db"
        log(f"SQLite: loaded in {load(url, run_rows, timing_rows):.1f} s")
        out["sqlite"] = measure_dashboard(url, until, counts.dashboard_repeats)
    base, reason = postgres_base()
    if base is None:
        out["postgres"] = {"skipped": reason}
        log(f"PostgreSQL skipped: {reason}")
        return out
    schema = f"floworch_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{base}?options=-csearch_path%3D{schema}"
        log(f"PostgreSQL: loaded in {load(url, run_rows, timing_rows):.1f} s (schema {schema})")
        out["postgres"] = measure_dashboard(url, until, counts.dashboard_repeats)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return out


# ---------------------------------------------------------------------- (c) the log tail
def run_log_tail(counts: Counts, log: Callable[[str], None]) -> dict[str, Any]:
    """Log lines written to the store (as a worker writes them) until they arrive through
    `WS /floworch/api/runs/{id}/logs` of a real Jupyter server: the delay of each line."""
    from .collab import product_server

    with tempfile.TemporaryDirectory(prefix="floworch-bench-tail-") as tmp:
        log("starting the services and a Jupyter server with FlowOrchestrator's extension")
        with product_server(Path(tmp)) as server:
            store = Store(server["settings"].store_url)
            run_id = f"run-bench-tail-{uuid.uuid4().hex}"
            store.upsert_run({"run_id": run_id, "status": "running", "start_time": datetime.now(UTC)})
            log(f"tailing {counts.log_lines} log lines")
            delays = asyncio.run(_tail(server, store, run_id, counts.log_lines))
            store.close()
    return {"samples": delays}


async def _tail(server: dict, store: Store, run_id: str, lines: int) -> list[float]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = server["url"].replace("http://", "ws://") + f"floworch/api/runs/{run_id}/logs"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {server['token']}"}))
    received: list[float] = []

    async def read() -> None:
        while len(received) < lines:
            text = await ws.read_message()
            if text is None:
                raise RuntimeError(f"the log socket closed after {len(received)} of {lines} lines")
            message = json.loads(text)
            if message["type"] == "log":
                sent_ns = int(message["record"]["message"])
                received.append((time.time_ns() - sent_ns) / 1e6)

    reader = asyncio.create_task(read())
    for _ in range(lines):
        await asyncio.to_thread(store.add_log, run_id, "bench", "info", str(time.time_ns()))
        await asyncio.sleep(LOG_INTERVAL_S)
    await asyncio.wait_for(reader, 60)
    ws.close()
    return received


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------------- results
def summarize(traced: dict[str, Any], dashboards: dict[str, Any], tail: dict[str, Any]) -> dict[str, Any]:
    def median(samples: list[float]) -> float:
        return round(statistics.median(samples), 1)

    pg = dashboards["postgres"]
    return {
        "trace_500_ms": median(traced["samples"]["total"]),
        "dashboard_100k_ms_sqlite": median(dashboards["sqlite"]["samples"]),
        "dashboard_100k_ms_postgres": None if "skipped" in pg else median(pg["samples"]),
        "log_tail_p99_ms": round(percentile(tail["samples"], 99), 1),
        "log_tail_p50_ms": round(percentile(tail["samples"], 50), 1),
        "log_tail_lines": len(tail["samples"]),
        "notes": {**({"dashboard_100k_ms_postgres": pg["skipped"]} if "skipped" in pg else {})},
        "trace_fetch_ms": median(traced["samples"]["fetch"]),
        "trace_segments_ms": median(traced["samples"]["segments"]),
        "trace_figure_ms": median(traced["samples"]["figure"]),
        "trace_history_events": traced["events"],
        "trace_run_s": round(traced["run_s"], 1),
        "dashboard_runs": RUNS,
        "trace_target_ms": TRACE_TARGET_MS,
        "dashboard_target_ms": DASHBOARD_TARGET_MS,
        "log_tail_target_ms": LOG_TAIL_TARGET_MS,
    }


def table(summary: dict[str, Any], traced: dict[str, Any], dashboards: dict[str, Any]) -> str:
    def verdict(value: float | None, target: float) -> str:
        return "skipped" if value is None else ("ok" if value <= target else "MISSED")

    def spread(samples: list[float]) -> str:
        return f"{min(samples):.1f}-{max(samples):.1f}"

    s = summary
    rows = [
        ("", "median ms", "min-max ms", "target"),
        (f"trace, {TRACE_NODES} nodes (history -> figure JSON)", f"{s['trace_500_ms']:.1f}", spread(traced["samples"]["total"]),
         f"<= {TRACE_TARGET_MS:.0f} {verdict(s['trace_500_ms'], TRACE_TARGET_MS)}"),
        ("  fetch history", f"{s['trace_fetch_ms']:.1f}", spread(traced["samples"]["fetch"]), ""),
        ("  plan + logs + trace.segments", f"{s['trace_segments_ms']:.1f}", spread(traced["samples"]["segments"]), ""),
        ("  kernel figure + to_json", f"{s['trace_figure_ms']:.1f}", spread(traced["samples"]["figure"]), ""),
    ]  # fmt: skip
    for backend in ("sqlite", "postgres"):
        figures = dashboards[backend]
        if "skipped" in figures:
            rows.append((f"dashboard, {RUNS} runs, {backend}", "-", "-", f"skipped: {figures['skipped']}"))
            continue
        value = s[f"dashboard_100k_ms_{backend}"]
        rows.append(
            (
                f"dashboard, {RUNS} runs, {backend}",
                f"{value:.1f}",
                spread(figures["samples"]),
                f"<= {DASHBOARD_TARGET_MS:.0f} {verdict(value, DASHBOARD_TARGET_MS)}",
            )
        )
        for part, ms in figures["parts"].items():
            rows.append((f"  {part}", f"{ms:.1f}", "", ""))
    rows.append(
        (f"log tail, {s['log_tail_lines']} lines (store -> WebSocket)", f"p50 {s['log_tail_p50_ms']:.1f}", f"p99 {s['log_tail_p99_ms']:.1f}",
         f"p99 <= {LOG_TAIL_TARGET_MS:.0f} {verdict(s['log_tail_p99_ms'], LOG_TAIL_TARGET_MS)}")
    )  # fmt: skip
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(
        f"trace: {traced['events']} history events, {traced['activities']} activity segments, "
        f"{traced['figure_bytes'] / 1024:.0f} KiB of figure JSON; the run itself took {traced['run_s']:.1f} s"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.observe", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions (the sizes stay: 500 nodes, 100 000 runs)"
    )
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    began = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - began:5.1f}s] {msg}", file=sys.stderr, flush=True)

    traced = run_trace(counts, log)
    dashboards = run_dashboards(counts, log)
    tail = run_log_tail(counts, log)
    summary = summarize(traced, dashboards, tail)
    print(table(summary, traced, dashboards))
    print(f"(took {time.monotonic() - began:.0f} s)")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
