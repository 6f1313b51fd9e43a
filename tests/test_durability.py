"""Durability on the real embedded services: a worker killed with SIGKILL mid-activity and the
Temporal server restarted mid-run. Runs go on and finish; nothing stored is lost."""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import finished, nodes_by_id, wait_until

TRIGGER = {"id": "start", "type": "trigger.manual"}


class Receiver:
    """A local HTTP server that records deliveries; the first one hangs until released."""

    def __init__(self):
        self.requests: list[dict] = []
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {
                        "key": self.headers.get("Idempotency-Key"),
                        "attempt": self.headers.get("X-Floworch-Attempt"),
                        "body": json.loads(body),
                    }
                )
                if len(receiver.requests) == 1:
                    receiver.first_arrived.set()
                    receiver.release.wait(30)  # the worker dies while we hold the request
                    return
                data = json.dumps({"stored": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


async def test_a_worker_killed_mid_activity_is_restarted_and_the_run_completes(
    service, published, supervisor, receiver
):
    flow = await published(
        [
            TRIGGER,
            {
                "id": "post",
                "type": "action.http",
                "config": {"method": "POST", "url": receiver.url, "json": {"order": "{{ input.order }}"}},
                "policy": {"heartbeat_seconds": 2, "retry": {"initial_interval_seconds": 0.5}},
            },
            {"id": "done", "type": "transform", "config": {"output": "{{ nodes.post.output.body }}"}},
        ],
        [("start", "post"), ("post", "done")],
    )
    runs_before = service.store.list_runs(limit=1000)
    run_id = (await service.start_run(flow, input={"order": 42}, by="t"))["run_id"]
    assert await wait_until(lambda: _async(receiver.first_arrived.is_set()), timeout=30)

    [old_pid] = supervisor.worker_pids()
    restarts = supervisor.restarts
    os.kill(old_pid, signal.SIGKILL)
    await wait_until(
        lambda: _async(supervisor.restarts > restarts and supervisor.worker_pids()[0] not in (None, old_pid)),
        timeout=30,
    )
    receiver.release.set()

    run = await finished(service, run_id, timeout=90)
    assert run["status"] == "success", run.get("error")
    assert run["result"]["outputs"] == {"done": {"stored": True}}
    assert nodes_by_id(run)["post"]["attempts"] == 2
    # The activity was delivered twice, with the same idempotency key, attempt 1 then 2.
    assert [(r["key"], r["attempt"]) for r in receiver.requests] == [(f"{run_id}:post", "1"), (f"{run_id}:post", "2")]
    assert all(r["body"] == {"order": 42} for r in receiver.requests)
    # Nothing stored was lost: every earlier run record, the flow and its version are intact.
    after = {r["run_id"]: r for r in service.store.list_runs(limit=1000)}
    assert all(r["run_id"] in after for r in runs_before)
    assert service.get_version(flow, 1)["plan_hash"]


async def test_a_run_resumes_after_the_temporal_server_restarts(service, published, supervisor):
    flow = await published(
        [
            TRIGGER,
            {"id": "wait", "type": "control.delay", "config": {"seconds": 3}},
            {"id": "after", "type": "transform", "config": {"output": "{{ input.n }}"}},
        ],
        [("start", "wait"), ("wait", "after")],
    )
    run_id = (await service.start_run(flow, input={"n": 5}, by="t"))["run_id"]

    async def waiting():
        run = await service.get_run(run_id)
        return nodes_by_id(run)["wait"]["status"] == "waiting"

    await wait_until(waiting)
    await _in_thread(supervisor.restart_temporal)
    run = await finished(service, run_id, timeout=90)
    assert run["status"] == "success"
    assert run["result"]["outputs"] == {"after": 5}


async def _async(value):
    return value


async def _in_thread(fn):
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, fn)
