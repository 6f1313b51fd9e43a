"""The run log WebSocket: backlog then live records, in order, and a reconnect with a cursor
that loses nothing and repeats nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

import pytest
from tornado.httpclient import HTTPClientError
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def jp_server_config():
    return Config({"ServerApp": {"jpserver_extensions": {"floworch_ext": True}}})


async def receive(ws, count: int) -> list[dict]:
    out: list[dict] = []
    for _ in range(count):
        message = await asyncio.wait_for(ws.read_message(), 10)
        assert message is not None, f"socket closed after {out}"
        out.append(json.loads(message))
    return out


def a_run(service) -> str:
    run_id = f"run-logs-{uuid.uuid4().hex}"
    service.store.upsert_run({"run_id": run_id, "status": "running", "start_time": datetime.now(UTC)})
    return run_id


async def test_the_backlog_then_live_lines_arrive_in_order_and_a_reconnect_has_no_gap(service, jp_ws_fetch):
    store = service.store
    run_id = a_run(service)
    for i in range(3):
        store.add_log(run_id, "fetch", "info", f"early {i}")

    ws = await jp_ws_fetch("floworch", "api", "runs", run_id, "logs")
    backlog = await receive(ws, 3)
    assert [m["record"]["message"] for m in backlog] == ["early 0", "early 1", "early 2"]

    for i in range(3):
        store.add_log(run_id, "fetch", "info", f"live {i}")
    live = await receive(ws, 3)
    assert [m["record"]["message"] for m in live] == ["live 0", "live 1", "live 2"]
    cursor = live[-1]["record"]["id"]
    ws.close()

    # Lines written while nobody listens are delivered on reconnect, once.
    store.add_log(run_id, "save", "warning", "while away 0")
    store.add_log(run_id, "save", "error", "while away 1")
    again = await jp_ws_fetch("floworch", "api", "runs", run_id, "logs", params={"after": cursor})
    resumed = await receive(again, 2)
    assert [(m["record"]["node"], m["record"]["level"], m["record"]["message"]) for m in resumed] == [
        ("save", "warning", "while away 0"),
        ("save", "error", "while away 1"),
    ]
    ids = [m["record"]["id"] for m in backlog + live + resumed]
    assert ids == sorted(ids) and len(set(ids)) == 8

    # When the run has ended and every line is out, the server says so and closes.
    store.upsert_run({"run_id": run_id, "status": "success", "end_time": datetime.now(UTC)})
    [end] = await receive(again, 1)
    assert end == {"type": "end", "after": ids[-1], "status": "success"}
    assert await asyncio.wait_for(again.read_message(), 10) is None


async def test_the_log_socket_needs_jupyter_authentication(service, jp_ws_fetch):
    with pytest.raises(HTTPClientError) as refused:
        await jp_ws_fetch("floworch", "api", "runs", a_run(service), "logs", headers={"Authorization": ""})
    assert refused.value.code == 403
