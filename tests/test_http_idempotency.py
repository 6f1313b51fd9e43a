"""action.http's Idempotency-Key on real runs: writes carry `<run id>:<node id>`, the same on every
attempt of the node in one run, so a receiver that applies each key once applies the effect once
however often the activity is delivered; reads carry none; a key the flow sets itself is sent
instead. The receiver is a small HTTP server in the test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import finished, nodes_by_id
from support.receiver import send_json, serve

TRIGGER = {"id": "start", "type": "trigger.manual"}
FAST_RETRY = {"retry": {"initial_interval_seconds": 0.2, "backoff": 1}}


class Ledger:
    """A receiver that records every delivery and applies each Idempotency-Key once, answering a
    repeated key with the first answer, as payment APIs do. ``/busy`` answers 503 to the first
    delivery of each key (after applying it: the answer is lost, not the effect)."""

    def __init__(self) -> None:
        self.deliveries: list[dict] = []
        self.effects: dict[str, dict] = {}  # key -> the answer its one application gave
        self.lock = threading.Lock()
        ledger = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length)) if length else None
                keys = self.headers.get_all("Idempotency-Key") or []
                with ledger.lock:
                    ledger.deliveries.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "keys": keys,
                            "attempt": self.headers.get("X-Floworch-Attempt"),
                            "body": body,
                        }
                    )
                    first = bool(keys) and keys[0] not in ledger.effects
                    if first:
                        ledger.effects[keys[0]] = {"applied": len(ledger.effects) + 1, "body": body}
                    answer = ledger.effects[keys[0]] if keys else {"applied": None}
                if self.path == "/busy" and first:
                    return send_json(self, 503, {"error": "try again"})
                if self.command == "HEAD":
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                send_json(self, 200, answer)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def log_message(self, *args):
                pass

        self.server, self.base = serve(Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ledger():
    ledger = Ledger()
    yield ledger
    ledger.close()


def http_node(node_id: str, url: str, method: str = "POST", **config) -> dict:
    return {
        "id": node_id,
        "type": "action.http",
        "config": {"method": method, "url": url, **config},
        "policy": FAST_RETRY,
    }


async def run_of(service, flow: str, input=None) -> dict:
    run = await finished(service, (await service.start_run(flow, input=input, by="t"))["run_id"])
    assert run["status"] == "success", run.get("error")
    return run


async def test_a_retried_write_carries_the_same_key_and_is_applied_once(service, published, ledger):
    flow = await published(
        [TRIGGER, http_node("charge", ledger.base + "/busy", json={"cents": "{{ input.cents }}"})],
        [("start", "charge")],
    )

    run = await run_of(service, flow, {"cents": 500})

    key = f"{run['run_id']}:charge"
    # Attempt 1 was applied but its answer was a 503; attempt 2 carried the same key and got the
    # first application's answer back instead of a second charge.
    assert [(d["keys"], d["attempt"]) for d in ledger.deliveries] == [([key], "1"), ([key], "2")]
    assert nodes_by_id(run)["charge"]["attempts"] == 2
    assert ledger.effects == {key: {"applied": 1, "body": {"cents": 500}}}
    assert run["result"]["outputs"]["charge"]["body"] == {"applied": 1, "body": {"cents": 500}}


async def test_each_run_and_each_node_has_its_own_key(service, published, ledger):
    flow = await published(
        [TRIGGER, http_node("reserve", ledger.base + "/stock"), http_node("charge", ledger.base + "/pay")],
        [("start", "reserve"), ("reserve", "charge")],
    )

    first = await run_of(service, flow)
    second = await run_of(service, flow)

    assert sorted(ledger.effects) == sorted(
        f"{run['run_id']}:{node}" for run in (first, second) for node in ("reserve", "charge")
    )
    assert len(ledger.deliveries) == 4


async def test_writes_carry_the_key_and_reads_do_not(service, published, ledger):
    methods = ["POST", "PUT", "PATCH", "DELETE", "GET", "HEAD"]
    flow = await published(
        [TRIGGER, *(http_node(m.lower(), f"{ledger.base}/{m.lower()}", m) for m in methods)],
        [("start", m.lower()) for m in methods],
    )

    run = await run_of(service, flow)

    keys = {d["method"]: d["keys"] for d in ledger.deliveries}
    assert keys == {
        **{m: [f"{run['run_id']}:{m.lower()}"] for m in ("POST", "PUT", "PATCH", "DELETE")},
        "GET": [],
        "HEAD": [],
    }
    # Every request says which attempt it is, reads included.
    assert {d["attempt"] for d in ledger.deliveries} == {"1"}


@pytest.mark.parametrize("name", ["Idempotency-Key", "idempotency-key"])
async def test_a_key_set_in_the_headers_is_sent_instead_of_the_runs(service, published, ledger, name):
    flow = await published(
        [TRIGGER, http_node("charge", ledger.base + "/busy", headers={name: "order-{{ input.order }}"})],
        [("start", "charge")],
    )

    run = await run_of(service, flow, {"order": 42})

    # One header, the flow's value, on both attempts (not the flow's and the run's side by side).
    assert [d["keys"] for d in ledger.deliveries] == [["order-42"], ["order-42"]]
    assert list(ledger.effects) == ["order-42"]
    assert run["result"]["outputs"]["charge"]["body"]["applied"] == 1


async def test_each_iteration_of_a_loop_has_its_own_key(service, published, ledger):
    flow = await published(
        [
            TRIGGER,
            {"id": "each", "type": "control.for_each", "config": {"items": "input.orders"}},
            http_node("charge", ledger.base + "/pay", json={"order": "{{ item }}"}),
        ],
        [
            ("start", "each"),
            ("each", "item", "charge"),
            {"id": "back", "source": "charge", "target": "each", "targetHandle": "loop"},
        ],
    )

    run = await run_of(service, flow, {"orders": ["a", "b", "c"]})

    assert {key: effect["body"]["order"] for key, effect in ledger.effects.items()} == {
        f"{run['run_id']}:charge#0": "a",
        f"{run['run_id']}:charge#1": "b",
        f"{run['run_id']}:charge#2": "c",
    }
