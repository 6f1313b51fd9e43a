"""Naming a node's compensation from a notebook: ``flow.add_node(..., compensate=...)``,
``flow.update(node, compensate=...)`` and ``flow.compensate(node, by=...)``.

In a file (no Jupyter server) the file changes at once; with a real Jupyter server serving the
file, the edit goes into its shared room, where a canvas (here a room client speaking the same
protocol) sees it in the node's ``compensate`` field, and what the canvas does the kernel reads.
"""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from floworch import Flow, collab
from test_collab import eventually, jp_server_config, on_disk  # noqa: F401  (a fixture among them)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


def booking_flow(flow: Flow) -> None:
    """Reserve a flight, then a hotel, then charge; each reservation undone by its cancellation."""
    url = "http://127.0.0.1:9/"
    flow.add_node("trigger.manual", "start")
    flow.add_node(
        "action.http", "flight", config={"method": "POST", "url": url + "flights"}, compensate="cancel_flight"
    )
    flow.add_node("action.http", "hotel", config={"method": "POST", "url": url + "hotels"})
    flow.add_node("test.fail", "charge", config={"fail_times": 1, "permanent": True})
    flow.add_node("action.http", "cancel_flight", config={"method": "POST", "url": url + "flights/cancel"})
    flow.add_node("action.http", "cancel_hotel", config={"method": "POST", "url": url + "hotels/cancel"})
    flow.connect("start", "flight")
    flow.connect("flight", "hotel")
    flow.connect("hotel", "charge")
    flow.compensate("hotel", by="cancel_hotel")


def compensations(nodes: list[dict]) -> dict[str, str]:
    return {n["id"]: n["compensate"] for n in nodes if "compensate" in n}


# ---------------------------------------------------------------------- in the file
@pytest.fixture
def solo(tmp_path, monkeypatch) -> Flow:
    monkeypatch.setenv("FLOWORCH_JUPYTER_URL", "off")
    flow = Flow.new(tmp_path / "booking.flow")
    assert not flow.live
    booking_flow(flow)
    return flow


def test_a_node_added_with_its_compensation_is_saved_with_it_and_the_flow_is_valid(solo):
    saved = on_disk(solo.path)
    assert compensations(saved["nodes"]) == {"flight": "cancel_flight", "hotel": "cancel_hotel"}
    assert all("compensate" not in e for e in saved["edges"]) and len(saved["edges"]) == 3  # not an edge
    assert solo.validate() == []


def test_compensate_clears_and_names_the_node_that_undoes_another(solo):
    solo.compensate("hotel", by=None)
    assert compensations(on_disk(solo.path)["nodes"]) == {"flight": "cancel_flight"}
    # cancel_hotel undoes nothing now, and no edge leads to it: an unreachable step.
    assert [(p.code, p.node) for p in solo.validate()] == [("unreachable-node", "cancel_hotel")]

    solo.compensate("hotel", by="cancel_hotel")
    assert compensations(on_disk(solo.path)["nodes"]) == {"flight": "cancel_flight", "hotel": "cancel_hotel"}
    assert solo.validate() == []


def test_update_removes_and_sets_a_compensation(solo):
    solo.update("flight", compensate="")
    assert compensations(on_disk(solo.path)["nodes"]) == {"hotel": "cancel_hotel"}

    solo.update("flight", compensate="cancel_flight", label="Flight")
    node = next(n for n in on_disk(solo.path)["nodes"] if n["id"] == "flight")
    assert (node["compensate"], node["label"]) == ("cancel_flight", "Flight")
    solo.update("hotel", label="Hotel booking")  # compensate not given: kept
    assert compensations(solo.nodes) == {"flight": "cancel_flight", "hotel": "cancel_hotel"}


def test_a_compensation_the_validator_refuses_is_reported_on_the_node_field(solo):
    solo.update("hotel", compensate="cancel_flight")  # which already undoes the flight
    solo.update("charge", compensate="cancel_flihgt")
    found = {(p.code, p.node, p.field) for p in solo.validate()}
    assert ("compensation-shared", "hotel", "compensate") in found
    assert ("unknown-compensation", "charge", "compensate") in found


def test_removing_the_undo_node_removes_the_compensation_naming_it(solo):
    solo.remove("cancel_flight")
    assert compensations(on_disk(solo.path)["nodes"]) == {"hotel": "cancel_hotel"}
    assert solo.validate() == []


@pytest.mark.parametrize(
    "call, error, words",
    [
        (
            lambda f: f.compensate("hotel", by="nowhere"),
            ValueError,
            "compensate: no node 'nowhere' in 'booking'; add the node that undoes 'hotel' first",
        ),
        (lambda f: f.compensate("nowhere", by="cancel_hotel"), KeyError, "no node 'nowhere' in 'booking'"),
        (
            lambda f: f.compensate("hotel", by="not an id!"),
            ValueError,
            "compensate must be the id of the node that undoes this one",
        ),
        (lambda f: f.update("hotel", compensate=3), ValueError, 'got 3; pass "" to remove it'),
        (
            lambda f: f.add_node("action.http", "refund", compensate=["cancel_hotel"]),
            ValueError,
            "got ['cancel_hotel']",
        ),
        (lambda f: f.update("nowhere", compensate="cancel_hotel"), KeyError, "no node 'nowhere'"),
    ],
)
def test_bad_compensations_are_refused_and_change_nothing(solo, call, error, words):
    before = solo.path.read_text(encoding="utf-8")
    with pytest.raises(error) as refused:
        call(solo)
    assert words in str(refused.value)
    assert solo.path.read_text(encoding="utf-8") == before


# ---------------------------------------------------------------------- through a real Jupyter room
@pytest.mark.timeout(90)
async def test_in_a_room_the_canvas_sees_the_kernels_compensations_and_the_kernel_the_canvas(
    jp_serverapp, http_server, jp_root_dir, monkeypatch
):
    # The kernel finds the server as a kernel does: its jpserver-*.json, the server being its parent.
    monkeypatch.delenv("FLOWORCH_JUPYTER_URL", raising=False)
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))
    path = jp_root_dir / "booking.flow"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "meta": {"id": "b00c1e5e-0000-4000-8000-000000000013", "name": "booking"},
                "nodes": [],
                "edges": [],
            }
        )
    )
    server = collab.Server.from_info(jp_serverapp.server_info())
    canvas = collab.RoomClient(server, "booking.flow").start()
    await canvas.wait_synced_async(timeout=15)
    flow = await asyncio.to_thread(Flow.open, path)
    try:
        assert flow.live
        await asyncio.to_thread(booking_flow, flow)

        # The canvas sees each as the node's own field, not as an edge.
        await eventually(
            lambda: compensations(canvas.read()["nodes"]) == {"flight": "cancel_flight", "hotel": "cancel_hotel"},
            what="the canvas sees both compensations",
        )
        assert len(canvas.read()["edges"]) == 3
        assert canvas.document.ynodes["hotel"]["compensate"] == "cancel_hotel"
        saved = await eventually(
            lambda: (
                (d := on_disk(path))
                and compensations(d["nodes"]) == {"flight": "cancel_flight", "hotel": "cancel_hotel"}
                and d
            ),
            what="the file holds them",
        )
        assert len(saved["edges"]) == 3
        assert flow.validate() == []

        # The canvas deletes the hotel's "undo" link (its compensate field): the kernel reads that.
        with canvas.transaction() as shared:
            shared.update_node("hotel", compensate="")
        await eventually(
            lambda: compensations(flow.nodes) == {"flight": "cancel_flight"},
            what="the kernel sees the cleared compensation",
        )
        await eventually(
            lambda: (d := on_disk(path)) and compensations(d["nodes"]) == {"flight": "cancel_flight"},
            what="the file follows",
        )

        # The kernel's update and bad input, in the room as in the file.
        await asyncio.to_thread(flow.update, "flight", compensate="")
        await eventually(
            lambda: compensations(canvas.read()["nodes"]) == {}, what="the canvas sees the kernel clear the flight's"
        )
        with pytest.raises(ValueError, match="no node 'nowhere'"):
            await asyncio.to_thread(flow.compensate, "flight", by="nowhere")
        await asyncio.to_thread(flow.update, "flight", compensate="cancel_flight")
        await eventually(lambda: compensations(canvas.read()["nodes"]) == {"flight": "cancel_flight"}, what="set again")
        await asyncio.to_thread(flow.remove, "cancel_flight")
        await eventually(
            lambda: compensations(canvas.read()["nodes"]) == {} and "cancel_flight" not in canvas.document.ynodes,
            what="removing the undo node clears the flight's compensation",
        )
    finally:
        await flow.room.aclose()
        await canvas.aclose()
