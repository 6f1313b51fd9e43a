"""A big flow zoomed out: the far view draws the nodes on one canvas instead of as DOM.

Below a zoom of 0.4 every node is drawn by the far view (``[data-testid=far-view]``, its
``data-drawn`` the number of nodes it draws); from 0.5 the nodes in and near the view are DOM
nodes again once the view rests, and the rest stay drawn. While the zoom changes the far view
draws at half resolution: sharp again once it rests. Drawn nodes are still clicked (the
properties open) and dragged (the file the room saves has the new position); the minimap
moves the view. A long pan moves the drawn nodes smoothly, also each time the far view redraws
(its canvas overhangs the pane and is moved back with its new picture: both in one frame).
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import re

import numpy as np
from PIL import Image
from playwright.async_api import expect

from .canvas import canvas, edge, flow, node, rf_node, until, wait_for_file
from .harness import goto, shot

# Whether the far view's canvas has a pixel for each of the screen's (not the half it has while
# the zoom changes).
SHARP_JS = """() => {
  const c = document.querySelector('[data-testid="far-view"]');
  return c.width === Math.round(c.getBoundingClientRect().width * devicePixelRatio);
}"""
TRIGGER_STRIPE = (0xF9, 0xA8, 0x25)  # the far view's stripe of a Triggers node (light theme)
COLS, ROWS = 12, 5  # 60 nodes, 3,120 x 700 flow units: fitting them needs a zoom of about 0.3


def wide_flow() -> dict:
    nodes = [node("start", "trigger.manual", 0, 0, label="Start")]
    edges = []
    for i in range(COLS * ROWS - 1):
        row, col = divmod(i + 1, COLS)
        nodes.append(node(f"t{i + 1}", "transform", 260 * col, 140 * row, label=f"Step {i + 1}", output="{{ input }}"))
        edges.append(edge(nodes[-2]["id"] if col else nodes[-1 - COLS]["id"], f"t{i + 1}"))
    return flow("wide", nodes, edges)


async def view(page) -> tuple[float, float, float]:
    style = await page.locator(".react-flow__viewport").get_attribute("style")
    m = re.search(r"translate\(([-\d.]+)px, ([-\d.]+)px\) scale\(([\d.]+)\)", style or "")
    assert m, style
    return float(m[1]), float(m[2]), float(m[3])


async def on_screen(page, x: float, y: float) -> tuple[float, float]:
    """Where a point of the flow is on the page."""
    tx, ty, zoom = await view(page)
    box = await page.locator(".react-flow").bounding_box()
    return box["x"] + tx + x * zoom, box["y"] + ty + y * zoom


async def test_zoomed_out_nodes_are_drawn_clicked_dragged_and_become_dom_when_zoomed_in(lab, page):
    lab.write_json("wide.flow", wide_flow())
    await goto(page, lab, "wide.flow")
    root = canvas(page)
    far = root.get_by_test_id("far-view")

    # The whole flow in view is below the far view's zoom: all 60 drawn, none of them DOM.
    await page.locator(".react-flow__controls-fitview").click()
    await expect(far).to_have_attribute("data-drawn", str(COLS * ROWS), timeout=30_000)
    await expect(root.locator(".react-flow__node")).to_have_count(0)
    assert (await view(page))[2] < 0.4
    await shot(page, "far-view")

    # Zoomed out a step (still far): drawn at half resolution while zooming, sharp once it rests.
    pane = await root.locator(".react-flow__pane").bounding_box()
    await page.mouse.move(pane["x"] + pane["width"] / 2, pane["y"] + pane["height"] / 2)
    await page.mouse.wheel(0, 100)
    await until(lambda: page.evaluate(SHARP_JS), what="the far view drawn sharp again after the zoom")
    assert (await view(page))[2] < 0.4

    # A click on a drawn node selects it: its properties open.
    x, y = await on_screen(page, 260 * 5 + 60, 140 * 2 + 25)  # t29: row 2, column 5
    await page.mouse.click(x, y)
    await expect(root.get_by_test_id("properties")).to_contain_text("t29")
    await shot(page, "far-node-selected")

    # A drag moves it in the shared document, snapped to the grid like a DOM node's.
    _, _, zoom = await view(page)
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + 30, y + 45, steps=6)
    await page.mouse.up()
    expected = (round((260 * 5 + 30 / zoom) / 10) * 10, round((140 * 2 + 45 / zoom) / 10) * 10)
    await wait_for_file(
        lab,
        "wide.flow",
        lambda d: next(n for n in d["nodes"] if n["id"] == "t29")["position"] == {"x": expected[0], "y": expected[1]},
    )
    await shot(page, "far-node-dragged")

    # Zoomed in on it: the nodes around it are DOM again, the rest still drawn.
    x, y = await on_screen(page, expected[0] + 60, expected[1] + 25)
    await page.mouse.move(x, y)
    for _ in range(12):
        await page.mouse.wheel(0, -100)
    await until(lambda: view(page), what="zoom")
    assert (await view(page))[2] >= 0.5, await view(page)
    await expect(rf_node(root, "t29")).to_be_visible()
    # (They become DOM a few a frame: counted once that has settled. React Flow renders those
    # of them in the view; the far view draws the ones far from it.)
    last: list = [None]

    async def settled():
        drawn = int(await far.get_attribute("data-drawn"))
        done = drawn == last[0]
        last[0] = drawn
        return done and drawn

    drawn = await until(settled, what="drawn nodes settled")
    shown = await root.locator(".react-flow__node").count()
    assert 0 < drawn < COLS * ROWS and 0 < shown <= COLS * ROWS - drawn, (shown, drawn)
    await shot(page, "zoomed-in")

    # The minimap moves the view to where it is pressed.
    before = await view(page)
    mini = await root.get_by_test_id("minimap").bounding_box()
    await page.mouse.click(mini["x"] + mini["width"] * 0.15, mini["y"] + mini["height"] * 0.5)
    await until(lambda: _moved(page, before), what="the view moved by the minimap")
    await shot(page, "minimap-moved")


async def _moved(page, before) -> bool:
    now = await view(page)
    return abs(now[0] - before[0]) > 50 and now[2] == before[2]


def stripe_x(png: bytes, box: dict) -> float | None:
    """The mean x (page pixels) of the trigger's stripe in a frame of the page, within ``box``
    (every second row: a stripe is taller than that)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    x0, y0 = int(box["x"]), int(box["y"])
    area = pixels[y0 : y0 + int(box["height"]) : 2, x0 : x0 + int(box["width"])]
    _, xs = np.nonzero((np.abs(area - np.array(TRIGGER_STRIPE)) < 14).all(axis=2))
    return float(xs.mean()) + x0 if xs.size else None


async def test_a_long_pan_moves_the_far_view_smoothly_every_frame(lab, page):
    lab.write_json("wide.flow", wide_flow())
    await goto(page, lab, "wide.flow")
    root = canvas(page)
    await page.locator(".react-flow__controls-fitview").click()
    await expect(root.get_by_test_id("far-view")).to_have_attribute("data-drawn", str(COLS * ROWS), timeout=30_000)
    pane = await root.locator(".react-flow__pane").bounding_box()

    # Every frame the page shows, while the pane is dragged 500 px right, left, right, ...: the
    # far view redraws each time the pan has gone past its canvas's overhang.
    cdp = await page.context.new_cdp_session(page)
    frames: list[bytes] = []

    async def keep(frame: dict) -> None:
        frames.append(base64.b64decode(frame["data"]))
        await cdp.send("Page.screencastFrameAck", {"sessionId": frame["sessionId"]})

    cdp.on("Page.screencastFrame", lambda frame: asyncio.ensure_future(keep(frame)))
    x, y = pane["x"] + 100, pane["y"] + 30  # above the flow: an empty spot
    await page.mouse.move(x, y)
    await cdp.send("Page.startScreencast", {"format": "png", "everyNthFrame": 1})
    await page.mouse.down()
    for stroke in range(10):
        for _ in range(50):
            x += 10 if stroke % 2 == 0 else -10
            await page.mouse.move(x, y)
    await page.mouse.up()
    await asyncio.sleep(0.5)
    await cdp.send("Page.stopScreencast")
    await shot(page, "panned")

    # The trigger moves with the mouse, 10 px a step: never a jump of the whole picture.
    track = [stripe_x(png, pane) for png in frames]
    seen = [t for t in track if t is not None]
    assert len(seen) >= 100 and max(seen) - min(seen) >= 400, (
        f"the trigger was not followed through the pan: {len(seen)} of {len(frames)} frames"
    )
    jumps = [
        (k, round(a), round(b))
        for k, (a, b) in enumerate(itertools.pairwise(track))
        if a is not None and b is not None and abs(b - a) > 100
    ]
    assert not jumps, f"the far view's picture jumped between frames (frame, x before, x after): {jumps}"
