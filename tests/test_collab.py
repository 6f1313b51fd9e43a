"""Real-time collaboration on `.flow` files, through a real Jupyter server with jupyter-collaboration.

Python room clients (`floworch.collab.RoomClient`, what a kernel uses) stand in for canvases:
they speak the same y-websocket protocol to the same room ``text:flow:<fileId>`` and edit the
same layout (`floworch_ext.ydoc.YFlow`). Every wait is for a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from floworch import Flow, collab
from floworch_ext.ydoc import FlowTextError, YFlow
from floworch_server.flowdoc import dumps

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(60)

FLOW_PATH = "team/orders.flow"
ORDERS = {
    "version": 1,
    "meta": {"id": "5b6e9c1e-1f0a-4d0e-9a57-3f4f2b8e7d10", "name": "orders", "description": "Cafés, crêpes & co."},
    "nodes": [
        # Not in id order: the file's order must survive the room.
        {
            "id": "start",
            "type": "trigger.manual",
            "label": "Start",
            "position": {"x": 0, "y": -40},
            "config": {"example": {"amount": 12, "ratio": 0.25, "tags": ["a", "b"], "ok": True, "none": None}},
        },
        {
            "id": "check",
            "type": "control.if",
            "label": "Big?",
            "position": {"x": 240.5, "y": 0},
            "config": {"condition": "input.amount > 100"},
            "policy": {"retry": {"max_attempts": 3, "backoff": 1.5}, "timeout_seconds": 30},
        },
        {
            "id": "approve",
            "type": "transform",
            "label": "",
            "position": {"x": 480, "y": 0},
            "config": {"output": "{{ input }}"},
        },
    ],
    "edges": [
        {"id": "e2", "source": "check", "sourceHandle": "true", "target": "approve"},
        {"id": "e1", "source": "start", "target": "check", "targetHandle": None},
    ],
}
ORDERS_TEXT = dumps(ORDERS)


# ---------------------------------------------------------------------- server and clients
@pytest.fixture
def jp_server_config(tmp_path):
    return Config(
        {
            "ServerApp": {
                "jpserver_extensions": {
                    "jupyter_server_ydoc": True,
                    "jupyter_server_fileid": True,
                    "floworch_ext": True,
                },
            },
            "SQLiteYStore": {"db_path": str(tmp_path / "ystore.db")},
            "BaseFileIdManager": {"db_path": str(tmp_path / "fileid.db")},
            "YDocExtension": {
                "document_save_delay": 1,  # the default: saved 1 s after the last change
                "file_poll_interval": 0.1,  # changes on disk reach the room within 0.1 s
                "session_store_path": str(tmp_path / "sessions.json"),
            },
        }
    )


@pytest.fixture
def flow_file(jp_root_dir) -> Path:
    path = jp_root_dir / FLOW_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ORDERS_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def server(jp_serverapp, http_server) -> collab.Server:
    # pytest-jupyter's server app listens once its `http_server` fixture is up.
    return collab.Server.from_info(jp_serverapp.server_info())


@pytest.fixture
async def join(server, flow_file):
    """``await join()`` -> a room client of the flow file, synced; all are closed afterwards."""
    clients: list[collab.RoomClient] = []

    async def make(path: str = FLOW_PATH) -> collab.RoomClient:
        client = collab.RoomClient(server, path).start()
        clients.append(client)
        await client.wait_synced_async(timeout=15)
        return client

    yield make
    await asyncio.gather(*(c.aclose() for c in clients))


async def eventually(check: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout}s; last value: {last!r}")


def node(client: collab.RoomClient, node_id: str) -> dict | None:
    return next((n for n in client.read()["nodes"] if n["id"] == node_id), None)


def on_disk(path: Path) -> dict | None:
    """The file's flow, or None while the server is half-way through writing it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def edit(client: collab.RoomClient, fn: Callable[[YFlow], Any]) -> Any:
    with client.transaction() as shared:
        return fn(shared)


# ---------------------------------------------------------------------- the document type
def test_the_flow_type_is_registered_with_jupyter_ydoc():
    from jupyter_ydoc import ydocs

    assert ydocs["flow"] is YFlow


def test_file_text_becomes_the_layout_and_back_unchanged():
    doc = YFlow()
    doc.set(ORDERS_TEXT)

    assert doc.get() == ORDERS_TEXT
    check = doc.ynodes["check"]
    assert check["config"]["condition"] == "input.amount > 100"  # config is a map of fields
    assert dict(check["position"]) == {"x": 240.5, "y": 0}  # positions are replaced whole
    assert [n["id"] for n in doc.to_data()["nodes"]] == ["start", "check", "approve"]


def test_integral_numbers_are_saved_as_integers_and_others_as_floats():
    doc = YFlow()
    doc.set(ORDERS_TEXT)
    doc.update_node("approve", config={"limit": 100.0, "share": 0.5, "big": 2**40})

    saved = json.loads(doc.get())["nodes"][2]["config"]
    assert saved == {"output": "{{ input }}", "limit": 100, "share": 0.5, "big": 2**40}
    assert type(saved["limit"]) is int and type(saved["share"]) is float
    assert '"amount": 12,' in doc.get()


def test_loading_the_same_text_again_changes_nothing():
    doc = YFlow()
    doc.set(ORDERS_TEXT)
    updates = []
    doc.ydoc.observe(lambda event: updates.append(event.update))

    doc.set(json.dumps(ORDERS))  # same flow, other spelling
    assert updates == []


def test_invalid_json_is_refused_naming_the_line_and_the_document_keeps_its_content():
    doc = YFlow()
    doc.set(ORDERS_TEXT)
    broken = ORDERS_TEXT.replace('"name": "orders"', '"name": "orders",,')

    with pytest.raises(FlowTextError) as error:
        doc.set(broken)
    assert error.value.line == broken.splitlines().index('    "name": "orders",,') + 1
    assert f"line {error.value.line}" in str(error.value)
    assert doc.get() == ORDERS_TEXT

    for text, words in [
        ('{"version": 2, "nodes": [], "edges": []}', "format version 2"),
        ('{"version": 1, "nodes": [{"type": "transform"}], "edges": []}', r"nodes\[0\] needs a string id"),
        ('{"version": 1, "nodes": [{"id": "a"}, {"id": "a"}], "edges": []}', "'a'"),
    ]:
        with pytest.raises(FlowTextError, match=words):
            doc.set(text)
    assert doc.get() == ORDERS_TEXT


# ---------------------------------------------------------------------- through the server
async def test_a_flow_file_round_trips_through_its_room_byte_for_byte(join, flow_file):
    client = await join()
    assert client.text() == ORDERS_TEXT
    before = flow_file.stat().st_mtime_ns
    saved_hash = edit(client, lambda d: d.hash)

    # An edit and its undo: the server saves (1 s after the last change) what it started from.
    started = time.monotonic()
    edit(client, lambda d: d.update_node("check", label="Large order?"))
    edit(client, lambda d: d.update_node("check", label="Big?"))
    # The server announces a finished save in the room's state: the file's new hash.
    await eventually(lambda: edit(client, lambda d: d.hash) != saved_hash, what="the server saved the file")

    assert time.monotonic() - started >= 0.9  # saved a second after the last change, not at each
    assert flow_file.stat().st_mtime_ns != before
    assert flow_file.read_text(encoding="utf-8") == ORDERS_TEXT
    assert edit(client, lambda d: d.dirty) is False


async def test_an_edit_by_one_client_is_seen_by_another_and_back(join):
    ada, bob = await join(), await join()

    edit(ada, lambda d: d.update_node("approve", label="Approve", config={"output": {"ok": True}}))
    await eventually(lambda: (node(bob, "approve") or {}).get("label") == "Approve", what="bob sees ada's edit")
    assert node(bob, "approve")["config"] == {"output": {"ok": True}}

    edit(bob, lambda d: d.add_node({"id": "notify", "type": "transform", "config": {"output": "sent"}}))
    edit(bob, lambda d: d.add_edge({"id": "e3", "source": "approve", "target": "notify"}))
    await eventually(
        lambda: node(ada, "notify") is not None and "e3" in ada.document.yedges, what="ada sees bob's node and edge"
    )
    # What a client receives is never sent back: ada's only update is her own edit.
    assert (ada.local_updates, bob.local_updates) == (1, 2)

    await ada.wait_synced_async()
    await bob.wait_synced_async()
    assert ada.text() == bob.text()
    assert ada.pending == bob.pending == 0


async def test_a_live_flow_edits_the_room_and_the_file_follows(join, jp_root_dir, flow_file, monkeypatch):
    # The kernel finds the server as a kernel does: its jpserver-*.json, the server being its parent.
    monkeypatch.delenv("FLOWORCH_JUPYTER_URL", raising=False)
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))
    canvas = await join()
    flow = await asyncio.to_thread(Flow.open, flow_file)
    try:
        assert flow.live and flow.name == "orders" and [n["id"] for n in flow.nodes] == ["start", "check", "approve"]

        node_id = flow.add_node("transform", config={"output": "{{ nodes.approve.output }}"}, label="Log")
        flow.connect("approve", node_id)
        flow.update("check", config={"condition": "input.amount > 500"})

        await eventually(lambda: node(canvas, node_id) is not None, what="the canvas sees the kernel's node")
        await eventually(
            lambda: (node(canvas, "check") or {}).get("config", {}).get("condition") == "input.amount > 500",
            what="config edit",
        )
        assert node(canvas, node_id)["position"] == {"x": 700, "y": 0}  # placed after the last node

        def saved() -> dict | None:
            data = on_disk(flow_file)
            return data if data and any(n["id"] == node_id for n in data["nodes"]) and len(data["edges"]) == 3 else None

        saved_flow = await eventually(saved, what="the file holds the kernel's node")
        assert flow_file.read_text(encoding="utf-8") == dumps(saved_flow)

        # And the other way: what the canvas does, the kernel reads (also while a cell runs).
        edit(canvas, lambda d: d.update_node(node_id, label="Audit log"))
        await eventually(
            lambda: next(n for n in flow.nodes if n["id"] == node_id)["label"] == "Audit log",
            what="the kernel sees the canvas edit",
        )
        assert flow.validate() == []
        flow.remove(node_id)
        await eventually(
            lambda: node(canvas, node_id) is None and len(canvas.read()["edges"]) == 2,
            what="removal reaches the canvas",
        )
    finally:
        await flow.room.aclose()


def test_a_flow_is_edited_in_its_file_when_no_server_collaborates(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWORCH_JUPYTER_URL", "off")
    path = tmp_path / "solo.flow"
    path.write_text(ORDERS_TEXT, encoding="utf-8")

    flow = Flow.open(path)
    assert not flow.live
    flow.update("approve", label="Approve")
    assert json.loads(path.read_text())["nodes"][2]["label"] == "Approve"
    with pytest.raises(collab.CollaborationUnavailable):
        Flow.open(path, live=True)


async def test_the_kernel_finds_the_server_serving_a_file(
    server, jp_serverapp, jp_root_dir, flow_file, tmp_path, monkeypatch
):
    monkeypatch.delenv("FLOWORCH_JUPYTER_URL", raising=False)
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))

    assert collab.find_server(flow_file) == server
    assert server.contents_path(flow_file) == FLOW_PATH
    assert collab.find_server(tmp_path / "elsewhere.flow") is None

    monkeypatch.setenv("FLOWORCH_JUPYTER_URL", "http://example.invalid:8888/lab-base/")
    monkeypatch.setenv("FLOWORCH_JUPYTER_TOKEN", "t0k")
    explicit = collab.find_server(flow_file)
    assert explicit.url == "http://example.invalid:8888/lab-base/" and explicit.headers() == {
        "Authorization": "token t0k"
    }
    assert explicit.ws("api/collaboration/room/x") == "ws://example.invalid:8888/lab-base/api/collaboration/room/x"


async def test_a_change_written_to_the_file_reaches_connected_clients(join, flow_file):
    ada, bob = await join(), await join()
    changed = json.loads(ORDERS_TEXT)
    changed["meta"]["name"] = "orders (edited on disk)"
    changed["nodes"][1]["config"]["condition"] = "input.amount > 1000"
    del changed["nodes"][2]
    changed["edges"] = [e for e in changed["edges"] if e["target"] != "approve"]
    text = dumps(changed)

    flow_file.write_text(text, encoding="utf-8")

    for client in (ada, bob):
        await eventually(lambda c=client: c.text() == text, what="the change on disk reached the client")

    # A file that is not JSON leaves the room as it was.
    flow_file.write_text(text[:-20], encoding="utf-8")
    edit(ada, lambda d: d.update_node("check", label="after the bad write"))
    await eventually(
        lambda: (node(bob, "check") or {}).get("label") == "after the bad write", what="the room still works"
    )
    assert bob.read()["meta"]["name"] == "orders (edited on disk)"


async def test_offline_edits_merge_when_the_client_reconnects(join):
    ada, bob = await join(), await join()

    ada.disconnect()
    await eventually(lambda: not ada.connected, what="ada offline")
    edit(ada, lambda d: d.update_node("check", config={"condition": "input.amount > 10"}, label="Offline edit"))
    edit(ada, lambda d: d.add_node({"id": "offline", "type": "transform", "config": {"output": 1}}))
    edit(bob, lambda d: d.update_node("check", config={"note": "from bob"}))
    edit(bob, lambda d: d.remove_node("approve"))
    assert ada.pending == 2

    ada.reconnect()
    await ada.wait_synced_async()
    await eventually(lambda: ada.text() == bob.text(), what="ada and bob converge")

    merged = ada.read()
    check = next(n for n in merged["nodes"] if n["id"] == "check")
    assert check["config"] == {"condition": "input.amount > 10", "note": "from bob"}
    assert check["label"] == "Offline edit"
    assert [n["id"] for n in merged["nodes"]] == ["start", "check", "offline"]
    assert [e["id"] for e in merged["edges"]] == ["e1"]
    assert ada.pending == 0


async def test_five_clients_editing_concurrently_converge_to_one_document(join, flow_file):
    clients = await asyncio.gather(*(join() for _ in range(5)))

    def burst(i: int, client: collab.RoomClient) -> None:
        rng = random.Random(i)
        for step in range(20):
            choice = rng.random()
            if choice < 0.4:  # everybody fights over the same field and label
                edit(
                    client,
                    lambda d: d.update_node("check", config={"condition": f"input.amount > {i}{step}"}, label=f"c{i}"),  # noqa: B023 - edit() calls it at once
                )
            elif choice < 0.7:  # and over the same position
                edit(client, lambda d: d.update_node("approve", position={"x": i * 10 + step, "y": step}))  # noqa: B023 - edit() calls it at once
            elif choice < 0.9:
                edit(
                    client,
                    lambda d: d.add_node({"id": f"n{i}_{step}", "type": "transform", "config": {"output": step}}),  # noqa: B023 - edit() calls it at once
                )
            else:
                edit(client, lambda d: d.update_node("start", config={f"by_{i}": step}))  # noqa: B023 - edit() calls it at once

    # Each burst runs on its own thread, so the edits really interleave on the wire.
    await asyncio.gather(*(asyncio.to_thread(burst, i, c) for i, c in enumerate(clients)))
    await asyncio.gather(*(c.wait_synced_async(timeout=20) for c in clients))
    await eventually(lambda: len({c.text() for c in clients}) == 1, what="all five converge")

    final = clients[0].text()
    data = json.loads(final)
    added = {n["id"] for n in data["nodes"]} - {"start", "check", "approve"}
    assert added and all(n.startswith("n") for n in added)
    assert data["nodes"][0]["config"]["example"] == ORDERS["nodes"][0]["config"]["example"]
    await eventually(
        lambda: flow_file.read_text(encoding="utf-8") == final, what="the server saved the converged document"
    )


async def test_a_live_flow_reports_its_rooms_sync_latency_to_the_alert_rule(join, jp_root_dir, flow_file, monkeypatch):
    # The collaboration sync-latency SLA rule is fed by kernels: each edit's confirmation by the
    # server is timed, and the slowest of each window is stored as a metric sample.
    from datetime import datetime, timedelta

    from floworch._service import service
    from floworch.flow import SyncLatencyReporter
    from floworch_server.alerts import SYNC_LATENCY_METRIC

    monkeypatch.delenv("FLOWORCH_JUPYTER_URL", raising=False)
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))
    since = datetime.now(UTC) - timedelta(seconds=1)
    flow = await asyncio.to_thread(Flow.open, flow_file)
    try:
        assert isinstance(flow.room.on_sync_latency, SyncLatencyReporter)
        flow.room.on_sync_latency.interval = 0  # every confirmation is a sample, for the test
        flow.update("check", label="Big order?")
        await eventually(lambda: len(flow.room.sync_latencies) >= 1, what="the server confirms the kernel's edit")
        measured = list(flow.room.sync_latencies)
        assert all(0 < ms < 60_000 for ms in measured)

        def stored() -> list[float]:
            return service().store.metric_values(SYNC_LATENCY_METRIC, since, datetime.now(UTC) + timedelta(seconds=1))

        values = await eventually(lambda: stored() or None, what="the sample reaches the store")
        assert set(values) <= set(measured)
    finally:
        await flow.room.aclose()
