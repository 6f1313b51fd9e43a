"""Working on several nodes at once: multi-select, copy and paste, delete, and undoing it.

Keyboard shortcuts go to the canvas (React Flow's nodes take the focus when clicked); what the
canvas does is checked on the canvas and in the file the room saves.
"""

from __future__ import annotations

from playwright.async_api import expect

from .canvas import SELECTED, canvas, edge, edges, flow, node, node_ids, nodes_of, open_flow, rf_node, wait_for_file
from .harness import shot


def chain() -> dict:
    return flow(
        "chain",
        [
            node("start", "trigger.manual", 0, 0, label="Start"),
            node("a", "transform", 300, 0, label="A", output="{{ input }}"),
            node("b", "transform", 600, 0, label="B", output="{{ nodes.a.output }}"),
        ],
        [edge("start", "a"), edge("a", "b")],
    )


async def test_selected_nodes_are_copied_pasted_deleted_and_the_delete_undone(lab, page):
    lab.write_json("chain.flow", chain())
    root = await open_flow(page, lab, "chain.flow")
    await expect(edges(root)).to_have_count(2)

    # Shift-click adds to the selection.
    await rf_node(root, "a").click()
    await rf_node(root, "b").click(modifiers=["Shift"])
    for node_id in ("a", "b"):
        await expect(rf_node(root, node_id)).to_have_class(SELECTED)
    await expect(rf_node(root, "start")).not_to_have_class(SELECTED)
    await shot(page, "two-selected")

    # Copy and paste: the two nodes and the edge between them, under new ids, selected.
    await page.keyboard.press("Control+c")
    await page.keyboard.press("Control+v")
    await expect(root.locator(".react-flow__node")).to_have_count(5)
    await expect(edges(root)).to_have_count(3)
    pasted = sorted(set(await node_ids(root)) - {"start", "a", "b"})
    assert len(pasted) == 2 and all(p.startswith("transform_") for p in pasted), pasted
    for node_id in pasted:
        await expect(rf_node(root, node_id)).to_have_class(SELECTED)
    await shot(page, "pasted")
    saved = await wait_for_file(lab, "chain.flow", lambda d: len(d["nodes"]) == 5)
    copies = {n["id"]: n for n in saved["nodes"] if n["id"] in pasted}
    assert sorted(n["label"] for n in copies.values()) == ["A", "B"]
    assert any(e["source"] in pasted and e["target"] in pasted for e in saved["edges"])

    # Delete removes the selection and its edges; the originals stay.
    await page.keyboard.press("Delete")
    await expect(root.locator(".react-flow__node")).to_have_count(3)
    await expect(edges(root)).to_have_count(2)
    await shot(page, "deleted")
    await wait_for_file(
        lab, "chain.flow", lambda d: sorted(nodes_of(d)) == ["a", "b", "start"] and len(d["edges"]) == 2
    )

    # Undo brings the deleted nodes back.
    await page.keyboard.press("Control+z")
    await expect(root.locator(".react-flow__node")).to_have_count(5)
    await expect(edges(root)).to_have_count(3)
    await shot(page, "undone")
    await wait_for_file(lab, "chain.flow", lambda d: len(d["nodes"]) == 5)


async def test_the_canvas_follows_jupyterlabs_dark_theme(lab, page):
    lab.write_json("theme.flow", chain())
    root = await open_flow(page, lab, "theme.flow")
    await expect(root).not_to_have_class("fo-canvas fo-dark")
    light = await root.evaluate("el => getComputedStyle(el).backgroundColor")

    async def choose(theme: str) -> None:
        await page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
        await page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
        await page.locator(".lm-Menu-itemLabel").get_by_text(theme, exact=True).click()

    await choose("JupyterLab Dark")
    try:
        await expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        await expect(canvas(page)).to_have_class("fo-canvas fo-dark")
        dark = await root.evaluate("el => getComputedStyle(el).backgroundColor")
        assert dark != light, (light, dark)
        await shot(page, "dark")
    finally:
        # The theme is a user setting of the shared lab: put it back for the other tests.
        await choose("JupyterLab Light")
        await expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "true")
