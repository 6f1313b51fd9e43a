"""The canvas as the tests see it: .flow files to start from, its selectors, and gestures.

The selectors are the canvas's UI contract (data-testid attributes, plus React Flow v12's own
``.react-flow__node[data-id]`` / ``.react-flow__handle[data-handleid]`` / ``.react-flow__edge``).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from playwright.async_api import Locator, Page, expect

from .harness import Lab, goto, labextension_name, page_config

SETTLE = 20_000  # ms: a change made in one place reaches the canvas / the file
RUN_TIMEOUT = 90_000  # ms: a run started from the canvas finishes on the session's Temporal


# ---------------------------------------------------------------------- .flow files
def node(id: str, type: str, x: float = 0, y: float = 0, label: str | None = None, **config: Any) -> dict:
    out = {"id": id, "type": type, "position": {"x": x, "y": y}, "config": config}
    if label is not None:
        out["label"] = label
    return out


def edge(source: str, target: str, source_port: str | None = None, target_port: str | None = None) -> dict:
    out = {"id": f"e_{source}_{source_port or 'out'}_{target}", "source": source, "target": target}
    if source_port:
        out["sourceHandle"] = source_port
    if target_port:
        out["targetHandle"] = target_port
    return out


def flow(name: str, nodes: list[dict], edges: Sequence[dict] = ()) -> dict:
    """A version-1 .flow document (server/floworch_server/schema/flow-v1.schema.json)."""
    return {
        "version": 1,
        "meta": {"id": str(uuid.uuid4()), "name": name},
        "nodes": list(nodes),
        "edges": list(edges),
    }


def hello(name: str) -> dict:
    """notebooks/hello.flow's shape: a manual trigger with an example input -> a greeting."""
    return flow(
        name,
        [
            node(
                "start",
                "trigger.manual",
                0,
                0,
                label="Start",
                example={"name": "Ada"},
                input_schema={"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            ),
            node("greet", "transform", 320, 0, label="Greet", output={"message": "Hello, {{ input.name }}!"}),
        ],
        [edge("start", "greet")],
    )


async def wait_for_file(lab: Lab, name: str, check: Callable[[dict], Any], timeout: float = SETTLE / 1000) -> dict:
    """Poll the file on disk until ``check(document)`` is truthy (the room saves it after each change)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            doc = lab.read_json(name)
            if check(doc):
                return doc
            last = doc
        except (OSError, ValueError) as exc:  # not written yet, or being written
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{name} on disk did not reach the expected state within {timeout:.0f}s; last: {last!r}"
            )
        await asyncio.sleep(0.2)


async def read_flow(lab: Lab, name: str) -> dict:
    """The file as it is now (waiting out a save in progress: the room rewrites it)."""
    return await wait_for_file(lab, name, lambda d: True)


def nodes_of(doc: dict) -> dict[str, dict]:
    return {n["id"]: n for n in doc["nodes"]}


# ---------------------------------------------------------------------- selectors
def canvas(page: Page | Locator) -> Locator:
    return page.locator('[data-testid="flow-canvas"]')


def rf_node(scope: Page | Locator, node_id: str) -> Locator:
    """React Flow's wrapper of a node (carries the ``selected`` class, holds the handles)."""
    return scope.locator(f'.react-flow__node[data-id="{node_id}"]')


def node_body(scope: Page | Locator, node_id: str) -> Locator:
    return scope.get_by_test_id(f"node-{node_id}")


def handle(scope: Page | Locator, node_id: str, kind: str, port: str | None = None) -> Locator:
    """A node's handle: of ``port``, or without one the node's port (not the compensate handle
    at an activity's bottom, nor the top one an undo link ends at)."""
    selector = f'.react-flow__node[data-id="{node_id}"] .react-flow__handle.{kind}'
    if port:
        selector += f'[data-handleid="{port}"]'
    else:
        selector += ":not(.fo-handle-compensate):not(.fo-handle-compensates)"
    return scope.locator(selector)


def edges(scope: Page | Locator) -> Locator:
    return scope.locator(".react-flow__edge")


async def node_ids(scope: Page | Locator) -> list[str]:
    return [i for i in await scope.locator(".react-flow__node").evaluate_all("els => els.map(e => e.dataset.id)") if i]


# ---------------------------------------------------------------------- opening
async def assert_canvas_extension_loaded(page: Page) -> None:
    name = labextension_name()
    config = await page_config(page)
    loaded = sorted(ext["name"] for ext in config.get("federated_extensions", []))
    assert name in loaded, (
        f"JupyterLab does not load the FlowOrchestrator labextension {name!r}; federated extensions: {loaded} "
        "(make install links floworch_ext/labextension into the venv)"
    )


async def open_flow(page: Page, lab: Lab, name: str) -> Locator:
    """Open ``name`` (in the lab root) through /lab/tree/<name>; wait until the canvas shows every
    node of the file (the room has synced). Returns the canvas."""
    await goto(page, lab, name)
    await assert_canvas_extension_loaded(page)
    root = canvas(page)
    await expect(root).to_be_visible(timeout=30_000)
    for node_id in nodes_of(await read_flow(lab, name)):
        await expect(rf_node(root, node_id)).to_be_visible()
    return root


# ---------------------------------------------------------------------- gestures
def _centre(box: Any) -> tuple[float, float]:  # a bounding box
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _inside(inner: Any, outer: Any) -> bool:  # bounding boxes (x, y, width, height), or None
    return (
        inner is not None
        and outer is not None
        and (
            inner["x"] >= outer["x"]
            and inner["y"] >= outer["y"]
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"]
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"]
        )
    )


async def until(check: Callable[[], Any], timeout: float = SETTLE / 1000, what: str = "condition") -> Any:
    """Poll an async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {timeout:.0f}s (last: {result!r})")
        await asyncio.sleep(0.1)


async def out_of_view(scope: Page | Locator, node_ids: list[str]) -> list[str]:
    """The nodes (of those given) not wholly inside the visible pane of the canvas."""
    pane = await scope.locator(".react-flow__pane").bounding_box()
    return [n for n in node_ids if not _inside(await rf_node(scope, n).bounding_box(), pane)]


async def bring_into_view(page: Page, node_ids: list[str]) -> None:
    """What a user does before reaching for a node outside the view: React Flow's "fit view"."""
    if await out_of_view(page, node_ids):
        await page.locator(".react-flow__controls-fitview").click()
        await until(lambda: _none(out_of_view(page, node_ids)), what=f"nodes {node_ids} in view after fit view")


async def _none(coro) -> bool:
    return not await coro


async def drag_connect(
    page: Page, source: str, target: str, source_port: str | None = None, target_port: str | None = None
) -> None:
    """Draw a connection with the mouse, from the source handle of ``source`` to the target handle of ``target``."""
    start = handle(page, source, "source", source_port)
    end = handle(page, target, "target", target_port)
    await bring_into_view(page, [source, target])
    await expect(start).to_be_visible()
    await expect(end).to_be_visible()
    sx, sy = _centre(await start.bounding_box())
    tx, ty = _centre(await end.bounding_box())
    await page.mouse.move(sx, sy)
    await page.mouse.down()
    await page.mouse.move(sx + (tx - sx) / 4, sy + (ty - sy) / 4, steps=5)
    await page.mouse.move(tx, ty, steps=15)
    await page.mouse.up()


async def add_by_double_click(page: Page, node_type: str) -> str:
    """Double-click the palette item of ``node_type``; returns the new node's id."""
    before = set(await node_ids(page))
    await page.get_by_test_id(f"palette-item-{node_type}").dblclick()
    return await _new_node(page, before, node_type)


async def add_by_drag(page: Page, node_type: str, x: float, y: float) -> str:
    """Drag the palette item of ``node_type`` onto the pane at (x, y) of the pane; returns the new node's id."""
    before = set(await node_ids(page))
    await page.get_by_test_id(f"palette-item-{node_type}").drag_to(
        page.locator(".react-flow__pane"), target_position={"x": x, "y": y}
    )
    return await _new_node(page, before, node_type)


async def _new_node(page: Page, before: set[str], node_type: str) -> str:
    nodes = page.locator(".react-flow__node")
    await expect(nodes).to_have_count(len(before) + 1)
    new = sorted(set(await node_ids(page)) - before)
    assert len(new) == 1, f"expected one new node, got {new}"
    await expect(node_body(page, new[0])).to_have_attribute("data-type", node_type)
    return new[0]


SELECTED = re.compile(r"(^|\s)selected(\s|$)")


# ---------------------------------------------------------------------- network faults
ROOM_SOCKET = re.compile(r"/api/collaboration/room/text(:|%3A)flow(:|%3A)")


class RoomLinks:
    """A page's websockets to .flow rooms, through Playwright, so a test can cut them.

    Chromium's offline emulation (``context.set_offline``) leaves open websockets alone, so it
    cannot take a canvas offline. Here ``cut()`` closes the page's room sockets (as a dropped
    connection would) and refuses reconnections until ``restore()``; the page's provider keeps
    retrying meanwhile, as it would on a real network, and connects again after it.
    """

    def __init__(self) -> None:
        self.online = True
        self.routes: list[Any] = []

    @classmethod
    async def install(cls, page: Page) -> RoomLinks:
        links = cls()
        await page.route_web_socket(ROOM_SOCKET, links._route)
        return links

    async def _route(self, ws: Any) -> None:
        if not self.online:
            await ws.close(code=4000, reason="network down (test)")  # before it ever opens
            return
        ws.connect_to_server()  # messages pass through unchanged
        self.routes.append(ws)

    async def cut(self) -> None:
        self.online = False
        routes, self.routes = self.routes, []
        for ws in routes:
            await ws.close(code=4000, reason="network down (test)")  # closes the server side too

    def restore(self) -> None:
        self.online = True
