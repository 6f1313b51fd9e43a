"""Roles in the browser: a Viewer and an Editor in one flow, and the Team panel of an admin.

Every browser user is a Jupyter identity of its own (an anonymous user per token login). With
no membership, a Jupyter user of the server's tenant is an admin (the ``jupyter_role`` default),
so the test's main user, Alice, manages the team; Bob becomes what she makes him in the panel.
"""

from __future__ import annotations

import re
import secrets

from playwright.async_api import Locator, Page, expect
from pycrdt import Awareness, Doc, Map, create_awareness_message, create_update_message

from .canvas import (
    add_by_double_click,
    bring_into_view,
    canvas,
    hello,
    node_body,
    nodes_of,
    open_flow,
    rf_node,
    wait_for_file,
)
from .harness import Lab, identity, shot

PROBE_NAME = "bob's crafted client"


# ---------------------------------------------------------------------- the Team panel
async def open_team(page: Page) -> Locator:
    """The launcher's "Team" card."""
    await page.locator(
        '.jp-LauncherCard[data-category="FlowOrchestrator"]', has_text=re.compile(r"^\s*Team\s*$")
    ).click()
    panel = page.get_by_test_id("team-panel")
    await expect(panel).to_be_visible()
    return panel


def member(panel: Locator, user: str) -> Locator:
    return panel.locator(f'[data-testid="member-row"][data-user="{user}"]')


async def add_member(panel: Locator, user: str, role: str) -> None:
    await panel.get_by_test_id("member-add-user").fill(user)
    await panel.get_by_test_id("member-add-role").select_option(role)
    await panel.get_by_test_id("member-add").click()
    await expect(member(panel, user)).to_have_attribute("data-role", role)


async def set_role(panel: Locator, user: str, role: str) -> None:
    await member(panel, user).get_by_test_id("member-role").select_option(role)


def tenant(lab: Lab) -> str:
    return lab.api("GET", "floworch/api/me").json()["tenant"]


def user_name(who: dict) -> str:
    return who["display_name"] or who["name"]


# ---------------------------------------------------------------------- gestures and the room
async def drag_node(page: Page, node_id: str, dx: float, dy: float) -> None:
    """Press on the node's title and drag it by (dx, dy) screen pixels (the node in view first)."""
    await bring_into_view(page, [node_id])
    box = await node_body(page, node_id).bounding_box()
    assert box is not None, f"node {node_id} is not drawn"
    x, y = box["x"] + 40, box["y"] + 12
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + dx / 3, y + dy / 3, steps=4)
    await page.mouse.move(x + dx, y + dy, steps=8)
    await page.mouse.up()


async def drawn_at(page: Page, node_id: str) -> tuple[int, int]:
    """Where the canvas draws a node, in flow coordinates (React Flow's transform of it)."""
    transform = await rf_node(page, node_id).evaluate("el => el.style.transform")
    found = re.match(r"translate\((-?[\d.]+)px, (-?[\d.]+)px\)", transform)
    assert found, f"node {node_id} has no translate transform: {transform!r}"
    x, y = found.groups()
    return round(float(x)), round(float(y))


def crafted_messages() -> tuple[bytes, bytes]:
    """What a client that ignores the canvas would send: a y-websocket update adding a node
    "intruder", then its presence (awareness), named PROBE_NAME."""
    doc: Doc = Doc()
    nodes: Map = Map()
    doc["nodes"] = nodes
    nodes["intruder"] = Map(
        {
            "id": "intruder",
            "type": "transform",
            "label": "Intruder",
            "position": {"x": 0, "y": 400},
            "config": Map(),
            "order": 99,
        }
    )
    update = create_update_message(doc.get_update())
    awareness = Awareness(Doc())
    awareness.set_local_state(
        {
            "user": {"name": PROBE_NAME, "display_name": PROBE_NAME},
            "floworch": {"cursor": None, "selection": [], "editing": None},
        }
    )
    return update, create_awareness_message(awareness.encode_awareness_update([awareness.client_id]))


# Joins the flow's room as the page's Jupyter user (its cookies), as the canvas does, and sends
# raw y-websocket messages; the socket stays open (window.__floworchProbe) until closed.
SEND_RAW = """async ({ path, messages }) => {
    const config = JSON.parse(document.getElementById('jupyter-config-data').textContent);
    const base = new URL(config.baseUrl, location.href);
    const xsrf = document.cookie.match('\\\\b_xsrf=([^;]*)\\\\b');
    const headers = { 'Content-Type': 'application/json' };
    if (xsrf) headers['X-XSRFToken'] = decodeURIComponent(xsrf[1]);
    const reply = await fetch(new URL('api/collaboration/session/' + encodeURI(path), base), {
        method: 'PUT', headers, body: JSON.stringify({ format: 'text', type: 'flow' })
    });
    if (!reply.ok) throw new Error('session: HTTP ' + reply.status);
    const session = await reply.json();
    const url = new URL('api/collaboration/room/text:flow:' + session.fileId, base.href.replace(/^http/, 'ws'));
    url.searchParams.set('sessionId', session.sessionId);
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('room socket refused')); });
    for (const m of messages) ws.send(new Uint8Array(m));
    window.__floworchProbe = ws;
    return session.fileId;
}"""


# ---------------------------------------------------------------------- tests
async def test_a_viewer_watches_an_editor_live_and_nothing_the_viewer_sends_changes_the_flow(lab, page, users):
    alice = page
    bob = await users.open("bob")
    bob_id = await identity(bob)
    alice_id = await identity(alice)

    # Alice (an admin) makes Bob a viewer in the Team panel.
    team = await open_team(alice)
    await add_member(team, bob_id["username"], "viewer")
    await shot(alice, "made-bob-a-viewer")

    lab.write_json("roles.flow", hello("roles"))
    await open_flow(alice, lab, "roles.flow")
    await open_flow(bob, lab, "roles.flow")
    for who in (alice, bob):
        await expect(who.get_by_test_id("sync-status")).to_have_text("online")

    # Bob's canvas says he only views, and offers no way to change the flow.
    banner = bob.get_by_test_id("view-only")
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text(f"View only — you are a viewer of {tenant(lab)}")
    for control in ("palette", "btn-publish", "btn-run", "btn-layout", "btn-undo"):
        await expect(bob.get_by_test_id(control)).to_have_count(0)
    await expect(alice.get_by_test_id("view-only")).to_have_count(0)
    await expect(alice.get_by_test_id("palette")).to_be_visible()
    await shot(bob, "view-only")

    # Alice adds a node and moves another: Bob sees both live.
    added = await add_by_double_click(alice, "transform")
    await expect(rf_node(canvas(bob), added)).to_be_visible()
    before = await drawn_at(bob, "greet")
    await drag_node(alice, "greet", 0, 100)
    saved = await wait_for_file(lab, "roles.flow", lambda d: nodes_of(d)["greet"]["position"]["y"] != 0)
    greet = nodes_of(saved)["greet"]["position"]
    await expect(rf_node(bob, "greet")).to_have_attribute(
        "style", re.compile(rf"translate\({greet['x']}px, {greet['y']}px\)")
    )
    assert await drawn_at(bob, "greet") != before
    await shot(bob, "sees-alices-edits")

    # Bob's properties form is there to read, not to change.
    await node_body(bob, "greet").click()
    await expect(bob.get_by_test_id("properties")).to_be_visible()
    await expect(bob.get_by_test_id("field-label")).to_have_value("Greet")
    await expect(bob.get_by_test_id("field-label")).to_have_attribute("readonly", "")
    await expect(bob.get_by_test_id("take-over")).to_have_count(0)
    await shot(bob, "properties-read-only")

    # Presence passes: Alice sees Bob's selection and his pointer.
    await expect(node_body(alice, "greet")).to_have_attribute(
        "data-selected-by", re.compile(re.escape(user_name(bob_id)))
    )
    pane = await bob.locator(".react-flow__pane").bounding_box()
    x, y = pane["x"] + pane["width"] * 0.7, pane["y"] + pane["height"] * 0.75
    await bob.mouse.move(x, y)
    await bob.mouse.move(x + 30, y + 15, steps=5)
    await expect(alice.get_by_test_id("remote-cursor").filter(has_text=user_name(bob_id))).to_be_visible()
    await shot(alice, "sees-bobs-presence")

    # What Bob tries through the canvas changes nothing: a drag, the Delete key.
    await drag_node(bob, "start", 0, 100)
    await bring_into_view(bob, ["greet"])
    await node_body(bob, "greet").click(position={"x": 30, "y": 10})  # its title, clear of the minimap
    await bob.keyboard.press("Delete")
    await expect(rf_node(bob, "greet")).to_be_visible()

    # Nor does a crafted client: a raw update to the room from Bob's browser, as Bob. Its
    # presence, sent after the update on the same socket, reaching Alice means the server has
    # handled the update already.
    update, presence = crafted_messages()
    await bob.evaluate(SEND_RAW, {"path": "roles.flow", "messages": [list(update), list(presence)]})
    await expect(alice.locator(f'.fo-peer[title="{PROBE_NAME}"]')).to_be_visible()
    await shot(alice, "after-bobs-crafted-update")

    # Alice edits once more; once that is on disk, so would Bob's changes be, had they passed.
    await drag_node(alice, "start", 0, -100)
    saved = await wait_for_file(lab, "roles.flow", lambda d: nodes_of(d)["start"]["position"]["y"] != 0)
    assert set(nodes_of(saved)) == {"start", "greet", added}
    assert nodes_of(saved)["greet"]["position"] == greet
    assert saved["meta"]["name"] == "roles"
    for who in (alice, bob):
        await expect(rf_node(who, "intruder")).to_have_count(0)
    await expect(rf_node(bob, "start")).to_have_attribute(
        "style",
        re.compile(
            rf"translate\({nodes_of(saved)['start']['position']['x']}px, {nodes_of(saved)['start']['position']['y']}px\)"
        ),
    )
    await bob.evaluate("() => window.__floworchProbe.close()")
    await shot(alice, "flow-unchanged-by-bob")
    await shot(bob, "flow-unchanged-by-bob")
    assert alice_id["username"] != bob_id["username"]


async def test_an_admin_manages_the_team_and_the_audit_tab_shows_who_changed_what(lab, page, users):
    alice = page
    alice_name = (await identity(alice))["username"]
    bob = await users.open("bob")
    bob_name = (await identity(bob))["username"]
    carol = f"carol-{secrets.token_hex(3)}"

    team = await open_team(alice)
    await expect(team.get_by_test_id("team-me")).to_contain_text(f"{alice_name} · admin")
    await expect(team.get_by_test_id("team-default-role")).to_be_visible()  # admin by default, no membership yet
    await shot(alice, "team-panel")

    # Alice becomes an admin member; other admin members (none on a fresh server) become editors,
    # so that she is the last admin.
    await add_member(team, alice_name, "admin")
    await expect(member(team, alice_name)).to_contain_text("(you)")
    for other in await team.locator('[data-testid="member-row"][data-role="admin"]').evaluate_all(
        "rows => rows.map(r => r.dataset.user)"
    ):
        if other != alice_name:
            await set_role(team, other, "editor")
            await expect(member(team, other)).to_have_attribute("data-role", "editor")

    # Bob joins as an editor and is made a viewer: his own Team panel only says who manages it.
    await add_member(team, bob_name, "editor")
    await set_role(team, bob_name, "viewer")
    await expect(member(team, bob_name)).to_have_attribute("data-role", "viewer")
    bobs_team = await open_team(bob)
    await expect(bobs_team.get_by_test_id("team-not-admin")).to_contain_text("Only admins")
    await expect(bobs_team.get_by_test_id("team-not-admin")).to_contain_text("you are a viewer")
    await expect(bobs_team.get_by_test_id("member-row")).to_have_count(0)
    await shot(bob, "not-an-admin")

    # Carol is added, then removed (after confirming).
    await add_member(team, carol, "editor")
    await shot(alice, "carol-added")
    alice.once("dialog", lambda dialog: dialog.accept())
    await member(team, carol).get_by_test_id("member-remove").click()
    await expect(member(team, carol)).to_have_count(0)

    # The last admin can neither step down nor leave: the server's refusal shows in her row.
    await set_role(team, alice_name, "editor")
    error = team.get_by_test_id("member-error")
    await expect(error).to_contain_text(f"'{alice_name}' is the last admin")
    await expect(error).to_contain_text("HTTP 409")
    await expect(member(team, alice_name)).to_have_attribute("data-role", "admin")
    await expect(member(team, alice_name).get_by_test_id("member-role")).to_have_value("admin")
    await shot(alice, "last-admin-refused")
    alice.once("dialog", lambda dialog: dialog.accept())
    await member(team, alice_name).get_by_test_id("member-remove").click()
    await expect(error).to_contain_text("make someone else admin first")
    await expect(member(team, alice_name)).to_be_visible()

    # The Audit tab: Alice's member changes, newest first; the refused ones are not there.
    await team.get_by_test_id("team-tab-audit").click()
    audit = team.get_by_test_id("team-audit")
    await expect(audit.get_by_test_id("audit-row").first).to_be_visible()
    await audit.get_by_test_id("audit-actor").fill(alice_name)
    await audit.get_by_test_id("audit-action").select_option("member.")
    await expect(audit).to_have_attribute("data-actor", alice_name)
    await expect(audit).to_have_attribute("data-loading", "false")
    rows = audit.get_by_test_id("audit-row")
    expected = [
        ("member.remove", carol),
        ("member.add", carol),
        ("member.update", bob_name),
        ("member.add", bob_name),
    ]
    got = await rows.evaluate_all("rows => rows.map(r => [r.dataset.actor, r.dataset.action, r.dataset.target])")
    # Admins demoted to make Alice the last one come between her own entry and Bob's.
    assert [tuple(r[1:]) for r in got[:4]] == expected, got
    assert got[-1][1:] == ["member.add", alice_name], got
    assert {r[0] for r in got} == {alice_name}
    await expect(rows.nth(2)).to_contain_text("role: viewer, was: editor")
    await shot(alice, "audit-member-changes")

    # Refreshable: an entry made since (Dave added through the REST API) shows after Refresh.
    await audit.get_by_test_id("audit-action").select_option("")
    await audit.get_by_test_id("audit-actor").fill("")
    await expect(audit).to_have_attribute("data-actor", "")
    await expect(audit).to_have_attribute("data-loading", "false")
    dave = f"dave-{secrets.token_hex(3)}"
    added = lab.api("PUT", f"floworch/api/members/{dave}", json={"role": "viewer"})
    assert added.status_code == 200, added.text
    dave_row = audit.locator(f'[data-testid="audit-row"][data-target="{dave}"]')
    await expect(dave_row).to_have_count(0)
    await audit.get_by_test_id("audit-refresh").click()
    await expect(dave_row).to_have_attribute("data-action", "member.add")
    await shot(alice, "audit-refreshed")
