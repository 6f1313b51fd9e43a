"""Compensation (saga) on the canvas: an activity node's compensate handle, dragged to the node
that undoes it, sets the node's ``compensate``, drawn as a dashed "undo" link that is not an
edge of the file; deleting the link (or "Clear" in the properties) removes it; a compensation
the server refuses shows on its node; a run whose last step fails shows the undone steps as
compensated. A viewer sees all of it and changes none of it.

The flow's HTTP nodes call a small receiver in the test; the run executes on the session's
Temporal dev server and worker, which the lab uses.
"""

from __future__ import annotations

import re

from playwright.async_api import Locator, Page, expect

from support.receiver import Receiver

from .canvas import (
    RUN_TIMEOUT,
    canvas,
    drag_connect,
    edge,
    flow,
    node,
    node_body,
    nodes_of,
    open_flow,
    read_flow,
    rf_node,
    wait_for_file,
)
from .harness import identity, shot

COMPENSATE = "compensate"  # the compensate handle's id


def booking(name: str, base: str) -> dict:
    """Reserve a flight, reserve a hotel, charge the card (which fails for good). The hotel is
    already undone by cancel_hotel; the charge names an undo node that does not exist."""
    nodes = [
        node("start", "trigger.manual", 0, 0, label="Start", example={"guest": "Ada"}),
        node(
            "flight",
            "action.http",
            320,
            0,
            label="Reserve flight",
            method="POST",
            url=f"{base}/flights",
            json={"guest": "{{ input.guest }}"},
        ),
        {
            **node(
                "hotel",
                "action.http",
                640,
                0,
                label="Reserve hotel",
                method="POST",
                url=f"{base}/hotels",
                json={"guest": "{{ input.guest }}"},
            ),
            "compensate": "cancel_hotel",
        },
        {
            **node(
                "charge",
                "test.fail",
                960,
                0,
                label="Charge card",
                fail_times=1,
                permanent=True,
                message="card declined",
            ),
            "compensate": "cancel_charge",
        },
        node(
            "cancel_flight",
            "action.http",
            320,
            220,
            label="Cancel flight",
            method="POST",
            url=f"{base}/flights/cancel",
            json={"reservation": "{{ nodes.flight.output.body.path }}"},
        ),
        node(
            "cancel_hotel",
            "action.http",
            640,
            220,
            label="Cancel hotel",
            method="POST",
            url=f"{base}/hotels/cancel",
            json={"guest": "{{ input.guest }}"},
        ),
    ]
    return flow(name, nodes, [edge("start", "flight"), edge("flight", "hotel"), edge("hotel", "charge")])


def link(scope: Page | Locator, node_id: str) -> Locator:
    """The dashed "undo" link drawn for ``node_id``'s compensation."""
    return scope.locator(f'.react-flow__edge.fo-edge-compensate[data-id="compensate:{node_id}"]')


def plain_edges(scope: Page | Locator) -> Locator:
    return scope.locator(".react-flow__edge:not(.fo-edge-compensate)")


def compensations(doc: dict) -> dict[str, str]:
    return {n["id"]: n["compensate"] for n in doc["nodes"] if "compensate" in n}


async def delete_link(page: Page, node_id: str) -> None:
    """Select the link by its label, as a user clicks it, and press Delete."""
    await link(page, node_id).locator(".react-flow__edge-textbg").click()
    await expect(link(page, node_id)).to_have_class(re.compile(r"(^|\s)selected(\s|$)"))
    await page.keyboard.press("Delete")


async def test_draw_delete_and_run_a_compensation_on_the_canvas(lab, page):
    receiver = Receiver().start()
    try:
        doc = booking("booking-canvas", receiver.base)
        lab.write_json("booking.flow", doc)
        root = await open_flow(page, lab, "booking.flow")

        # The hotel's compensation, from the file: a dashed "undo" link, besides the three edges.
        await expect(plain_edges(root)).to_have_count(3)
        await expect(link(root, "hotel")).to_be_visible()
        await expect(link(root, "hotel")).to_contain_text("undo")
        drawn = (
            await link(root, "hotel")
            .locator("path.react-flow__edge-path")
            .evaluate("p => ({ dash: getComputedStyle(p).strokeDasharray, stroke: getComputedStyle(p).stroke })")
        )
        edge_stroke = (
            await plain_edges(root)
            .first.locator("path.react-flow__edge-path")
            .evaluate("p => getComputedStyle(p).stroke")
        )
        assert drawn["dash"] not in ("", "none"), f"the undo link is drawn solid ({drawn})"
        assert drawn["stroke"] != edge_stroke, f"the undo link has the edges' colour {edge_stroke}"
        # The charge names an undo node that does not exist: the server's problem shows on the node.
        await expect(page.get_by_test_id("node-problems-charge")).to_have_text("1")
        await shot(page, "opened")

        # Drag from the flight's compensate handle (its bottom) to the node that undoes it.
        await expect(
            rf_node(root, "flight").locator(f'.react-flow__handle[data-handleid="{COMPENSATE}"]')
        ).to_be_visible()
        await drag_connect(page, "flight", "cancel_flight", source_port=COMPENSATE)
        await expect(link(root, "flight")).to_be_visible()
        await expect(link(root, "flight")).to_contain_text("undo")
        saved = await wait_for_file(lab, "booking.flow", lambda d: "compensate" in nodes_of(d)["flight"])
        assert compensations(saved) == {"flight": "cancel_flight", "hotel": "cancel_hotel", "charge": "cancel_charge"}
        assert [(e["source"], e["target"]) for e in saved["edges"]] == [
            ("start", "flight"),
            ("flight", "hotel"),
            ("hotel", "charge"),
        ]
        await expect(plain_edges(root)).to_have_count(3)
        await shot(page, "flight-undo-drawn")

        # A node that is a step of the flow cannot undo another: refused while dragging, with why.
        await drag_connect(page, "hotel", "charge", source_port=COMPENSATE)
        refusal = page.get_by_test_id("connect-refusal")
        await expect(refusal).to_contain_text("'charge' is a step of the flow (it has edges)")
        await shot(page, "refused-undo-to-a-step")
        assert compensations(await read_flow(lab, "booking.flow"))["hotel"] == "cancel_hotel"

        # The properties panel names the compensation; the flight's shows its undo node.
        await node_body(page, "flight").click()
        await expect(page.get_by_test_id("compensation")).to_contain_text("Compensated by: cancel_flight")
        await expect(page.get_by_test_id("compensation")).to_contain_text("Cancel flight")
        await shot(page, "compensated-by")

        # Deleting the dashed link clears the field; the flight's undo node is then unreachable.
        await delete_link(page, "flight")
        await expect(link(root, "flight")).to_have_count(0)
        saved = await wait_for_file(lab, "booking.flow", lambda d: "compensate" not in nodes_of(d)["flight"])
        assert compensations(saved) == {"hotel": "cancel_hotel", "charge": "cancel_charge"}
        assert len(saved["edges"]) == 3
        assert set(nodes_of(saved)) == {n["id"] for n in doc["nodes"]}  # the link went, not a node
        await expect(page.get_by_test_id("node-problems-cancel_flight")).to_be_visible()
        await shot(page, "flight-undo-deleted")

        # The charge's problem, in its properties under "Compensated by", cleared with the button.
        await node_body(page, "charge").click()
        panel = page.get_by_test_id("compensation")
        await expect(panel).to_contain_text("Compensated by: cancel_charge")
        await expect(panel).to_contain_text("compensate names node 'cancel_charge', which does not exist")
        await shot(page, "charge-compensation-problem")
        await page.get_by_test_id("compensation-clear").click()
        await expect(page.get_by_test_id("compensation")).to_have_count(0)
        await expect(page.get_by_test_id("compensation-hint")).to_be_visible()
        await wait_for_file(lab, "booking.flow", lambda d: "compensate" not in nodes_of(d)["charge"])

        # Drawn again, and the flow is valid.
        await page.locator(".react-flow__pane").click(position={"x": 20, "y": 20})
        await drag_connect(page, "flight", "cancel_flight", source_port=COMPENSATE)
        await wait_for_file(
            lab, "booking.flow", lambda d: compensations(d) == {"flight": "cancel_flight", "hotel": "cancel_hotel"}
        )
        await expect(page.get_by_test_id("problems")).to_contain_text("valid")
        await shot(page, "valid")

        # Run the draft: the charge fails for good, so the hotel and then the flight are undone.
        await page.get_by_test_id("btn-run").click()
        await page.get_by_test_id("run-version").select_option("draft")
        await page.get_by_test_id("run-start").click()
        await expect(page.get_by_test_id("run-status")).to_have_text("failed", timeout=RUN_TIMEOUT)
        for node_id, status in [
            ("start", "success"),
            ("charge", "failed"),
            ("cancel_hotel", "success"),
            ("cancel_flight", "success"),
        ]:
            await expect(node_body(page, node_id)).to_have_attribute("data-status", status)
        for node_id, undo in [("flight", "cancel_flight"), ("hotel", "cancel_hotel")]:
            await expect(node_body(page, node_id)).to_have_attribute("data-status", "compensated")
            badge = page.get_by_test_id(f"node-status-{node_id}")
            await expect(badge).to_contain_text("compensated")
            await expect(badge).to_have_attribute("title", f"undone by '{undo}' after a later node failed")
            # In the compensation colour, the undo link's.
            await expect(badge).to_have_css("color", drawn["stroke"])
        await shot(page, "run-compensated")
        # Each reservation once, then the cancellations: the hotel's before the flight's.
        assert list(receiver.counts().items()) == [
            ("/flights", 1),
            ("/hotels", 1),
            ("/hotels/cancel", 1),
            ("/flights/cancel", 1),
        ]
    finally:
        receiver.stop()


async def test_a_viewer_sees_compensations_and_cannot_change_them(lab, page, users):
    alice = page
    bob = await users.open("bob")
    added = lab.api("PUT", f"floworch/api/members/{(await identity(bob))['username']}", json={"role": "viewer"})
    assert added.status_code in (200, 201), added.text

    doc = booking("booking-viewer", "http://127.0.0.1:9")
    for n in doc["nodes"]:
        if n["id"] == "flight":
            n["compensate"] = "cancel_flight"
    lab.write_json("booking-viewer.flow", doc)
    await open_flow(alice, lab, "booking-viewer.flow")
    root = await open_flow(bob, lab, "booking-viewer.flow")
    await expect(bob.get_by_test_id("view-only")).to_be_visible()
    await expect(link(root, "flight")).to_be_visible()
    await expect(link(root, "hotel")).to_be_visible()

    # Bob reads the compensation; there is no button to clear it.
    await node_body(bob, "hotel").click()
    await expect(bob.get_by_test_id("compensation")).to_contain_text("Compensated by: cancel_hotel")
    await expect(bob.get_by_test_id("compensation-clear")).to_have_count(0)
    await shot(bob, "viewer-properties")

    # Neither a drag from a compensate handle nor Delete on a link changes anything.
    await bob.locator(".react-flow__pane").click(position={"x": 20, "y": 20})
    await drag_connect(bob, "charge", "cancel_flight", source_port=COMPENSATE)
    await expect(bob.locator(".react-flow__connectionline")).to_have_count(0)
    await expect(bob.get_by_test_id("connect-refusal")).to_have_count(0)  # no drag was even started
    await link(bob, "hotel").locator(".react-flow__edge-textbg").click()
    await bob.keyboard.press("Delete")
    await expect(link(root, "hotel")).to_be_visible()
    await expect(link(root, "charge")).to_have_count(0)
    await shot(bob, "viewer-tried")

    # Alice edits once more; once that is on disk, so would Bob's changes be, had they passed.
    await node_body(alice, "start").click()
    await alice.get_by_test_id("field-label").fill("Begin")
    saved = await wait_for_file(lab, "booking-viewer.flow", lambda d: nodes_of(d)["start"].get("label") == "Begin")
    assert compensations(saved) == {"flight": "cancel_flight", "hotel": "cancel_hotel", "charge": "cancel_charge"}
    await expect(link(canvas(alice), "hotel")).to_be_visible()
