"""Roles in a flow's collaboration room, through a real Jupyter server with jupyter-collaboration.

Ada (the server's Jupyter user, admin of its tenant) edits with a kernel room client; Vera, a
viewer, joins the same room from another kernel logged in with ``fo.login``. Vera sees every
edit live; whatever she changes is dropped by the server: not in the room, not for Ada, not on disk.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pycrdt import Awareness, Doc, Text, create_awareness_message, create_update_message

from floworch import collab
from floworch.session import Session
from floworch_ext.collab_guard import changes_document
from test_collab import FLOW_PATH, edit, eventually, flow_file, jp_server_config, node, on_disk  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def server(jp_serverapp, http_server) -> collab.Server:
    return collab.Server.from_info(jp_serverapp.server_info())


@pytest.fixture
async def runtime(jp_serverapp):
    runtime = jp_serverapp.web_app.settings["floworch"]
    await runtime.service()
    return runtime


async def member_server(server: collab.Server, runtime, user: str, role: str) -> collab.Server:
    """The server as seen by a kernel logged in as ``user`` (a member with ``role``)."""
    runtime._service.store.add_member(user, role, "ada")
    pair = runtime.tokens.login(user, runtime.settings.tenant)
    return collab.Server(server.url, "", server.root_dir, session=Session(server.url, pair))


async def joined(server: collab.Server) -> collab.RoomClient:
    client = collab.RoomClient(server, FLOW_PATH).start()
    await client.wait_synced_async(timeout=15)
    return client


async def test_a_viewer_sees_edits_live_but_the_server_drops_the_viewers_own(server, runtime, flow_file):
    ada = await joined(server)
    vera = await joined(await member_server(server, runtime, "vera", "viewer"))
    eddie = await joined(await member_server(server, runtime, "eddie", "editor"))
    try:
        # An editor's edit reaches everyone, the viewer included.
        edit(eddie, lambda shared: shared.update_node("approve", label="By Eddie"))
        await eventually(
            lambda: (node(vera, "approve") or {}).get("label") == "By Eddie", what="the viewer sees the edit"
        )
        await eventually(
            lambda: (node(ada, "approve") or {}).get("label") == "By Eddie", what="the admin sees the edit"
        )

        # The viewer's edits stay in her own copy only.
        edit(vera, lambda shared: shared.update_node("check", label="By Vera"))
        edit(vera, lambda shared: shared.remove_node("approve"))
        # An edit made after hers, by Ada, arrives: had Vera's passed, it would have arrived first.
        edit(ada, lambda shared: shared.update_node("start", label="After Vera"))
        await eventually(lambda: (node(eddie, "start") or {}).get("label") == "After Vera", what="Ada's later edit")
        await asyncio.sleep(1.5)  # past the room's 1 s save delay
        for client in (ada, eddie):
            assert node(client, "check")["label"] == "Big?"
            assert node(client, "approve") is not None
        saved = await eventually(lambda: on_disk(flow_file), what="the saved file")
        await eventually(
            lambda: {n["id"]: n["label"] for n in on_disk(flow_file)["nodes"]}.get("start") == "After Vera",
            what="saved",
        )
        saved = on_disk(flow_file)
        assert {n["id"]: n["label"] for n in saved["nodes"]} == {
            "start": "After Vera",
            "check": "Big?",
            "approve": "By Eddie",
        }

        # A new client joining now gets the room's document, without Vera's changes.
        late = await joined(server)
        assert node(late, "check")["label"] == "Big?"
        await late.aclose()
    finally:
        await asyncio.gather(ada.aclose(), vera.aclose(), eddie.aclose())


async def test_someone_who_is_not_a_member_is_disconnected_from_the_room(server, runtime, flow_file):
    outsider = await member_server(server, runtime, "olga", "viewer")
    runtime._service.store.remove_member("olga")
    runtime.roles.forget()
    client = collab.RoomClient(outsider, FLOW_PATH).start()
    try:
        with pytest.raises(collab.CollaborationUnavailable, match="refused"):
            await client.wait_synced_async(timeout=5)
        assert not client.connected
    finally:
        await client.aclose()


def test_only_document_changes_count_as_changes_awareness_and_sync_requests_do_not():
    doc = Doc()
    doc["text"] = text = Text()
    updates = []
    doc.observe(lambda event: updates.append(event.update))
    text += "hello"
    awareness = Awareness(Doc())
    awareness.set_local_state({"user": {"name": "Vera"}, "selection": ["check"]})
    from pycrdt import create_sync_message

    assert changes_document(create_update_message(updates[0]))
    assert not changes_document(create_sync_message(Doc()))  # SYNC_STEP1: "what am I missing?"
    assert not changes_document(create_awareness_message(awareness.encode_awareness_update([awareness.client_id])))
    assert not changes_document(b"")


async def test_room_edits_reach_the_audit_log_once_per_user_per_batch(server, runtime, flow_file):
    runtime.room_edits.interval = 2.0  # a minute in production
    began = datetime.now(UTC)
    eddie = await joined(await member_server(server, runtime, "eddie", "editor"))
    vera = await joined(await member_server(server, runtime, "vera", "viewer"))
    try:
        for x in range(5):  # a drag: many updates, one entry
            edit(eddie, lambda shared, x=x: shared.update_node("approve", position={"x": 480 + x, "y": 0}))
        edit(eddie, lambda shared: shared.update_node("check", label="Large?"))
        edit(
            eddie,
            lambda shared: shared.add_node(
                {"id": "notify", "type": "transform", "position": {"x": 700, "y": 0}, "config": {}}
            ),
        )
        edit(vera, lambda shared: shared.remove_node("start"))  # dropped: never audited
        store = runtime._service.store
        entries = await eventually(
            lambda: store.list_audit(action="workflow.edit", since=began), what="the audit entry"
        )
        await asyncio.sleep(2.5)  # a second batch would have been written by now
        entries = store.list_audit(action="workflow.edit", since=began)
        assert [e["actor"] for e in entries] == ["eddie"]
        detail = entries[0]["detail"]
        assert entries[0]["target"] == "5b6e9c1e-1f0a-4d0e-9a57-3f4f2b8e7d10"  # the flow's id
        assert (detail["nodes_added"], detail["nodes_changed"], detail["nodes_moved"], detail["nodes_removed"]) == (
            ["notify"],
            ["check"],
            ["approve"],
            [],
        )
        assert detail["path"] == FLOW_PATH and detail["updates"] >= 7
    finally:
        await asyncio.gather(eddie.aclose(), vera.aclose())
