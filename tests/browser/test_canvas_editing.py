"""Drawing a flow on the canvas: creating and opening .flow files, the palette, connections,
the properties form with the server's validation, undo/redo and layout.

Each test writes its own .flow file into the lab root and opens it by URL, except the launcher
test, which creates one the way a user does.
"""

from __future__ import annotations

import json
import math
import re

import jsonschema
from playwright.async_api import expect

from floworch_server.flowdoc import schema as flow_schema

from .canvas import (
    SELECTED,
    add_by_double_click,
    add_by_drag,
    assert_canvas_extension_loaded,
    canvas,
    drag_connect,
    edge,
    edges,
    flow,
    handle,
    hello,
    node,
    node_body,
    nodes_of,
    open_flow,
    out_of_view,
    read_flow,
    rf_node,
    until,
    wait_for_file,
)
from .harness import shot


async def test_new_flow_from_the_launcher_creates_untitled_flows_and_opens_them(lab, page):
    before = {p.name for p in lab.root.glob("untitled*.flow")}
    assert not before, f"the lab root already holds {before}"
    await assert_canvas_extension_loaded(page)
    card = page.locator('.jp-LauncherCard[data-category="FlowOrchestrator"]', has_text="New Flow")
    await expect(card).to_be_visible()
    await shot(page, "launcher")

    await card.click()
    await expect(canvas(page)).to_be_visible()
    await expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text("untitled.flow")
    await expect(page.get_by_test_id("sync-status")).to_have_text("online")
    await expect(page.get_by_test_id("palette")).to_be_visible()
    await shot(page, "untitled-opened")
    doc = await wait_for_file(lab, "untitled.flow", lambda d: d.get("version") == 1)
    jsonschema.validate(doc, flow_schema())

    # A second one, from a new launcher, gets the next free name.
    await page.locator(".lm-DockPanel-tabBar .lm-TabBar-addButton").click()
    await page.locator('.jp-LauncherCard[data-category="FlowOrchestrator"]', has_text="New Flow").click()
    await expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text("untitled1.flow")
    await expect(page.locator('[data-testid="flow-canvas"]:visible')).to_have_count(1)
    await shot(page, "untitled1-opened")
    jsonschema.validate(await wait_for_file(lab, "untitled1.flow", lambda d: d.get("version") == 1), flow_schema())


async def test_a_flow_file_opens_in_the_canvas_from_the_file_browser(lab, page):
    lab.write_json("browse.flow", hello("browse"))
    item = page.locator(".jp-DirListing-item", has_text="browse.flow")
    await expect(item).to_be_visible()
    await shot(page, "file-browser")

    await item.dblclick()
    root = canvas(page)
    await expect(root).to_be_visible()
    await expect(rf_node(root, "start")).to_be_visible()
    await expect(rf_node(root, "greet")).to_be_visible()
    await expect(node_body(root, "greet")).to_have_attribute("data-type", "transform")
    await expect(node_body(root, "greet")).to_have_attribute("data-status", "idle")
    await expect(edges(root)).to_have_count(1)
    await shot(page, "opened-in-canvas")


async def test_an_opened_flow_is_fitted_into_the_view(lab, page):
    lab.write_json(
        "wide.flow",
        flow(
            "wide",
            [node("start", "trigger.manual", 0, 0)]
            + [node(f"step{i}", "transform", 320 * i, 0, output=i) for i in range(1, 4)],
            [edge("start", "step1"), edge("step1", "step2"), edge("step2", "step3")],
        ),
    )
    root = await open_flow(page, lab, "wide.flow")
    ids = ["start", "step1", "step2", "step3"]
    try:
        await until(lambda: _all_in_view(root, ids), what="every node of the opened flow in view")
    except AssertionError:
        await shot(page, "opened")
        raise AssertionError(
            f"the opened flow is not fitted into the view: {await out_of_view(root, ids)} are outside the pane"
        ) from None
    await shot(page, "opened")


async def _all_in_view(root, ids) -> bool:
    return not await out_of_view(root, ids)


async def test_palette_adds_nodes_by_double_click_and_by_drag(lab, page):
    lab.write_json("palette.flow", flow("palette", [node("start", "trigger.manual", label="Start")]))
    await open_flow(page, lab, "palette.flow")
    palette = page.get_by_test_id("palette")
    for group in ("Triggers", "AI", "Actions", "Control Flow"):
        await expect(palette.get_by_test_id(f"palette-group-{group}")).to_be_visible()
    await shot(page, "palette")

    # The search box narrows the palette.
    await page.get_by_test_id("palette-search").fill("approval")
    await expect(page.get_by_test_id("palette-item-control.approval")).to_be_visible()
    await expect(page.get_by_test_id("palette-item-transform")).to_be_hidden()
    await shot(page, "search-approval")
    await page.get_by_test_id("palette-search").fill("")
    await expect(page.get_by_test_id("palette-item-transform")).to_be_visible()

    # Double-click: the node lands at the viewport centre, selected, with its properties open.
    added = await add_by_double_click(page, "transform")
    await expect(rf_node(page, added)).to_have_class(SELECTED)
    await expect(page.get_by_test_id("properties")).to_be_visible()
    await expect(page.get_by_test_id("field-label")).to_be_visible()
    await shot(page, "added-by-double-click")

    # Drag and drop: the node lands where it was dropped (here: low left, far from the centre).
    pane = page.locator(".react-flow__pane")
    box = await pane.bounding_box()
    drop = (box["width"] * 0.2, box["height"] * 0.8)
    dropped = await add_by_drag(page, "action.http", *drop)
    node_box = await rf_node(page, dropped).bounding_box()
    centre_of_node = (node_box["x"] + node_box["width"] / 2, node_box["y"] + node_box["height"] / 2)
    to_drop = math.dist(centre_of_node, (box["x"] + drop[0], box["y"] + drop[1]))
    to_centre = math.dist(centre_of_node, (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2))
    assert to_drop < to_centre, (
        f"the dropped node is nearer the viewport centre ({to_centre:.0f}px) than the drop point ({to_drop:.0f}px)"
    )
    await expect(rf_node(page, dropped)).to_have_class(SELECTED)
    await expect(page.get_by_test_id("properties")).to_be_visible()
    await shot(page, "added-by-drag")

    doc = await wait_for_file(lab, "palette.flow", lambda d: {added, dropped} <= set(nodes_of(d)))
    assert nodes_of(doc)[added]["type"] == "transform"
    assert nodes_of(doc)[dropped]["type"] == "action.http"


async def test_dragging_from_a_handle_connects_two_nodes(lab, page):
    lab.write_json(
        "connect.flow",
        flow(
            "connect", [node("start", "trigger.manual", 0, 0), node("work", "transform", 360, 0, output="{{ input }}")]
        ),
    )
    root = await open_flow(page, lab, "connect.flow")
    await expect(edges(root)).to_have_count(0)
    await shot(page, "two-nodes")

    await drag_connect(page, "start", "work")
    await expect(edges(root)).to_have_count(1)
    doc = await wait_for_file(lab, "connect.flow", lambda d: len(d["edges"]) == 1)
    (saved,) = doc["edges"]
    assert (saved["source"], saved["target"]) == ("start", "work")
    await expect(root.locator(f'.react-flow__edge[data-id="{saved["id"]}"]')).to_have_count(1)
    await shot(page, "connected")


async def test_a_connection_that_closes_a_cycle_is_refused_with_its_reason(lab, page):
    lab.write_json(
        "cycle.flow",
        flow(
            "cycle",
            [
                node("start", "trigger.manual", 0, 0),
                node("transform", "transform", 320, 0, output="{{ input }}"),
                node("transform2", "transform", 640, 0, output="{{ input }}"),
            ],
            [
                {"id": "e1", "source": "start", "target": "transform"},
                {"id": "e2", "source": "transform", "target": "transform2"},
            ],
        ),
    )
    root = await open_flow(page, lab, "cycle.flow")
    await expect(edges(root)).to_have_count(2)
    await shot(page, "chain")

    await drag_connect(page, "transform2", "transform")
    refusal = page.get_by_test_id("connect-refusal")
    await expect(refusal).to_be_visible()
    await expect(refusal).to_contain_text(re.compile("cycle", re.I))
    await shot(page, "refused")
    await expect(edges(root)).to_have_count(2)
    assert [e["id"] for e in (await read_flow(lab, "cycle.flow"))["edges"]] == ["e1", "e2"]


async def test_properties_edit_label_and_config_with_schema_errors_inline(lab, page):
    lab.write_json(
        "props.flow",
        flow(
            "props",
            [
                node("start", "trigger.manual", 0, 0, label="Start"),
                node("fetch", "action.http", 320, 0, label="Fetch", url="https://example.com/", method="GET"),
            ],
            [{"id": "e1", "source": "start", "target": "fetch"}],
        ),
    )
    await open_flow(page, lab, "props.flow")
    await expect(page.get_by_test_id("node-problems-fetch")).to_have_count(0)
    await node_body(page, "fetch").click()
    properties = page.get_by_test_id("properties")
    await expect(properties).to_be_visible()
    await expect(page.get_by_test_id("field-label")).to_have_value("Fetch")
    await expect(page.get_by_test_id("field-url")).to_have_value("https://example.com/")
    await shot(page, "properties")

    await page.get_by_test_id("field-label").fill("Fetch the page")
    await expect(node_body(page, "fetch")).to_contain_text("Fetch the page")

    # A URL the schema refuses (pattern ^(https?://|{{)): the server's message under the field,
    # a problem badge on the node, and the problem in the list.
    await page.get_by_test_id("field-url").fill("ftp://x")
    error = page.get_by_test_id("field-error-url")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text(re.compile(r"does not match|https\?://"))
    badge = page.get_by_test_id("node-problems-fetch")
    await expect(badge).to_be_visible()
    await expect(badge).to_have_attribute("title", re.compile(r"ftp://x|url"))
    await expect(page.get_by_test_id("problems")).to_contain_text("ftp://x")
    await shot(page, "url-error")

    await page.get_by_test_id("field-url").fill("https://example.org/data")
    await expect(error).to_have_count(0)
    await expect(badge).to_have_count(0)
    await page.get_by_test_id("field-method").select_option("POST")
    await shot(page, "fixed")

    doc = await wait_for_file(
        lab,
        "props.flow",
        lambda d: (
            nodes_of(d)["fetch"].get("label") == "Fetch the page"
            and nodes_of(d)["fetch"]["config"].get("url") == "https://example.org/data"
            and nodes_of(d)["fetch"]["config"].get("method") == "POST"
        ),
    )
    jsonschema.validate(doc, flow_schema())


async def test_a_switch_has_an_output_port_per_case_named_in_its_config(lab, page):
    """Ports named by the config come from the catalogue's rule (no code of the canvas's own for
    control.switch): one per case, then default; a case added in the properties adds its port."""
    large = {"port": "large", "when": "input.amount >= 1000"}
    lab.write_json(
        "switch.flow",
        flow(
            "switch",
            [node("start", "trigger.manual", 0, 0), node("route", "control.switch", 320, 0, cases=[large])],
            [edge("start", "route")],
        ),
    )
    await open_flow(page, lab, "switch.flow")
    for port in ("large", "default"):
        await expect(handle(page, "route", "source", port)).to_have_count(1)
    await expect(handle(page, "route", "source", "small")).to_have_count(0)

    await node_body(page, "route").click()
    small = {"port": "small", "when": "input.amount < 10"}
    await page.get_by_test_id("field-cases").fill(json.dumps([large, small]))
    await page.get_by_test_id("field-cases").blur()
    await expect(handle(page, "route", "source", "small")).to_have_count(1)
    await expect(node_body(page, "route")).to_contain_text("small")  # the port's label
    await shot(page, "switch-ports")
    await wait_for_file(lab, "switch.flow", lambda d: nodes_of(d)["route"]["config"]["cases"] == [large, small])


async def test_undo_redo_and_auto_layout(lab, page):
    # Two nodes on top of each other: the layout has something to do.
    lab.write_json(
        "layout.flow",
        flow(
            "layout",
            [node("start", "trigger.manual", 0, 0), node("greet", "transform", 0, 0, output="hi")],
            [{"id": "e1", "source": "start", "target": "greet"}],
        ),
    )
    await open_flow(page, lab, "layout.flow")
    await shot(page, "overlapping")
    await page.get_by_test_id("btn-layout").click()
    await wait_for_file(
        lab, "layout.flow", lambda d: nodes_of(d)["start"]["position"] != nodes_of(d)["greet"]["position"]
    )
    start_box = await rf_node(page, "start").bounding_box()
    greet_box = await rf_node(page, "greet").bounding_box()
    overlap_x = min(start_box["x"] + start_box["width"], greet_box["x"] + greet_box["width"]) - max(
        start_box["x"], greet_box["x"]
    )
    overlap_y = min(start_box["y"] + start_box["height"], greet_box["y"] + greet_box["height"]) - max(
        start_box["y"], greet_box["y"]
    )
    assert overlap_x <= 0 or overlap_y <= 0, f"after the layout the nodes still overlap: {start_box} {greet_box}"
    await shot(page, "laid-out")

    nodes = page.locator(".react-flow__node")
    added = await add_by_double_click(page, "transform")
    await expect(nodes).to_have_count(3)
    await shot(page, "added")
    await page.get_by_test_id("btn-undo").click()
    await expect(rf_node(page, added)).to_have_count(0)
    await expect(nodes).to_have_count(2)
    await shot(page, "undone")
    await page.get_by_test_id("btn-redo").click()
    await expect(rf_node(page, added)).to_be_visible()
    await expect(nodes).to_have_count(3)
    await shot(page, "redone")
    await wait_for_file(lab, "layout.flow", lambda d: added in nodes_of(d))
