"""The engine benchmark: FlowOrchestrator's interpreter workflow against a hand-written one.

    python -m benchmarks.engine [--quick]

What it compares, on one Temporal dev server started by the `Supervisor` (tuned settings):

- ours: `FlowRun` running the compiled plan of ``trigger.manual -> transform`` (1 node) and of a
  chain of 10 transforms, each referencing the previous one's output. Runs are started the way
  `FlowService.start_run` starts them (same `RunRequest`, memo, search attributes and id
  policies), without its store bookkeeping, which is not Temporal's cost;
- native: `benchmarks._native.NativeChain`, 1 and 10 sequential activities doing the same work.

Each side has its own in-process `Worker` on its own task queue, both with the same sandbox
(`interpreter.workflow_runner()`, plus ``benchmarks`` passed through so the baseline's module is
not re-imported on every run, as FlowOrchestrator's own modules are not) and the same activity
concurrency as the production worker. Latency runs alternate between the sides, and between
which side goes first, so that drift in the server (SQLite growing, caches warming) falls on both.

Then, after stopping that server, a second one with the dev server's stock settings
(``tuned=False``) measures the per-step cost of the native 10-step workflow again, which shows
what the tuning buys.

The last stdout line is one JSON object (see `summarize`). Targets are reported, never asserted:
latency ratios <= 1.10, throughput ratio >= 0.90.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from floworch_server import temporal
from floworch_server.flowdoc import FlowDocument
from floworch_server.interpreter import workflow_runner
from floworch_server.messages import WORKFLOW_TYPE
from floworch_server.plan import compile_plan
from floworch_server.service import build_run_request
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor
from floworch_server.worker import default_registrations

from . import _native

LATENCY_TARGET = 1.10  # ours / native, at most
THROUGHPUT_TARGET = 0.90  # ours / native, at least
CHAIN = 10  # nodes in the sequential flow


@dataclass(frozen=True)
class Counts:
    runs: int  # sequential runs of each kind for the latency medians
    concurrent: int  # runs started at once for the throughput figure
    rounds: int  # throughput batches per side (alternating sides)
    warmup: int  # unmeasured runs of each kind first
    step_runs: int  # native 10-step runs on the stock-settings server


# Throughput batches take seconds each, long enough for load on the machine to come and go:
# several alternating rounds spread it over both sides.
FULL = Counts(runs=30, concurrent=200, rounds=4, warmup=5, step_runs=30)
QUICK = Counts(runs=10, concurrent=200, rounds=1, warmup=3, step_runs=10)

RUN_INPUT = {"value": 1}

# Every figure of the JSON summary that must be a positive number.
SUMMARY_KEYS = (
    "latency_ratio_1",
    "latency_ratio_10",
    "throughput_ratio_200",
    "median_ms_ours_1",
    "median_ms_native_1",
    "median_ms_ours_10",
    "median_ms_native_10",
    "throughput_ours_200",
    "throughput_native_200",
    "step_ms_default",
    "step_ms_tuned",
)


# ---------------------------------------------------------------------- the flows
def flow_document(nodes: int) -> dict[str, Any]:
    """``start -> t1 -> ... -> tN``: each transform passes the previous value on."""
    transforms = []
    for i in range(1, nodes + 1):
        previous = "input.value" if i == 1 else f"nodes.t{i - 1}.output.value"
        transforms.append(
            {"id": f"t{i}", "type": "transform", "config": {"output": {"step": i, "value": f"{{{{ {previous} }}}}"}}}
        )
    ids = ["start", *(t["id"] for t in transforms)]
    return {
        "version": 1,
        "meta": {"id": f"bench-chain-{nodes}", "name": f"benchmark chain of {nodes}"},
        "nodes": [
            {"id": "start", "type": "trigger.manual", "position": {"x": 0, "y": 0}, "config": {}},
            *({**t, "position": {"x": 200 * n, "y": 0}} for n, t in enumerate(transforms, 1)),
        ],
        "edges": [{"id": f"e{n}", "source": a, "target": b} for n, (a, b) in enumerate(itertools.pairwise(ids))],
    }


@dataclass(frozen=True)
class CompiledFlow:
    nodes: int
    plan: dict[str, Any]
    hash: str

    @classmethod
    def of_chain(cls, nodes: int) -> CompiledFlow:
        plan = compile_plan(FlowDocument.model_validate(flow_document(nodes)))
        return cls(nodes, plan.to_data(), plan.hash)


# ---------------------------------------------------------------------- the two sides
@dataclass
class Sides:
    """A client and the task queues of the two in-process workers."""

    client: Client
    ours_queue: str
    native_queue: str
    flows: dict[int, CompiledFlow]
    tenant: str = "default"

    async def start_ours(self, nodes: int):
        """Start a FlowRun the way `FlowService.start_run` does (same request, memo, attributes)."""
        flow = self.flows[nodes]
        request, meta, attrs = build_run_request(
            flow.plan["flow"]["id"],
            flow.plan,
            flow.hash,
            "draft",
            "manual",
            "start",
            RUN_INPUT,
            "benchmark",
            self.tenant,
        )
        return await self.client.start_workflow(
            WORKFLOW_TYPE,
            request,
            id=f"run-{uuid.uuid4().hex}",
            task_queue=self.ours_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            memo={"floworch": meta},
            search_attributes=attrs,
        )

    async def start_native(self, nodes: int):
        return await self.client.start_workflow(
            _native.NativeChain.run,
            _native.ChainInput(steps=nodes, input=RUN_INPUT),
            id=f"native-{uuid.uuid4().hex}",
            task_queue=self.native_queue,
        )

    def starter(self, side: str) -> Callable[[int], Awaitable[Any]]:
        return self.start_ours if side == "ours" else self.start_native

    async def run_once(self, side: str, nodes: int) -> float:
        """One run, start to result, in milliseconds; checks the run did the work."""
        began = time.perf_counter()
        handle = await self.starter(side)(nodes)
        result = await handle.result()
        elapsed = (time.perf_counter() - began) * 1000
        _check_result(side, nodes, result)
        return elapsed


def _check_result(side: str, nodes: int, result: Any) -> None:
    expected = {"step": nodes, "value": RUN_INPUT["value"]}
    got = result["outputs"][f"t{nodes}"] if side == "ours" else result
    if got != expected:
        raise RuntimeError(f"{side} {nodes}-node run returned {got!r}, expected {expected!r}")


def _sandbox() -> SandboxedWorkflowRunner:
    runner = workflow_runner()
    return SandboxedWorkflowRunner(restrictions=runner.restrictions.with_passthrough_modules("benchmarks"))


@asynccontextmanager
async def running_sides(client: Client) -> AsyncIterator[Sides]:
    """Both workers, polling their own queues of ``client``'s server, until the block ends."""
    suffix = uuid.uuid4().hex[:8]
    sides = Sides(
        client, f"bench-ours-{suffix}", f"bench-native-{suffix}", {n: CompiledFlow.of_chain(n) for n in (1, CHAIN)}
    )
    runner = _sandbox()  # one runner, so both sides share the very same sandbox settings
    workflows, activities = default_registrations()
    common: dict[str, Any] = dict(
        workflow_runner=runner,
        max_concurrent_activities=Settings().worker_concurrency,  # as a worker runs by default
        graceful_shutdown_timeout=timedelta(seconds=1),
    )
    ours = Worker(client, task_queue=sides.ours_queue, workflows=workflows, activities=activities, **common)
    native = Worker(
        client,
        task_queue=sides.native_queue,
        workflows=[_native.NativeChain],
        activities=[_native.native_step],
        **common,
    )
    async with ours, native:
        yield sides


# ---------------------------------------------------------------------- measurements
async def warm_up(sides: Sides, runs: int) -> None:
    """Unmeasured runs: sandbox set-up, sticky queues and the server's caches warm on both sides."""
    for _ in range(runs):
        for side in ("ours", "native"):
            for nodes in (1, CHAIN):
                await sides.run_once(side, nodes)
    for side in ("ours", "native"):
        await _batch(sides, side, min(20, max(2, runs * 4)))


async def measure_latency(sides: Sides, runs: int) -> dict[str, list[float]]:
    """``runs`` sequential runs of each (side, size), interleaved; milliseconds per run."""
    kinds = [(side, nodes) for nodes in (1, CHAIN) for side in ("ours", "native")]
    samples: dict[str, list[float]] = {f"{side}_{nodes}": [] for side, nodes in kinds}
    for i in range(runs):
        # Alternate which side goes first: a run can leave work behind in the server
        # (visibility, timers) that slows the next one a little.
        for side, nodes in kinds if i % 2 == 0 else kinds[::-1]:
            samples[f"{side}_{nodes}"].append(await sides.run_once(side, nodes))
    return samples


def _server_cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc; None where unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Batch:
    seconds: float  # first start to last result
    process_cpu: float  # this process: the client and both workers (the idle one polls only)
    server_cpu: float | None  # the Temporal server, when its pid is known


async def _batch(sides: Sides, side: str, count: int, server_pid: int | None = None) -> Batch:
    """Start ``count`` 1-node runs at once and await them all."""
    start = sides.starter(side)
    server_before = _server_cpu_seconds(server_pid)
    cpu_before = time.process_time()
    began = time.perf_counter()
    handles = await asyncio.gather(*(start(1) for _ in range(count)))
    results = await asyncio.gather(*(h.result() for h in handles))
    elapsed = time.perf_counter() - began
    process_cpu = time.process_time() - cpu_before
    server_after = _server_cpu_seconds(server_pid)
    for result in results:
        _check_result(side, 1, result)
    server_cpu = None if server_before is None or server_after is None else server_after - server_before
    return Batch(elapsed, process_cpu, server_cpu)


async def measure_throughput(
    sides: Sides, concurrent: int, rounds: int, server_pid: int | None = None
) -> dict[str, Any]:
    """Runs per second of each side over ``rounds`` batches of ``concurrent`` runs (ABBA order),
    and the CPU time each run cost: wall-clock throughput swings with other load on the machine,
    CPU time per run much less, and on a small machine it is what bounds throughput."""
    batches: dict[str, list[Batch]] = {"ours": [], "native": []}
    for r in range(rounds):
        for side in ("ours", "native") if r % 2 == 0 else ("native", "ours"):
            batches[side].append(await _batch(sides, side, concurrent, server_pid))
    out: dict[str, Any] = {}
    for side, done in batches.items():
        runs = concurrent * len(done)
        server = [b.server_cpu for b in done]
        out[side] = {
            "runs_per_s": runs / sum(b.seconds for b in done),
            "process_cpu_ms_per_run": 1000 * sum(b.process_cpu for b in done) / runs,
            "server_cpu_ms_per_run": None if None in server else 1000 * sum(server) / runs,  # type: ignore[arg-type]
        }
    return out


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


async def measure(client: Client, counts: Counts, server_pid: int | None = None) -> dict[str, Any]:
    """Latency and throughput of both sides against ``client``'s server (its pid, if given,
    adds the server's CPU time per run)."""
    async with running_sides(client) as sides:
        await warm_up(sides, counts.warmup)
        samples = await measure_latency(sides, counts.runs)
        throughput = await measure_throughput(sides, counts.concurrent, counts.rounds, server_pid)
    # Other work on the machine moves the figures: the load average says how much there was.
    return {"samples": samples, "throughput": throughput, "counts": counts, "load": _load()}


async def measure_step_cost(client: Client, runs: int, warmup: int = 2) -> dict[str, Any]:
    """Native 10-step runs only: the server's own per-step cost, with no interpreter in it."""
    async with running_sides(client) as sides:
        for _ in range(warmup):
            await sides.run_once("native", CHAIN)
        samples = [await sides.run_once("native", CHAIN) for _ in range(runs)]
    return {"samples": samples, "step_ms": statistics.median(samples) / CHAIN}


# ---------------------------------------------------------------------- results
def summarize(main: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """The JSON summary: medians (ms), throughput (runs/s), their ratios and per-step costs."""
    med = {kind: statistics.median(values) for kind, values in main["samples"].items()}
    tput = {side: figures["runs_per_s"] for side, figures in main["throughput"].items()}
    summary = {
        "latency_ratio_1": round(med["ours_1"] / med["native_1"], 3),
        "latency_ratio_10": round(med[f"ours_{CHAIN}"] / med[f"native_{CHAIN}"], 3),
        "throughput_ratio_200": round(tput["ours"] / tput["native"], 3),
        "median_ms_ours_1": round(med["ours_1"], 2),
        "median_ms_native_1": round(med["native_1"], 2),
        "median_ms_ours_10": round(med[f"ours_{CHAIN}"], 2),
        "median_ms_native_10": round(med[f"native_{CHAIN}"], 2),
        "throughput_ours_200": round(tput["ours"], 1),
        "throughput_native_200": round(tput["native"], 1),
        "step_ms_default": round(default["step_ms"], 2),
        "step_ms_tuned": round(med[f"native_{CHAIN}"] / CHAIN, 2),
        # The cost of one more node, without the start and completion every run pays once.
        "marginal_step_ms_ours": round((med[f"ours_{CHAIN}"] - med["ours_1"]) / (CHAIN - 1), 2),
        "marginal_step_ms_native": round((med[f"native_{CHAIN}"] - med["native_1"]) / (CHAIN - 1), 2),
        "runs": main["counts"].runs,
        "concurrent": main["counts"].concurrent,
        "throughput_rounds": main["counts"].rounds,
        "start_path": "service.build_run_request, as FlowService.start_run (no store writes)",
        "load_average_1min": main["load"],
        "latency_target": LATENCY_TARGET,
        "throughput_target": THROUGHPUT_TARGET,
    }
    for side, figures in main["throughput"].items():
        summary[f"process_cpu_ms_per_run_{side}"] = round(figures["process_cpu_ms_per_run"], 2)
        if figures["server_cpu_ms_per_run"] is not None:
            summary[f"server_cpu_ms_per_run_{side}"] = round(figures["server_cpu_ms_per_run"], 2)
    return summary


def table(summary: dict[str, Any], main: dict[str, Any]) -> str:
    def spread(kind: str) -> str:
        values = sorted(main["samples"][kind])
        p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
        return f"{values[0]:.1f}-{p90:.1f}"

    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    s = summary
    rows = [
        ("", "ours", "native", "ours/native", "target"),
        (
            "latency, 1 node (median ms)",
            f"{s['median_ms_ours_1']:.1f}",
            f"{s['median_ms_native_1']:.1f}",
            f"{s['latency_ratio_1']:.3f}",
            f"<= {LATENCY_TARGET} {verdict(s['latency_ratio_1'] <= LATENCY_TARGET)}",
        ),
        ("  min-p90 (ms)", spread("ours_1"), spread("native_1"), "", ""),
        (
            f"latency, {CHAIN} nodes (median ms)",
            f"{s['median_ms_ours_10']:.1f}",
            f"{s['median_ms_native_10']:.1f}",
            f"{s['latency_ratio_10']:.3f}",
            f"<= {LATENCY_TARGET} {verdict(s['latency_ratio_10'] <= LATENCY_TARGET)}",
        ),
        ("  min-p90 (ms)", spread(f"ours_{CHAIN}"), spread(f"native_{CHAIN}"), "", ""),
        (
            f"throughput, {s['concurrent']} at once (runs/s)",
            f"{s['throughput_ours_200']:.1f}",
            f"{s['throughput_native_200']:.1f}",
            f"{s['throughput_ratio_200']:.3f}",
            f">= {THROUGHPUT_TARGET} {verdict(s['throughput_ratio_200'] >= THROUGHPUT_TARGET)}",
        ),
        (
            "  CPU per run: this process (ms)",
            f"{s['process_cpu_ms_per_run_ours']:.1f}",
            f"{s['process_cpu_ms_per_run_native']:.1f}",
            f"{s['process_cpu_ms_per_run_ours'] / s['process_cpu_ms_per_run_native']:.3f}",
            "",
        ),
        *(
            [
                (
                    "  CPU per run: Temporal server (ms)",
                    f"{s['server_cpu_ms_per_run_ours']:.1f}",
                    f"{s['server_cpu_ms_per_run_native']:.1f}",
                    f"{s['server_cpu_ms_per_run_ours'] / s['server_cpu_ms_per_run_native']:.3f}",
                    "",
                )
            ]
            if "server_cpu_ms_per_run_ours" in s
            else []
        ),
        (
            "one more node (ms)",
            f"{s['marginal_step_ms_ours']:.1f}",
            f"{s['marginal_step_ms_native']:.1f}",
            "",
            "",
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines += [
        "",
        f"per step (native {CHAIN}-step median / {CHAIN}): dev server stock settings {s['step_ms_default']:.1f} ms, "
        f"tuned {s['step_ms_tuned']:.1f} ms",
        f"{s['runs']} latency runs of each kind, interleaved; throughput over {s['throughput_rounds']} "
        f"batch(es) per side; start path: {s['start_path']}",
        f"load average (1 min) after the measurements: {s['load_average_1min']} on {os.cpu_count()} CPUs "
        "(other work on the machine slows both sides, and the wall-clock figures with them)",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- entry point
async def _client(supervisor: Supervisor) -> Client:
    return await temporal.connect(supervisor.settings, address=supervisor.address)


def run_benchmark(counts: Counts, log: Callable[[str], None] = lambda _: None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both servers, one after the other, each in a fresh data directory; returns (summary, raw)."""
    with tempfile.TemporaryDirectory(prefix="floworch-bench-") as tmp:
        log("starting the Temporal dev server (tuned settings)")
        # workers=0: the benchmark runs its own workers in this process.
        with Supervisor(Settings(data_dir=f"{tmp}/tuned", workers=0), tuned=True) as supervisor:
            log(f"measuring on {supervisor.address}")
            main = asyncio.run(_with_client(supervisor, lambda c: measure(c, counts, supervisor.temporal_pid)))
        log("starting the Temporal dev server (stock settings)")
        with Supervisor(Settings(data_dir=f"{tmp}/stock", workers=0), tuned=False) as supervisor:
            default = asyncio.run(_with_client(supervisor, lambda c: measure_step_cost(c, counts.step_runs)))
    return summarize(main, default), main


async def _with_client(supervisor: Supervisor, work: Callable[[Client], Awaitable[Any]]) -> Any:
    return await work(await _client(supervisor))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (finishes in under a minute)")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    began = time.monotonic()
    summary, raw = run_benchmark(
        counts, log=lambda msg: print(f"[{time.monotonic() - began:5.1f}s] {msg}", file=sys.stderr, flush=True)
    )
    print(table(summary, raw))
    print(f"(took {time.monotonic() - began:.0f} s)")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
