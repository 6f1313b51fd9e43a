"""The scale benchmark: throughput of 1-node runs with 1, 2 and 3 worker processes, and a load.

    python -m benchmarks.scale [--quick]

One Temporal dev server (tuned settings), started by the `Supervisor` with no workers of its own,
and ``python -m floworch_server.worker`` processes started here one at a time (`WorkerProcesses`),
the very processes `make run` and a cluster run. With each worker count, once Temporal lists a
poller for every worker, a warm-up batch runs unmeasured, then:

- **throughput**: batches of ``Counts.batch`` runs of ``trigger.manual -> transform`` started at
  once, first start to last result, in runs per second. Runs are started the way
  `FlowService.start_run` starts them, without its store bookkeeping (`engine.Sides`), so this
  process stays a light client and the figure is Temporal's and the workers';
- **CPU per run** of the dev server, of the workers (together) and of this process, from /proc:
  on a small machine the cores are what bounds throughput, and these say who uses them;
- with 3 workers, the **load**: ``Counts.load`` runs started at once; each run's latency is from
  its start call to its result. A run that fails or has no result after ``LOAD_DEADLINE_S`` is
  lost. Reported: completed, lost, p50/p99 latency.

The counts are measured in order (1, 2, 3 workers) on one server, so later counts run on a
database a few hundred runs bigger; beside the machine's other load, that difference is small.
The last stdout line is one JSON object (see `summarize`). No target: the ratios say how far
adding worker processes helps on this machine (`os.cpu_count()` is in the table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client

from floworch_server import metrics, temporal
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor

from . import engine

WORKER_COUNTS = (1, 2, 3)
LOAD_DEADLINE_S = 300.0  # a run of the load without a result by then is lost
POLLERS_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Counts:
    batch: int  # runs started at once per throughput batch
    rounds: int  # throughput batches per worker count
    warmup: int  # unmeasured runs per worker count, in one batch
    load: int  # runs started at once with the most workers


FULL = Counts(batch=500, rounds=3, warmup=50, load=500)
QUICK = Counts(batch=100, rounds=1, warmup=10, load=500)

# Every figure of the JSON summary that must be a positive number.
SUMMARY_KEYS = (
    "throughput_workers_1",
    "throughput_workers_2",
    "throughput_workers_3",
    "throughput_ratio_2_1",
    "throughput_ratio_3_1",
    "load_p50_ms",
    "load_p99_ms",
)


# ---------------------------------------------------------------------- worker processes


class WorkerProcesses:
    """Worker processes against a supervisor's dev server, started one at a time, as a cluster
    scales out (``Supervisor.start_worker_process``: not restarted when they exit, tied to this
    process like the supervisor's own). ``env`` adds to their environment."""

    def __init__(self, supervisor: Supervisor, env: dict[str, str] | None = None) -> None:
        self.supervisor = supervisor
        self.env = dict(env or {})
        self.procs: list[subprocess.Popen] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def start(self) -> subprocess.Popen:
        proc = self.supervisor.start_worker_process(f"fleet-worker-{len(self.procs)}.log", self.env)
        self.procs.append(proc)
        return proc

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a worker drains), then SIGKILL what is left after ``timeout``."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------------- CPU accounting
def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) process ``pid`` has used so far, from /proc; 0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Cpu:
    """CPU seconds used by the dev server, the workers and this process since ``snapshot``."""

    server: float
    workers: float
    client: float

    @classmethod
    def snapshot(cls, supervisor: Supervisor, workers: WorkerProcesses) -> Cpu:
        return cls(cpu_seconds(supervisor.temporal_pid), sum(cpu_seconds(p) for p in workers.pids), time.process_time())

    def since(self, before: Cpu) -> Cpu:
        return Cpu(self.server - before.server, self.workers - before.workers, self.client - before.client)


# ---------------------------------------------------------------------- measurements
async def wait_for_pollers(client: Client, settings: Settings, count: int) -> None:
    """Until Temporal lists ``count`` distinct pollers of both the workflow and activity tasks."""
    deadline = time.monotonic() + POLLERS_TIMEOUT_S
    while True:
        _, workers = await metrics.describe_task_queues(client, settings.temporal_namespace, [settings.task_queue])
        ready = [len(set(workers[workers["type"] == kind]["identity"])) for kind in ("workflow", "activity")]
        if min(ready) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {ready} pollers (workflow, activity) of {count} workers after {POLLERS_TIMEOUT_S:.0f} s"
            )
        await asyncio.sleep(0.5)


async def timed_run(sides: engine.Sides) -> float:
    """One 1-node run from its start call to its checked result, in milliseconds."""
    return await sides.run_once("ours", 1)


@dataclass
class Batch:
    runs: int
    seconds: float  # first start to last result
    cpu: Cpu
    latencies_ms: list[float]  # of the runs that completed
    failures: list[str]  # why the others did not


async def batch(
    sides: engine.Sides, supervisor: Supervisor, workers: WorkerProcesses, runs: int, deadline: float | None = None
) -> Batch:
    """Start ``runs`` runs at once and await every result (or ``deadline`` seconds)."""
    before = Cpu.snapshot(supervisor, workers)
    began = time.perf_counter()
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(timed_run(sides), deadline) for _ in range(runs)), return_exceptions=True
    )
    seconds = time.perf_counter() - began
    cpu = Cpu.snapshot(supervisor, workers).since(before)
    latencies = [o for o in outcomes if isinstance(o, float)]
    failures = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return Batch(runs, seconds, cpu, latencies, failures)


async def measure(supervisor: Supervisor, counts: Counts, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Throughput with each of WORKER_COUNTS worker processes, adding workers as it goes, and
    the load with the last count."""
    settings = supervisor.settings
    client = await temporal.connect(settings, address=supervisor.address)
    # engine.Sides starts runs as FlowService.start_run does; only its "ours" side is used here.
    sides = engine.Sides(client, settings.task_queue, settings.task_queue, {1: engine.CompiledFlow.of_chain(1)})
    fleet = WorkerProcesses(supervisor)
    results = []
    try:
        for workers in WORKER_COUNTS:
            while len(fleet.procs) < workers:
                fleet.start()
            log(f"{workers} worker(s): waiting for their pollers")
            await wait_for_pollers(client, settings, workers)
            _check(await batch(sides, supervisor, fleet, counts.warmup), f"warm-up with {workers} worker(s)")
            batches = []
            for r in range(counts.rounds):
                done = await batch(sides, supervisor, fleet, counts.batch)
                _check(done, f"throughput batch {r + 1} with {workers} worker(s)")
                log(
                    f"{workers} worker(s): {done.runs} runs in {done.seconds:.1f} s ({done.runs / done.seconds:.1f} runs/s)"
                )
                batches.append(done)
            results.append({"workers": workers, "batches": batches})
        log(f"load: {counts.load} runs at once with {len(fleet.procs)} workers")
        results[-1]["load"] = await batch(sides, supervisor, fleet, counts.load, LOAD_DEADLINE_S)
    finally:
        fleet.stop()
    return results


def _check(done: Batch, what: str) -> None:
    # Throughput is only a figure when every run of the batch completed.
    if done.failures:
        raise RuntimeError(
            f"{what}: {len(done.failures)} of {done.runs} runs did not complete, e.g. {done.failures[0]}"
        )


# ---------------------------------------------------------------------- results
def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summarize(results: list[dict[str, Any]], counts: Counts) -> dict[str, Any]:
    """The JSON summary: runs/s per worker count, their ratios to 1 worker, CPU per run, the load."""
    summary: dict[str, Any] = {}
    for result in results:
        n, batches = result["workers"], result["batches"]
        runs = sum(b.runs for b in batches)
        seconds = sum(b.seconds for b in batches)
        summary[f"throughput_workers_{n}"] = round(runs / seconds, 1)
        for part in ("server", "workers", "client"):
            used = sum(getattr(b.cpu, part) for b in batches)
            summary[f"cpu_ms_per_run_{part}_{n}"] = round(1000 * used / runs, 2)
            summary[f"cores_busy_{part}_{n}"] = round(used / seconds, 2)  # average cores in use
    one = summary["throughput_workers_1"]
    for n in WORKER_COUNTS[1:]:
        summary[f"throughput_ratio_{n}_1"] = round(summary[f"throughput_workers_{n}"] / one, 3)
    load = next(r["load"] for r in results if "load" in r)
    summary.update(
        load_runs=load.runs,
        load_completed=len(load.latencies_ms),
        runs_lost=load.runs - len(load.latencies_ms),
        load_p50_ms=round(statistics.median(load.latencies_ms), 1) if load.latencies_ms else None,
        load_p99_ms=round(_percentile(load.latencies_ms, 0.99), 1) if load.latencies_ms else None,
        load_seconds=round(load.seconds, 1),
        load_workers=max(WORKER_COUNTS),
        load_lost_examples=load.failures[:3],
        batch=counts.batch,
        rounds=counts.rounds,
        cpus=os.cpu_count(),
        load_average_1min=round(os.getloadavg()[0], 2),
        host=socket.gethostname(),
        start_path="service.build_run_request, as FlowService.start_run (no store writes)",
    )
    return summary


def table(s: dict[str, Any]) -> str:
    rows = [
        (
            "workers",
            "runs/s",
            "vs 1 worker",
            "CPU ms/run: server",
            "workers",
            "this process",
            "cores busy: server",
            "workers",
        )
    ]
    for n in WORKER_COUNTS:
        rows.append(
            (
                str(n),
                f"{s[f'throughput_workers_{n}']:.1f}",
                "1.000" if n == 1 else f"{s[f'throughput_ratio_{n}_1']:.3f}",
                f"{s[f'cpu_ms_per_run_server_{n}']:.1f}",
                f"{s[f'cpu_ms_per_run_workers_{n}']:.1f}",
                f"{s[f'cpu_ms_per_run_client_{n}']:.1f}",
                f"{s[f'cores_busy_server_{n}']:.2f}",
                f"{s[f'cores_busy_workers_{n}']:.2f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    p50 = "-" if s["load_p50_ms"] is None else f"{s['load_p50_ms']:.0f} ms"
    p99 = "-" if s["load_p99_ms"] is None else f"{s['load_p99_ms']:.0f} ms"
    lines += [
        "",
        f"throughput: {s['rounds']} batch(es) of {s['batch']} 1-node runs started at once per worker count, first start to last result",
        f"load: {s['load_runs']} runs at once with {s['load_workers']} workers: {s['load_completed']} completed, "
        f"{s['runs_lost']} lost, latency p50 {p50}, p99 {p99}, all done in {s['load_seconds']:.1f} s",
        f"{s['cpus']} CPUs, load average (1 min) {s['load_average_1min']}; start path: {s['start_path']}",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- entry point
def run_benchmark(counts: Counts, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    # workers=0: the benchmark starts the worker processes itself, one count after another.
    with (
        tempfile.TemporaryDirectory(prefix="floworch-scale-") as root,
        Supervisor(Settings(data_dir=root, workers=0), tuned=True) as supervisor,
    ):
        log(f"Temporal dev server on {supervisor.address}")
        results = asyncio.run(measure(supervisor, counts, log))
    return summarize(results, counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches (a minute or two)")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    began = time.monotonic()
    summary = run_benchmark(
        counts, log=lambda msg: print(f"[{time.monotonic() - began:5.1f}s] {msg}", file=sys.stderr, flush=True)
    )
    print(table(summary))
    print(f"(took {time.monotonic() - began:.0f} s; counts {asdict(counts)})")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
