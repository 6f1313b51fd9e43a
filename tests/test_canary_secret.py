"""A canary secret: a recognizable token is stored as an integration's secret, real flows on the
session's Temporal use it (a Slack action against a local stand-in of Slack's API that checks
the token), one run succeeding and two failing; then the token is searched for, as bytes and in
base64, everywhere a deployment keeps or shows things: every file of the data directory (the
store's SQLite file, Temporal's SQLite file, every log, traces.jsonl), Temporal's history as the
API returns it, and what the service answers about the runs (result, nodes, trace, inspect,
errors, logs, audit). It must be found nowhere but on the wire to the provider.

Each place searched is also shown to hold something of the runs (a marker in the run input, the
run's spans), so an empty or unread place cannot make the test pass."""

from __future__ import annotations

import base64
import json
import math
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import finished, nodes_by_id, wait_until
from floworch_server import tracing
from floworch_server.integrations import Integrations
from floworch_server.settings import Settings

TRIGGER = {"id": "start", "type": "trigger.manual"}


def base64_forms(secret: bytes) -> list[bytes]:
    """The base64 (standard and URL-safe) text of ``secret`` at each of the three alignments it
    can have inside a longer encoded value, trimmed to the characters only it determines."""
    forms = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret)
        start, end = math.ceil(offset * 8 / 6), (offset + len(secret)) * 8 // 6
        forms += [encoded[start:end], encoded[start:end].replace(b"+", b"-").replace(b"/", b"_")]
    return list(dict.fromkeys(forms))


def hits(data: bytes, token: bytes) -> list[str]:
    found = ["raw"] if token in data else []
    return found + [f"base64 {form.decode()}" for form in base64_forms(token) if form in data]


class SlackStandIn:
    """chat.postMessage on 127.0.0.1: answers ok for any channel but C-GONE (channel_not_found)
    and C-REVOKED (invalid_auth), and records the Authorization header of every request."""

    def __init__(self) -> None:
        self.auth: list[str | None] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stand_in.auth.append(self.headers.get("Authorization"))
                errors = {"C-GONE": "channel_not_found", "C-REVOKED": "invalid_auth"}
                if body.get("channel") in errors:
                    answer: dict[str, Any] = {"ok": False, "error": errors[body["channel"]]}
                else:
                    answer = {"ok": True, "channel": body.get("channel"), "ts": "1700000000.000100"}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack():
    stand_in = SlackStandIn()
    yield stand_in
    stand_in.close()


def spans_of(traces: Path, trace_id: str) -> list[dict]:
    if not traces.exists():
        return []
    lines = (json.loads(line) for line in traces.read_text().splitlines() if line.strip())
    return [span for span in lines if span.get("trace_id") == trace_id]


async def test_a_canary_token_used_by_real_runs_is_nowhere_in_the_store_temporal_logs_traces_or_outputs(
    service, published, slack
):
    token = f"canary-{uuid.uuid4()}"
    marker = f"visible-{uuid.uuid4().hex}"  # goes into the run input: shows each place is read
    name = f"slack-canary-{uuid.uuid4().hex[:6]}"
    integrations = Integrations.from_settings(Settings.from_env(), store=service.store)
    integrations.add(name, "slack", {"access_token": token}, by="tester", settings={"base_url": slack.url + "/api"})
    node = {
        "id": "call",
        "type": "action.slack",
        "config": {"integration": name, "channel": "{{ input.channel }}", "text": "{{ input.marker }}"},
        "policy": {"retry": {"initial_interval_seconds": 0.2, "backoff": 1}},
    }
    flow = await published([TRIGGER, node], [("start", "call")])

    runs = {}
    for channel in ("C-OK", "C-GONE", "C-REVOKED"):
        started = await service.start_run(flow, input={"channel": channel, "marker": marker}, by="tester")
        runs[channel] = await finished(service, started["run_id"])
    assert [(r["status"], nodes_by_id(r)["call"]["status"]) for r in runs.values()] == [
        ("success", "success"),
        ("failed", "failed"),
        ("failed", "failed"),
    ]
    assert "channel_not_found" in nodes_by_id(runs["C-GONE"])["call"]["error"]
    assert f"integration '{name}' was refused by Slack: invalid_auth" in nodes_by_id(runs["C-REVOKED"])["call"]["error"]
    # The token did reach the provider, on every run: the activity really used it.
    assert slack.auth == [f"Bearer {token}"] * 3

    # What the service shows about the runs: results, nodes, errors, traces, inspections, logs.
    shown: dict[str, Any] = {}
    for channel, run in runs.items():
        run_id = run["run_id"]
        history = await service.client.get_workflow_handle(run_id).fetch_history()
        shown[channel] = {
            "run": await service.get_run(run_id),
            "trace": await service.trace(run_id),
            "inspect": await service.inspect(run_id, "call"),
            "error": await service.error(run_id),
            "logs": service.store.list_logs(run_id),
            "history": history.to_json(),
        }
    shown["runs"] = await service.list_runs(flow)
    shown["integrations"] = integrations.list()
    shown["audit"] = service.store.list_audit(limit=50)
    answers = json.dumps(shown, default=str).encode()
    # Control: the input is in the answers, and in the history (whose payloads are base64 there).
    assert marker.encode() in answers and hits(shown["C-OK"]["history"].encode(), marker.encode())
    assert hits(answers, token.encode()) == []

    # The worker's spans of every run are written out before the files are read.
    tracing.flush()
    settings = Settings.from_env()

    async def traced():
        return all(
            any(s["name"] == "RunActivity:action.slack" for s in spans_of(settings.traces_file, run["trace_id"]))
            for run in runs.values()
        )

    await wait_until(traced, timeout=60, interval=0.2)

    files = {path: path.read_bytes() for path in sorted(settings.data_path.rglob("*")) if path.is_file()}
    names = {path.name for path in files}
    assert {"floworch.db", "temporal.db", "traces.jsonl", "temporal.log", "supervisor.log"} <= names, names
    assert any(n.startswith("worker-") and n.endswith(".log") for n in names), names
    found = {str(path): hits(data, token.encode()) for path, data in files.items()}
    assert {path: where for path, where in found.items() if where} == {}
    # Control: the run input is in Temporal's and the store's SQLite files, as they were read.
    for database in ("temporal.db", "floworch.db"):
        copies = b"".join(data for path, data in files.items() if path.name.startswith(database))
        assert hits(copies, marker.encode()), (
            f"{database}: the run input was not found, so the search did not see the runs"
        )
