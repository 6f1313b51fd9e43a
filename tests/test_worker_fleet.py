"""A fleet of worker processes on one Temporal dev server: 300 runs in flight, one worker killed
with SIGKILL while it holds requests open, another started. Every run completes and every run's
effect is applied once at the receiver, which applies each Idempotency-Key once however many
times it is delivered (activities run at least once: the killed worker's calls are sent again).

The workers are plain ``python -m floworch_server.worker`` processes started by the test, as a
cluster starts them (`benchmarks.scale.WorkerProcesses`, which the scale benchmark also uses);
the dev server comes from a `Supervisor` of the test's own data directory with no workers of
its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from benchmarks.scale import WorkerProcesses
from conftest import flow_doc, wait_until
from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor
from support.receiver import send_json, serve

RUNS = 300
WORKERS = 3
HELD_AT_KILL = 90  # deliveries the receiver holds open across the fleet when one worker is killed
# The node's policy: a killed worker stops heartbeating, so Temporal retries its calls after
# HEARTBEAT_SECONDS instead of waiting for the whole activity timeout. A live worker's beats reach
# the server every 0.8 x HEARTBEAT_SECONDS (the SDK throttles them); shorter than this, a loaded
# 2-core machine delays some past the timeout, and live calls are retried too.
HEARTBEAT_SECONDS = 15
POLICY = {
    "timeout_seconds": 60,
    "heartbeat_seconds": HEARTBEAT_SECONDS,
    "retry": {"initial_interval_seconds": 0.2, "backoff": 1, "max_attempts": 20},
}


class Ledger:
    """The receiver: records each delivery (key, attempt, the sender's TCP port) and applies each
    Idempotency-Key once on arrival, answering a repeated key with its first answer. Until
    `release()` every delivery is held open, so a worker killed meanwhile dies with its requests
    applied and unanswered: the lost-acknowledgement case at-least-once delivery retries."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []
        self.effects: dict[str, int] = {}  # key -> its application's number, 1..n in order
        self.holding: set[int] = set()  # client ports of the deliveries held open now
        self.lock = threading.Lock()
        self.released = threading.Event()
        ledger = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                key, port = self.headers.get("Idempotency-Key"), self.client_address[1]
                with ledger.lock:
                    ledger.deliveries.append(
                        {
                            "key": key,
                            "attempt": int(self.headers.get("X-Floworch-Attempt", 0)),
                            "port": port,
                            "body": body,
                        }
                    )
                    applied = ledger.effects.setdefault(key, len(ledger.effects) + 1)
                    ledger.holding.add(port)
                ledger.released.wait(120)
                with ledger.lock:
                    ledger.holding.discard(port)
                send_json(self, 200, {"applied": applied})

            def log_message(self, *args):
                pass

        self.server, base = serve(Handler, crowded=True)  # 300 runs' calls at once; a killed worker's die
        self.port = self.server.server_address[1]
        self.url = f"{base}/effects"

    def held(self) -> set[int]:
        with self.lock:
            return set(self.holding)

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def ports_towards(pid: int, remote_port: int) -> set[int]:
    """Local ports of process ``pid``'s open TCP connections to ``remote_port`` on loopback (/proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.fixture
def fleet(tmp_path):
    """Worker processes (none yet) against a dev server of the test's own, which runs no worker."""
    with Supervisor(Settings.from_env(data_dir=str(tmp_path / "fleet"), workers=0)) as supervisor:
        fleet = WorkerProcesses(supervisor, env={"FLOWORCH_HTTP_ALLOW": "127.0.0.1"})  # the receiver is on loopback
        try:
            yield fleet
        finally:
            fleet.stop()


@pytest.fixture
def ledger():
    ledger = Ledger()
    yield ledger
    ledger.close()


async def polling(service: FlowService, pids: list[int]) -> bool:
    """True when Temporal lists a poller of the activity queue for each of ``pids``."""
    workers = await service.workers([service.settings.task_queue])
    identities = set(workers[workers["type"] == "activity"]["identity"])
    return all(f"{pid}@{socket.gethostname()}" in identities for pid in pids)


async def test_a_worker_killed_with_runs_in_flight_loses_no_run_and_repeats_no_effect(fleet, ledger):
    service = await FlowService.connect(fleet.supervisor.settings)
    try:
        workers = [fleet.start() for _ in range(WORKERS)]
        await wait_until(lambda: polling(service, [w.pid for w in workers]), timeout=90, interval=0.5)
        doc = flow_doc(
            [
                {"id": "start", "type": "trigger.manual"},
                {
                    "id": "post",
                    "type": "action.http",
                    "config": {"method": "POST", "url": ledger.url, "json": {"n": "{{ input.n }}"}},
                    "policy": POLICY,
                },
            ],
            [("start", "post")],
        )
        flow = service.create_workflow(doc, by="tester")["id"]
        await service.publish(flow, note="fleet", by="tester")

        run_ids = [
            r["run_id"]
            for r in await asyncio.gather(*(service.start_run(flow, input={"n": n}, by="tester") for n in range(RUNS)))
        ]

        # Kill the worker holding the most requests open once the fleet holds HELD_AT_KILL.
        await wait_until(lambda: _ready(len(ledger.held()) >= HELD_AT_KILL), timeout=90)
        held = ledger.held()
        victim = max(workers, key=lambda w: len(ports_towards(w.pid, ledger.port) & held))
        victim_ports = ports_towards(victim.pid, ledger.port) & held
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        replacement = fleet.start()
        ledger.release()

        results = await asyncio.gather(
            *(asyncio.wait_for(service.handle(r).result(), 120) for r in run_ids), return_exceptions=True
        )
        runs = await asyncio.gather(*(service.get_run(r, with_nodes=False) for r in run_ids))
    finally:
        service.store.close()

    with ledger.lock:
        deliveries = list(ledger.deliveries)
        effects = dict(ledger.effects)
    per_key = Counter(d["key"] for d in deliveries)
    victim_keys = {d["key"] for d in deliveries if d["port"] in victim_ports}
    print(
        f"\n{RUNS} runs, {len(deliveries)} deliveries, {len(effects)} effects; the killed worker held {len(victim_keys)} "
        f"requests open; {sum(1 for n in per_key.values() if n > 1)} keys delivered more than once"
    )

    failed = [(r["run_id"], r["status"], r.get("error")) for r in runs if r["status"] != "success"]
    assert not failed, f"{len(failed)} runs did not complete: {failed[:3]}"
    assert not [x for x in results if isinstance(x, BaseException)]
    # Each run's effect was applied exactly once: one key per run, the run's own, none twice.
    assert sorted(effects) == sorted(f"{r}:post" for r in run_ids)
    # Each run got its effect's answer, including runs whose first call died with the worker.
    assert [res["outputs"]["post"]["body"]["applied"] for res in results] == [effects[f"{r}:post"] for r in run_ids]
    # The kill hit work in flight: every call the killed worker held open was delivered again,
    # by another worker, with the same key and a later attempt number.
    assert victim_keys, "the killed worker held no request open"
    assert all(any(d["key"] == k and d["attempt"] > 1 for d in deliveries) for k in victim_keys)
    assert len(deliveries) >= RUNS + len(victim_keys)
    assert replacement.poll() is None


async def _ready(value):
    return value
