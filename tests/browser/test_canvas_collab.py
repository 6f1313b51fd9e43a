"""Two people on one .flow file: each sees the other's edits, cursor and the node they are editing.

Each user is a browser context of their own, so a Jupyter identity of their own (an anonymous
user per token login), in the same collaboration room.
"""

from __future__ import annotations

import re

from playwright.async_api import expect

from .canvas import (
    RoomLinks,
    add_by_double_click,
    canvas,
    hello,
    node_body,
    nodes_of,
    open_flow,
    read_flow,
    rf_node,
    wait_for_file,
)
from .harness import identity, shot


async def test_a_second_user_sees_the_new_node_and_the_cursor_of_the_first(lab, page, users):
    lab.write_json("shared.flow", hello("shared"))
    await open_flow(page, lab, "shared.flow")
    bob = await users.open("bob")
    await open_flow(bob, lab, "shared.flow")
    for who in (page, bob):
        await expect(who.get_by_test_id("sync-status")).to_have_text("online")
    await shot(page, "open")
    await shot(bob, "open")

    added = await add_by_double_click(page, "transform")
    await expect(rf_node(canvas(bob), added)).to_be_visible()
    await expect(node_body(bob, added)).to_have_attribute("data-type", "transform")
    await shot(bob, "sees-new-node")

    me = await identity(page)
    pane = await page.locator(".react-flow__pane").bounding_box()
    x, y = pane["x"] + pane["width"] * 0.6, pane["y"] + pane["height"] * 0.7
    await page.mouse.move(x, y)
    await page.mouse.move(x + 40, y + 20, steps=5)
    cursor = bob.get_by_test_id("remote-cursor").filter(has_text=me["display_name"] or me["name"])
    await expect(cursor).to_be_visible()
    await shot(bob, "sees-cursor")

    await wait_for_file(lab, "shared.flow", lambda d: added in nodes_of(d))


async def test_a_node_being_edited_shows_who_is_editing_it(lab, page, users):
    lab.write_json("locks.flow", hello("locks"))
    await open_flow(page, lab, "locks.flow")
    bob = await users.open("bob")
    await open_flow(bob, lab, "locks.flow")

    await node_body(page, "greet").click()
    label = page.get_by_test_id("field-label")
    await label.click()
    await label.press("End")
    await label.press_sequentially(" you")
    await shot(page, "editing")

    me = await identity(page)
    lock = bob.get_by_test_id("lock-greet")
    await expect(lock).to_be_visible()
    await expect(lock).to_contain_text(me["display_name"] or me["name"])
    await expect(node_body(bob, "greet")).to_contain_text("Greet you")
    await shot(bob, "sees-lock")
    # Nobody else holds a lock on the node the first user is on.
    await expect(page.get_by_test_id("lock-greet")).to_have_count(0)


async def test_edits_made_offline_are_pending_then_merged_on_reconnect(lab, page, users):
    lab.write_json("offline.flow", hello("offline"))
    links = await RoomLinks.install(page)
    await open_flow(page, lab, "offline.flow")
    bob = await users.open("bob")
    await open_flow(bob, lab, "offline.flow")
    status = page.get_by_test_id("sync-status")
    await expect(status).to_have_text("online")

    await links.cut()
    await expect(status).to_have_text("offline, 0 changes pending")
    added = await add_by_double_click(page, "transform")
    await expect(status).to_have_text(re.compile(r"^offline, [1-9]\d* changes? pending$"))
    await shot(page, "offline-with-pending-edit")
    await expect(rf_node(bob, added)).to_have_count(0)
    assert added not in nodes_of(await read_flow(lab, "offline.flow"))

    links.restore()
    await expect(status).to_have_text("online", timeout=30_000)
    await expect(rf_node(bob, added)).to_be_visible()
    await shot(page, "back-online")
    await shot(bob, "sees-merged-edit")
    await wait_for_file(lab, "offline.flow", lambda d: added in nodes_of(d))


async def test_a_locked_node_can_be_taken_over_after_confirming(lab, page, users):
    lab.write_json("takeover.flow", hello("takeover"))
    await open_flow(page, lab, "takeover.flow")
    bob = await users.open("bob")
    await open_flow(bob, lab, "takeover.flow")
    await node_body(page, "greet").click()
    await expect(page.get_by_test_id("properties")).to_be_visible()
    await expect(bob.get_by_test_id("lock-greet")).to_be_visible()

    # Bob opens the same node: read-only, with who holds it, until he takes it over.
    await node_body(bob, "greet").click()
    take_over = bob.get_by_test_id("take-over")
    await expect(take_over).to_be_visible()
    await expect(bob.get_by_test_id("field-label")).to_have_attribute("readonly", "")
    await shot(bob, "locked-for-bob")
    bob.once("dialog", lambda dialog: dialog.accept())
    await take_over.click()
    await expect(take_over).to_have_count(0)
    await expect(bob.get_by_test_id("field-label")).not_to_have_attribute("readonly", "")

    # Now the first user sees Bob's lock, and the form is read-only for them.
    bob_id = await identity(bob)
    lock = page.get_by_test_id("lock-greet")
    await expect(lock).to_contain_text(bob_id["display_name"] or bob_id["name"])
    await expect(page.get_by_test_id("take-over")).to_be_visible()
    await expect(page.get_by_test_id("field-label")).to_have_attribute("readonly", "")
    await shot(page, "taken-over")
