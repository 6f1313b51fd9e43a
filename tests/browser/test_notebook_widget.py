"""The canvas in a notebook: `fo.Canvas(flow)` renders it in the output area, joined to the same
room as the kernel's `fo.Flow`, so an edit made in Python appears on it."""

from __future__ import annotations

from playwright.async_api import Locator, Page, expect

from .canvas import canvas, hello, nodes_of, rf_node, wait_for_file
from .harness import goto, shot

KERNEL_TIMEOUT = 90_000  # ms: kernel start, `import floworch`, joining the room


def notebook(*cells: str) -> dict:
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


async def run_cell(page: Page, cell: Locator) -> None:
    await cell.locator(".jp-InputArea-editor .cm-content").click()
    await page.keyboard.press("Shift+Enter")


async def output_text(cell: Locator) -> str:
    return (await cell.locator(".jp-OutputArea").inner_text()).strip() or "(no output)"


async def test_the_notebook_widget_renders_the_canvas_and_shows_kernel_edits(lab, page):
    lab.write_json("widget.flow", hello("widget"))
    lab.write_json(
        "widget.ipynb",
        notebook(
            'import floworch as fo\nflow = fo.Flow.open("widget.flow")\nfo.Canvas(flow)',
            'flow.add_node("transform", "added_in_kernel", config={"output": "{{ input }}"})',
        ),
    )
    await goto(page, lab, "widget.ipynb")
    cells = page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell")
    await expect(cells).to_have_count(2)
    await expect(page.locator(".jp-NotebookPanel:visible .jp-Notebook-ExecutionIndicator")).to_have_attribute(
        "data-status", "idle", timeout=KERNEL_TIMEOUT
    )
    await shot(page, "notebook")

    first, second = cells.nth(0), cells.nth(1)
    await run_cell(page, first)
    widget = canvas(first.locator(".jp-OutputArea"))
    error = first.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    try:
        # The canvas, or the traceback that says why not (no waiting for a timeout then).
        await expect(widget.or_(error).first).to_be_visible(timeout=KERNEL_TIMEOUT)
        await expect(widget).to_be_visible(timeout=1_000)
    except AssertionError as exc:
        raise AssertionError(f"the cell shows no canvas; its output: {await output_text(first)}") from exc
    for node_id in ("start", "greet"):
        await expect(rf_node(widget, node_id)).to_be_visible()
    await shot(page, "widget")
    # It is in the room itself (the browser's own connection, not a relay through the kernel).
    await expect(widget.get_by_test_id("sync-status")).to_have_text("online")

    await run_cell(page, second)
    try:
        await expect(rf_node(widget, "added_in_kernel")).to_be_visible(timeout=30_000)
    except AssertionError as exc:
        raise AssertionError(
            f"the kernel's node is not on the widget; the cell's output: {await output_text(second)}"
        ) from exc
    await expect(widget.get_by_test_id("node-added_in_kernel")).to_have_attribute("data-type", "transform")
    await shot(page, "kernel-edit-shown")
    await wait_for_file(lab, "widget.flow", lambda d: "added_in_kernel" in nodes_of(d))
