"""The debugging benchmark: from a failed run's id to an answer, three ways.

    python -m benchmarks.debug [--quick]

On a Temporal dev server of its own, started by the `Supervisor` with one real worker process,
a published checkout flow

    start -> customer -> quote -> charge -> receipt

calls a local HTTP server (a thread of this process) with `action.http` nodes. ``customer`` and
``quote`` each wait ~200 ms on it before answering, as a CRM lookup and a pricing call would:
the steps before the failure cost something real, which is what resuming from the failed node
saves (with instant earlier steps, resume and a full re-run would differ by a few activity
round trips only). Version 1 charges the quote's ``total`` (412.5), which the payment endpoint
refuses with 422 (not retried): every run of it fails at ``charge``. Version 2, published before
the rounds start, charges ``total_cents``, which is accepted.

Each round starts one run of version 1 and waits for it to fail (not timed). Then, from that
failed run's id, three things are timed, in an order that rotates from round to round, so that
a drift in this shared machine's load falls on all three alike:

- **rerun**: ``service.rerun_node(run_id, "charge", config=<the fix>)`` (what
  ``run.node("charge").rerun_here(config=...)`` calls in a kernel): read the run's history,
  resolve the node's recorded config and inputs, run the executor in this process; until its
  output is back. Also reported: the executor's own part (the charge call).
- **resume**: ``service.retry_runs([run_id], mode="resume", version="latest")`` (``fo.retry``,
  ``run.retry(mode="resume")``) until the new run has completed: ``customer`` and ``quote`` are
  taken from the failed run's history, only ``charge`` and ``receipt`` run.
- **full**: the same with ``mode="start"``: the whole flow again from the start, same input,
  same version: every node runs.

The benchmark checks what it measures: each re-run and each new run must succeed with the
expected output, the resumed run must reuse exactly ``customer`` and ``quote`` and must not call
them (the local server counts the calls), and the full run must call them again.

The figures are medians and p95s of the rounds (one warm-up round is not counted). The last
stdout line is one JSON object: ``rerun_node_ms`` (median, failed run id -> re-run output),
``resume_ms``, ``full_ms``, ``resume_vs_full_ratio`` (median resume / median full) and the
p95s, sample counts and settings behind them. No target: the ratio says what resuming saves on
this flow, whose earlier steps take ``2 x STEP_DELAY_S``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest.mock import patch

from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor

STEP_DELAY_S = 0.2  # what each of the two steps before the failure waits on the server
EARLIER = ("customer", "quote")
KINDS = ("rerun", "resume", "full")
CUSTOMER = 7
FIX = {"json": {"amount": 41250, "customer": CUSTOMER}}  # the charge's resolved config, fixed


@dataclass(frozen=True)
class Counts:
    rounds: int
    warmup: int


FULL = Counts(rounds=25, warmup=1)
QUICK = Counts(rounds=5, warmup=1)


# ---------------------------------------------------------------------- the outside world
class Shop:
    """The local server the flow calls: ``GET /customer`` and ``GET /quote`` answer after
    ``delay`` seconds; ``POST /charge`` refuses an amount that is not a whole number of cents."""

    def __init__(self, delay: float):
        self.calls: Counter = Counter()
        self.lock = threading.Lock()
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]
                shop.count(path)
                time.sleep(delay)
                if path == "/customer":
                    return self._answer(200, {"id": CUSTOMER, "name": "Ada"})
                if path == "/quote":
                    return self._answer(200, {"total": 412.5, "total_cents": 41250, "currency": "USD"})
                self._answer(404, {"error": f"no route {path}"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                shop.count(self.path)
                amount = (body or {}).get("amount")
                if self.path != "/charge":
                    return self._answer(404, {"error": f"no route {self.path}"})
                if not isinstance(amount, int):
                    return self._answer(422, {"error": f"amount must be an integer number of cents, got {amount!r}"})
                self._answer(200, {"id": f"ch_{uuid.uuid4().hex[:8]}", "amount": amount})

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, path: str) -> None:
        with self.lock:
            self.calls[path] += 1

    def snapshot(self) -> Counter:
        with self.lock:
            return Counter(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def checkout(base: str, amount: str) -> dict[str, Any]:
    """start -> customer -> quote -> charge -> receipt; ``amount`` is the charge's expression."""
    nodes: list[dict[str, Any]] = [
        {"id": "start", "type": "trigger.manual"},
        {
            "id": "customer",
            "type": "action.http",
            "config": {"url": base + "/customer", "query": {"id": "{{ input.customer }}"}},
        },
        {"id": "quote", "type": "action.http", "config": {"url": base + "/quote"}},
        {
            "id": "charge",
            "type": "action.http",
            "config": {
                "method": "POST",
                "url": base + "/charge",
                "json": {"amount": amount, "customer": "{{ nodes.customer.output.body.id }}"},
            },
        },
        {
            "id": "receipt",
            "type": "transform",
            "config": {
                "output": {
                    "customer": "{{ nodes.customer.output.body.name }}",
                    "amount": "{{ nodes.charge.output.body.amount }}",
                }
            },
        },
    ]
    ids = [n["id"] for n in nodes]
    return {
        "version": 1,
        "meta": {"id": str(uuid.uuid4()), "name": "benchmark checkout"},
        "nodes": [{"position": {"x": 220 * i, "y": 0}, **n} for i, n in enumerate(nodes)],
        "edges": [{"id": f"e{i}", "source": a, "target": b} for i, (a, b) in enumerate(itertools.pairwise(ids))],
    }


EXPECTED = {"receipt": {"customer": "Ada", "amount": 41250}}


# ---------------------------------------------------------------------- measuring
class Bench:
    def __init__(self, service: FlowService, shop: Shop, flow_id: str):
        self.service = service
        self.shop = shop
        self.flow_id = flow_id

    async def failed_run(self) -> str:
        """A run of version 1, once it has failed at charge."""
        run_id = (await self.service.start_run(self.flow_id, input={"customer": CUSTOMER}, version=1, by="benchmark"))[
            "run_id"
        ]
        with contextlib.suppress(Exception):  # the run fails: that is the point
            await self.service.result(run_id, timeout=120)
        run = await self.service.get_run(run_id)
        failed = {n["node"]: n["status"] for n in run["nodes"]}
        if run["status"] != "failed" or failed.get("charge") != "failed":
            raise RuntimeError(
                f"run {run_id} of version 1 should fail at charge; it is {run['status']} with nodes {failed}"
            )
        return run_id

    async def rerun(self, run_id: str) -> dict[str, float]:
        began = time.perf_counter()
        answer = await self.service.rerun_node(run_id, "charge", config=FIX)
        total = (time.perf_counter() - began) * 1000
        if answer["status"] != "success" or answer["output"]["body"]["amount"] != 41250:
            raise RuntimeError(
                f"re-running charge of {run_id} with the fix gave {answer['status']}: {answer['error'] or answer['output']}"
            )
        return {"total": total, "executor": answer["duration_ms"]}

    async def retry(self, run_id: str, mode: str) -> dict[str, float]:
        before = self.shop.snapshot()
        began = time.perf_counter()
        [retried] = await self.service.retry_runs([run_id], mode=mode, version="latest", by="benchmark")
        result = await self.service.result(retried["retry_run_id"], timeout=120)
        total = (time.perf_counter() - began) * 1000
        if result.get("outputs") != EXPECTED:
            raise RuntimeError(f"the {mode} retry of {run_id} returned {result!r}, not {EXPECTED!r}")
        called = self.shop.snapshot() - before
        earlier_calls = sum(called[f"/{n}"] for n in EARLIER)
        if mode == "resume" and (retried["reused"] != sorted(EARLIER) or earlier_calls):
            raise RuntimeError(
                f"the resumed run should reuse {list(EARLIER)} and call none of them; it reused {retried['reused']} and called {dict(called)}"
            )
        if mode == "start" and (retried["reused"] or earlier_calls != len(EARLIER)):
            raise RuntimeError(
                f"the run from the start should call {list(EARLIER)} again; it reused {retried['reused']} and called {dict(called)}"
            )
        return {"total": total}

    async def round(self, index: int) -> dict[str, dict[str, float]]:
        run_id = await self.failed_run()
        steps = {
            "rerun": lambda: self.rerun(run_id),
            "resume": lambda: self.retry(run_id, "resume"),
            "full": lambda: self.retry(run_id, "start"),
        }
        order = KINDS[index % 3 :] + KINDS[: index % 3]
        return {kind: await steps[kind]() for kind in order}


async def measure(settings: Settings, counts: Counts, log: Callable[[str], None]) -> dict[str, Any]:
    shop = Shop(STEP_DELAY_S)
    service = await FlowService.connect(settings)
    try:
        doc = checkout(shop.base, "{{ nodes.quote.output.body.total }}")
        flow_id = service.create_workflow(doc, by="benchmark")["id"]
        await service.publish(flow_id, note="charges the total", by="benchmark")
        fixed = checkout(shop.base, "{{ nodes.quote.output.body.total_cents }}")
        fixed["meta"]["id"] = flow_id
        service.save_draft(flow_id, fixed, by="benchmark")
        await service.publish(flow_id, note="charges in cents", by="benchmark")
        bench = Bench(service, shop, flow_id)
        samples: dict[str, list[float]] = {
            "rerun": [],
            "rerun_executor": [],
            "resume": [],
            "full": [],
            "failed_run": [],
        }
        for index in range(counts.warmup + counts.rounds):
            began = time.perf_counter()
            timed = await bench.round(index)
            if index < counts.warmup:
                continue
            samples["rerun"].append(timed["rerun"]["total"])
            samples["rerun_executor"].append(timed["rerun"]["executor"])
            samples["resume"].append(timed["resume"]["total"])
            samples["full"].append(timed["full"]["total"])
            samples["failed_run"].append((time.perf_counter() - began) * 1000 - sum(t["total"] for t in timed.values()))
            log(
                f"round {index - counts.warmup + 1}/{counts.rounds}: rerun {timed['rerun']['total']:.0f} ms, resume {timed['resume']['total']:.0f} ms, full {timed['full']['total']:.0f} ms"
            )
        return {"samples": samples, "counts": counts}
    finally:
        service.store.close()
        shop.close()


def run_benchmark(counts: Counts, log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    # The flow's nodes call the local server: the worker and this process (re-run) must allow loopback.
    with (
        tempfile.TemporaryDirectory(prefix="floworch-bench-debug-") as tmp,
        patch.dict("os.environ", {"FLOWORCH_HTTP_ALLOW": "127.0.0.1"}),
    ):
        log("starting the Temporal dev server and a worker")
        with Supervisor(Settings(data_dir=tmp, workers=1, http_allow="127.0.0.1")) as supervisor:
            log(f"measuring on {supervisor.address}: {counts.warmup} warm-up round(s), {counts.rounds} round(s)")
            return asyncio.run(measure(supervisor.settings, counts, log))


# ---------------------------------------------------------------------- results
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(measured: dict[str, Any]) -> dict[str, Any]:
    s = measured["samples"]

    def med(kind: str) -> float:
        return round(statistics.median(s[kind]), 1)

    def p95(kind: str) -> float:
        return round(percentile(s[kind], 95), 1)

    return {
        "rerun_node_ms": med("rerun"),
        "resume_vs_full_ratio": round(statistics.median(s["resume"]) / statistics.median(s["full"]), 3),
        "rerun_node_p95_ms": p95("rerun"),
        "rerun_executor_ms": med("rerun_executor"),
        "resume_ms": med("resume"),
        "resume_p95_ms": p95("resume"),
        "full_ms": med("full"),
        "full_p95_ms": p95("full"),
        "resume_saved_ms": round(statistics.median(f - r for f, r in zip(s["full"], s["resume"], strict=True)), 1),
        "rerun_vs_full_ratio": round(statistics.median(s["rerun"]) / statistics.median(s["full"]), 3),
        "failed_run_ms": med("failed_run"),
        "samples": len(s["rerun"]),
        "warmup_rounds": measured["counts"].warmup,
        "earlier_steps": len(EARLIER),
        "step_delay_ms": STEP_DELAY_S * 1000,
    }


def table(summary: dict[str, Any], measured: dict[str, Any]) -> str:
    s = summary
    samples = measured["samples"]

    def spread(kind: str) -> str:
        return f"{min(samples[kind]):.0f}-{max(samples[kind]):.0f}"

    rows = [
        ("from a failed run's id to ...", "median ms", "p95 ms", "min-max ms", "vs full"),
        ("re-run of the failed node here (rerun_here)", f"{s['rerun_node_ms']:.1f}", f"{s['rerun_node_p95_ms']:.1f}", spread("rerun"), f"{s['rerun_vs_full_ratio']:.3f}"),
        ("  of which the node's own call", f"{s['rerun_executor_ms']:.1f}", "", spread("rerun_executor"), ""),
        ("resumed run completed (retry mode=resume)", f"{s['resume_ms']:.1f}", f"{s['resume_p95_ms']:.1f}", spread("resume"), f"{s['resume_vs_full_ratio']:.3f}"),
        ("whole flow again completed (retry mode=start)", f"{s['full_ms']:.1f}", f"{s['full_p95_ms']:.1f}", spread("full"), "1.000"),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines += [
        "",
        f"flow: start -> customer -> quote -> charge -> receipt; customer and quote wait {s['step_delay_ms']:.0f} ms each on a local server;",
        f"resuming saves {s['resume_saved_ms']:.0f} ms a run (median of the rounds' full - resume): both earlier steps reused, not called;",
        f"{s['samples']} rounds after {s['warmup_rounds']} warm-up, the order of the three rotating; each round's failed run took {s['failed_run_ms']:.0f} ms (not timed above)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.debug", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.rounds} rounds instead of {FULL.rounds}")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    began = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - began:5.1f}s] {msg}", file=sys.stderr, flush=True)

    measured = run_benchmark(counts, log)
    summary = summarize(measured)
    print(table(summary, measured))
    print(f"(took {time.monotonic() - began:.0f} s)")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
