"""action.http with httpx against a small HTTP server in the test: output mapping, headers,
retryable and permanent failures, and the node's log lines in the store."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import finished, nodes_by_id

TRIGGER = {"id": "start", "type": "trigger.manual"}


@pytest.fixture
def api():
    """Answers by path: /ok echoes, /missing is 404, /flaky is 503 twice then 200."""
    seen: list[dict] = []
    counts: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
            seen.append(
                {
                    "path": self.path,
                    "body": body,
                    "auth": self.headers.get("Authorization"),
                    "key": self.headers.get("Idempotency-Key"),
                }
            )
            counts[self.path] = counts.get(self.path, 0) + 1
            if self.path == "/missing":
                return self._answer(404, {"error": "no such customer"})
            if self.path == "/flaky" and counts[self.path] <= 2:
                return self._answer(503, {"error": "busy"})
            self._answer(200, {"received": body})

        def _answer(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def http_node(url: str, **config) -> dict:
    return {
        "id": "call",
        "type": "action.http",
        "config": {"method": "POST", "url": url, **config},
        "policy": {"retry": {"initial_interval_seconds": 0.2, "backoff": 1}},
    }


async def test_the_response_becomes_the_output_and_references_reach_the_request(service, published, api):
    base, seen = api
    flow = await published(
        [
            TRIGGER,
            http_node(
                base + "/ok", json={"customer": "{{ input.id }}"}, headers={"Authorization": "Bearer {{ input.token }}"}
            ),
            {"id": "use", "type": "transform", "config": {"output": "{{ nodes.call.output.body.received.customer }}"}},
        ],
        [("start", "call"), ("call", "use")],
    )
    run = await finished(service, (await service.start_run(flow, input={"id": 7, "token": "t0k"}, by="t"))["run_id"])
    assert run["result"]["outputs"] == {"use": 7}
    assert seen == [{"path": "/ok", "body": {"customer": 7}, "auth": "Bearer t0k", "key": f"{run['run_id']}:call"}]
    logs = service.store.list_logs(run["run_id"])
    assert [(entry["node"], entry["level"], entry["message"]) for entry in logs] == [
        ("call", "info", f"POST {base}/ok -> 200")
    ]


async def test_a_4xx_answer_fails_the_node_at_once_with_the_status_and_message(service, published, api):
    base, seen = api
    flow = await published([TRIGGER, http_node(base + "/missing")], [("start", "call")])
    run = await finished(service, (await service.start_run(flow, by="t"))["run_id"])
    call = nodes_by_id(run)["call"]
    assert (run["status"], call["status"], call["attempts"]) == ("failed", "failed", 1)
    assert "answered 404 Not Found" in call["error"] and "no such customer" in call["error"]
    assert len(seen) == 1


async def test_a_503_answer_is_retried_until_it_succeeds(service, published, api):
    base, seen = api
    flow = await published([TRIGGER, http_node(base + "/flaky")], [("start", "call")])
    run = await finished(service, (await service.start_run(flow, by="t"))["run_id"])
    call = nodes_by_id(run)["call"]
    assert (run["status"], call["attempts"]) == ("success", 3)
    assert len({s["key"] for s in seen}) == 1 and len(seen) == 3


async def test_a_resolved_config_that_breaks_the_schema_fails_naming_the_field(service, published):
    flow = await published([TRIGGER, http_node("{{ input.url }}")], [("start", "call")])
    run = await finished(service, (await service.start_run(flow, input={"url": "ftp://example"}, by="t"))["run_id"])
    assert run["status"] == "failed"
    assert "config.url" in run["error"] and "after resolving references" in run["error"]
    assert nodes_by_id(run)["call"]["attempts"] == 1
