"""The collaboration benchmark: how fast an edit travels between a kernel and other editors.

    python -m benchmarks.collab [--quick]

A real `jupyter server` (subprocess, temporary root directory and token) serves one `.flow`
file, measured twice in one run:

- "product": the server as `make run` starts it, with FlowOrchestrator's extension (its services
  from a `Supervisor` with no workers: an embedded Temporal dev server) beside
  jupyter-collaboration; this is the figure the target is about;
- "collaboration only": jupyter-collaboration with its defaults and nothing of ours, the
  baseline the product's server is compared with.

Five editors join its room at once:

- the kernel: a live `floworch.Flow` (`Flow.open` finds the server through its jpserver-*.json
  and joins on the kernel's private loop thread), editing with `flow.update` from the main
  thread as a notebook cell does;
- four other clients (`floworch.collab.RoomClient`), each on an event loop thread of its own,
  standing in for canvases.

All five edit concurrently, each at a steady pace with jitter, each writing its own config
field of one shared node (so every update lands on the same node map). An edit's delay is
the time from just before the editor's write to the moment another editor's document
integrates it (observed inside the update's transaction). Reported per server and direction:
kernel -> client, client -> kernel, and client -> client, as p50 / p99 / max.

The last stdout line is one JSON object; ``p50_ms`` / ``p99_ms`` cover both kernel
directions on the product's server (``baseline_*`` the same on collaboration only). Target,
reported and never asserted: p99 <= 50 ms. Every editor lives in this one process (separate
threads, one GIL), which is a harder setting than browsers on separate machines, not an
easier one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

from floworch_server.flowdoc import dumps

TARGET_P99_MS = 50.0
EDITORS = 5  # the kernel and four others
FLOW_NAME = "bench.flow"
HOT = "hot"  # the node every editor writes to
KERNEL = "kernel"


@dataclass(frozen=True)
class Counts:
    updates: int  # in total, spread evenly over the editors
    interval: float  # seconds between one editor's updates (mean; jittered +-50 %)


FULL = Counts(updates=1000, interval=0.02)
QUICK = Counts(updates=200, interval=0.02)


# ---------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def jupyter_server(
    workdir: Path, *, floworch: bool = False, env: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """A `jupyter server` with real-time collaboration; yields its connection info.

    ``floworch=True`` loads FlowOrchestrator's extension too (give it a data directory whose
    services already run, through ``env``, or it starts its own)."""
    root, runtime = workdir / "root", workdir / "runtime"
    root.mkdir()
    runtime.mkdir()
    port, token = _free_port(), os.urandom(12).hex()
    config = {
        "ServerApp": {
            "ip": "127.0.0.1",
            "port": port,
            "port_retries": 0,
            "open_browser": False,
            "allow_root": True,
            "root_dir": str(root),
            # FlowOrchestrator's own extension would start Temporal: not what is measured here.
            "jpserver_extensions": {
                "floworch_ext": floworch,
                "jupyter_server_ydoc": True,
                "jupyter_server_fileid": True,
            },
        },
        "IdentityProvider": {"token": token},
        "SQLiteYStore": {"db_path": str(workdir / "ystore.db")},
        "BaseFileIdManager": {"db_path": str(workdir / "fileid.db")},
        "YDocExtension": {"session_store_path": str(workdir / "sessions.json")},
    }
    (workdir / "config.json").write_text(json.dumps(config))
    env = {**os.environ, **(env or {}), "JUPYTER_RUNTIME_DIR": str(runtime)}
    with open(workdir / "server.log", "wb") as log:  # the server writes to its own copy
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--config={workdir / 'config.json'}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter server exited with {process.returncode}; see {workdir / 'server.log'}")
            try:
                request = urllib.request.Request(url + "api/status", headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(request, timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("jupyter server did not answer within 60 s") from None
                time.sleep(0.1)
        yield {"url": url, "token": token, "root": root, "runtime": runtime}
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------- the editors
class LoopThread:
    """An event loop on a thread of its own: one per non-kernel editor."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Recorder:
    """Arrival times of other editors' writes, as each editor's document integrates them."""

    def __init__(self, editors: list[str]) -> None:
        self.sent: dict[tuple[str, int], float] = {}
        self.seen: dict[tuple[str, str, int], float] = {}
        self.last: dict[tuple[str, str], int] = defaultdict(lambda: -1)
        self.editors = editors
        self.lock = threading.Lock()

    def observer(self, reader: str):
        def on_change(events) -> None:
            now = time.perf_counter()
            for event in events:
                for key, change in (getattr(event, "keys", None) or {}).items():
                    if not key.startswith("by_") or key[3:] == reader:
                        continue
                    value = change.get("newValue")
                    if isinstance(value, dict) and "seq" in value:
                        writer, seq = key[3:], int(value["seq"])
                        with self.lock:
                            # One message can carry several writes of a field (a sync answer
                            # holds everything missed): the earlier ones arrived now too.
                            for earlier in range(self.last[(reader, writer)] + 1, seq + 1):
                                self.seen.setdefault((reader, writer, earlier), now)
                            self.last[(reader, writer)] = max(self.last[(reader, writer)], seq)

        return on_change

    def delays(self, direction: str) -> list[float]:
        out = []
        for (reader, writer, seq), at in self.seen.items():
            kind = _direction(writer, reader)
            if kind == direction and (writer, seq) in self.sent:
                out.append((at - self.sent[(writer, seq)]) * 1000)
        return out


def _direction(writer: str, reader: str) -> str:
    if writer == KERNEL:
        return "kernel_to_client"
    if reader == KERNEL:
        return "client_to_kernel"
    return "client_to_client"


def _write(editor: str, seq: int, recorder: Recorder, write) -> None:
    with recorder.lock:
        recorder.sent[(editor, seq)] = time.perf_counter()
    write({f"by_{editor}": {"seq": seq}})


def _drive(
    editor: str, count: int, interval: float, recorder: Recorder, write, start: threading.Event, seed: int
) -> None:
    rng = random.Random(seed)
    start.wait()
    next_at = time.perf_counter()
    for seq in range(count):
        _write(editor, seq, recorder, write)
        next_at += interval * rng.uniform(0.5, 1.5)
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)  # pacing of the load, not synchronisation


@contextmanager
def product_server(workdir: Path) -> Iterator[dict[str, Any]]:
    """The server as `make run` has it: FlowOrchestrator's extension loaded, its services up
    (a `Supervisor` with no workers). Its connection info also holds the services' ``settings``;
    this process sees the same data directory, as the server's kernels do."""
    from floworch_server.settings import Settings
    from floworch_server.supervisor import Supervisor

    settings = Settings(data_dir=str(workdir / "data"), workers=0)
    (workdir / "jupyter").mkdir()
    data_dir = {"FLOWORCH_DATA_DIR": settings.data_dir}
    with (
        patch.dict(os.environ, data_dir),
        Supervisor(settings),
        jupyter_server(workdir / "jupyter", floworch=True, env=data_dir) as info,
    ):
        yield {**info, "settings": settings}


SERVERS = {"product": product_server, "collaboration only": jupyter_server}


def measure(counts: Counts, server_kind: str = "product") -> dict[str, Any]:
    from floworch import Flow, collab

    workdir = Path(tempfile.mkdtemp(prefix="floworch-collab-bench-"))
    editors = [KERNEL] + [f"client{i}" for i in range(1, EDITORS)]
    per_editor = max(1, counts.updates // len(editors))
    recorder = Recorder(editors)
    loops: list[LoopThread] = []
    clients: list[Any] = []
    flow = None
    try:
        with SERVERS[server_kind](workdir) as info:
            nodes = [
                {"id": "start", "type": "trigger.manual", "label": "Start", "position": {"x": 0, "y": 0}, "config": {}}
            ]
            nodes.append(
                {
                    "id": HOT,
                    "type": "transform",
                    "label": "Hot",
                    "position": {"x": 220, "y": 0},
                    "config": {"output": 1},
                }
            )
            path = info["root"] / FLOW_NAME
            path.write_text(
                dumps({"version": 1, "meta": {"id": "bench", "name": "bench"}, "nodes": nodes, "edges": []})
            )

            # The kernel finds the server as a kernel does, through its jpserver-*.json.
            os.environ["JUPYTER_RUNTIME_DIR"] = str(info["runtime"])
            os.environ.pop("FLOWORCH_JUPYTER_URL", None)
            joined = time.perf_counter()
            flow = Flow.open(path, live=True)
            join_ms = (time.perf_counter() - joined) * 1000
            _observe(flow.room, recorder.observer(KERNEL))

            server = collab.find_server(path)
            if server is None:
                raise RuntimeError(f"no Jupyter server serves {path}")
            for name in editors[1:]:
                loop = LoopThread(f"editor-{name}")
                loops.append(loop)
                client = collab.RoomClient(server, FLOW_NAME, loop=loop.loop).start()
                client.wait_synced(30)
                _observe(client, recorder.observer(name))
                clients.append(client)

            def room_write(client):
                return lambda config: _locked_update(client, config)

            writers = {KERNEL: lambda config: flow.update(HOT, config=config)}
            writers.update({name: room_write(c) for name, c in zip(editors[1:], clients, strict=True)})

            start = threading.Event()
            threads = [
                threading.Thread(
                    target=_drive,
                    args=(name, per_editor, counts.interval, recorder, writers[name], start, i),
                    daemon=True,
                )
                for i, name in enumerate(editors)
                if name != KERNEL
            ]
            for t in threads:
                t.start()
            began = time.perf_counter()
            start.set()
            # The kernel edits from this (the "cell's") thread, while the others edit from theirs.
            _drive(KERNEL, per_editor, counts.interval, recorder, writers[KERNEL], start, 99)
            for t in threads:
                t.join()
            edit_seconds = time.perf_counter() - began

            everyone = [flow.room, *clients]
            for client in everyone:
                client.wait_synced(60)
            deadline = time.monotonic() + 60
            want = {(r, w): per_editor - 1 for r in editors for w in editors if r != w}
            while any(recorder.last[k] < v for k, v in want.items()):
                if time.monotonic() > deadline:
                    missing = {k: v for k, v in want.items() if recorder.last[k] < v}
                    raise TimeoutError(f"updates not seen within 60 s: {missing}")
                time.sleep(0.01)
            converged = len({c.text() for c in everyone}) == 1
    finally:
        for client in clients:
            client.close()
        if flow is not None:
            flow.close()
        for loop in loops:
            loop.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    return {
        "updates": per_editor * len(editors),
        "editors": len(editors),
        "edit_seconds": edit_seconds,
        "join_ms": join_ms,
        "converged": converged,
        "delays": {d: recorder.delays(d) for d in ("kernel_to_client", "client_to_kernel", "client_to_client")},
    }


def _locked_update(client, config: dict) -> None:
    with client.transaction() as shared:
        shared.update_node(HOT, config=config)


def _observe(client, callback) -> None:
    with client.transaction() as shared:
        shared.ynodes.observe_deep(callback)


# ---------------------------------------------------------------------- report
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))  # nearest rank
    return ordered[rank]


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """One server's figures: p50/p99 over both kernel directions, then each direction's."""
    delays = result["delays"]
    kernel = delays["kernel_to_client"] + delays["client_to_kernel"]
    summary: dict[str, Any] = {
        "p50_ms": round(percentile(kernel, 50), 3),
        "p99_ms": round(percentile(kernel, 99), 3),
    }
    for direction, values in delays.items():
        summary[f"{direction}_p50_ms"] = round(percentile(values, 50), 3)
        summary[f"{direction}_p99_ms"] = round(percentile(values, 99), 3)
        summary[f"{direction}_max_ms"] = round(max(values), 3) if values else None
        summary[f"{direction}_samples"] = len(values)
    summary.update(
        updates=result["updates"],
        editors=result["editors"],
        updates_per_second=round(result["updates"] / result["edit_seconds"], 1),
        join_ms=round(result["join_ms"], 1),
        converged=result["converged"],
    )
    return summary


def report(by_server: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The last line's object: the product's figures, then the baseline's with a prefix."""
    product, baseline = by_server["product"], by_server["collaboration only"]
    out = dict(product)
    out.update({f"baseline_{key}": value for key, value in baseline.items() if key.endswith("_ms")})
    out.update(
        baseline_converged=baseline["converged"],
        p99_ratio_to_baseline=round(product["p99_ms"] / baseline["p99_ms"], 3) if baseline["p99_ms"] else None,
        target_p99_ms=TARGET_P99_MS,
        meets_target=product["p99_ms"] <= TARGET_P99_MS,
    )
    return out


def table(by_server: dict[str, dict[str, Any]]) -> str:
    rows = [("server", "direction", "samples", "p50 ms", "p99 ms", "max ms")]
    for server, summary in by_server.items():
        for direction in ("kernel_to_client", "client_to_kernel", "client_to_client"):
            rows.append(
                (
                    server,
                    direction.replace("_", " "),
                    str(summary[f"{direction}_samples"]),
                    f"{summary[f'{direction}_p50_ms']:.2f}",
                    f"{summary[f'{direction}_p99_ms']:.2f}",
                    f"{summary[f'{direction}_max_ms']:.2f}",
                )
            )
        rows.append((server, "kernel, both ways", "", f"{summary['p50_ms']:.2f}", f"{summary['p99_ms']:.2f}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    product = by_server["product"]
    verdict = "meets" if product["p99_ms"] <= TARGET_P99_MS else "MISSES"
    lines.append("")
    for server, summary in by_server.items():
        lines.append(
            f"{server}: {summary['editors']} editors, {summary['updates']} updates at {summary['updates_per_second']}/s; "
            f"kernel joined in {summary['join_ms']} ms; converged: {summary['converged']}"
        )
    lines.append(f"product p99 {verdict} the {TARGET_P99_MS:.0f} ms target")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK.updates} updates per server instead of {FULL.updates}"
    )
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    by_server = {kind: summarize(measure(counts, kind)) for kind in SERVERS}
    print(table(by_server))
    print(json.dumps(report(by_server)))


if __name__ == "__main__":
    main()
