"""From the canvas to Temporal: publishing versions, starting runs from the run form, per-node
status as the run goes, node run details, and deciding a human approval on the canvas.

The runs execute on the session's Temporal dev server and worker (repo-root conftest.py),
which the lab's FlowOrchestrator extension uses.
"""

from __future__ import annotations

import json
import re

from playwright.async_api import Page, expect

from .canvas import RUN_TIMEOUT, add_by_double_click, drag_connect, edge, flow, hello, node, node_body, open_flow
from .harness import Lab, shot


async def open_run_form(page: Page) -> None:
    await page.get_by_test_id("btn-run").click()
    await expect(page.get_by_test_id("run-version")).to_be_visible()
    await expect(page.get_by_test_id("run-input")).to_be_visible()


async def runs_of(lab: Lab, workflow_id: str) -> list[dict]:
    response = await lab.api_async("GET", "floworch/api/runs", params={"workflow_id": workflow_id})
    assert response.status_code == 200, response.text
    return response.json()


async def test_publish_a_version_with_a_note(lab, page):
    doc = hello("publish")
    lab.write_json("publish.flow", doc)
    await open_flow(page, lab, "publish.flow")

    await page.get_by_test_id("btn-publish").click()
    note = page.get_by_test_id("publish-note")
    await expect(note).to_be_visible()
    await note.fill("first release")
    await shot(page, "publish-dialog")
    await page.get_by_test_id("publish-confirm").click()
    await expect(page.get_by_test_id("toast")).to_contain_text("Published version 1")
    await shot(page, "published")

    await page.get_by_test_id("btn-versions").click()
    versions = page.get_by_test_id("versions")
    await expect(versions).to_be_visible()
    await expect(versions.get_by_test_id("version-1")).to_contain_text("first release")
    await shot(page, "versions")

    # The server holds the version, under the file's meta.id.
    response = await lab.api_async("GET", f"floworch/api/workflows/{doc['meta']['id']}/versions")
    assert response.status_code == 200, response.text
    assert [(v["version"], v["note"]) for v in response.json()] == [(1, "first release")]

    # The run form offers it next to the draft.
    await open_run_form(page)
    options = await page.get_by_test_id("run-version").locator("option").all_inner_texts()
    assert any(re.search("draft", o, re.I) for o in options), options
    assert any(re.search(r"\b1\b", o) for o in options), options
    await shot(page, "run-form-versions")


async def publish(page: Page, note: str, number: int) -> None:
    await page.get_by_test_id("btn-publish").click()
    await page.get_by_test_id("publish-note").fill(note)
    await page.get_by_test_id("publish-confirm").click()
    await expect(page.get_by_test_id("toast")).to_contain_text(f"Published version {number}")


async def test_the_versions_panel_diffs_two_versions_by_nodes_and_edges(lab, page):
    lab.write_json("diff.flow", hello("diff"))
    await open_flow(page, lab, "diff.flow")
    await publish(page, "first", 1)

    # Change a node's label and config, add a node: then version 2.
    await node_body(page, "greet").click()
    await page.get_by_test_id("field-label").fill("Welcome")
    await page.get_by_test_id("field-output").fill("Welcome, {{ input.name }}!")
    await page.locator(".react-flow__pane").click(position={"x": 20, "y": 20})
    added = await add_by_double_click(page, "transform")
    await page.get_by_test_id("field-output").fill("{{ nodes.greet.output }}")
    await drag_connect(page, "greet", added)
    await expect(page.get_by_test_id("problems")).to_contain_text("valid")
    await publish(page, "second", 2)
    await shot(page, "two-versions")

    await page.get_by_test_id("btn-versions").click()
    versions = page.get_by_test_id("versions")
    await expect(versions.get_by_test_id("version-2")).to_contain_text("second")
    await versions.get_by_test_id("diff-from").select_option("1")
    await versions.get_by_test_id("diff-to").select_option("2")
    await versions.get_by_test_id("diff-compare").click()
    diff = versions.get_by_test_id("diff")
    await expect(diff).to_contain_text(f"+ node {added}")
    await expect(diff).to_contain_text("~ node greet: label, config.output")
    await expect(diff).to_contain_text(f"+ edge greet.out → {added}.in")
    await expect(diff).not_to_contain_text("start")
    await shot(page, "diff")

    # And the draft against itself has nothing to show.
    await versions.get_by_test_id("diff-from").select_option("2")
    await versions.get_by_test_id("diff-to").select_option("draft")
    await versions.get_by_test_id("diff-compare").click()
    await expect(diff).to_contain_text("No difference")


async def test_run_the_draft_from_the_run_form_and_watch_nodes_succeed(lab, page):
    doc = hello("run")
    lab.write_json("run.flow", doc)
    await open_flow(page, lab, "run.flow")
    for node_id in ("start", "greet"):
        await expect(node_body(page, node_id)).to_have_attribute("data-status", "idle")

    await open_run_form(page)
    options = await page.get_by_test_id("run-version").locator("option").all_inner_texts()
    assert any(re.search("draft", o, re.I) for o in options), options
    await page.get_by_test_id("run-version").select_option("draft")
    run_input = page.get_by_test_id("run-input")
    await expect(run_input).to_have_value(re.compile("Ada"))  # pre-filled from the trigger's example
    assert json.loads(await run_input.input_value()) == {"name": "Ada"}
    await run_input.fill(json.dumps({"name": "Grace"}))
    await shot(page, "run-form")

    await page.get_by_test_id("run-start").click()
    status = page.get_by_test_id("run-status")
    await expect(status).to_be_visible()
    await shot(page, "started")
    await expect(status).to_have_text("success", timeout=RUN_TIMEOUT)
    for node_id in ("start", "greet"):
        await expect(node_body(page, node_id)).to_have_attribute("data-status", "success")
    await shot(page, "succeeded")

    await node_body(page, "greet").click()
    details = page.get_by_test_id("node-run-details")
    await expect(details).to_be_visible()
    await expect(details).to_contain_text("Hello, Grace!")
    await shot(page, "node-run-details")

    runs = await runs_of(lab, doc["meta"]["id"])
    assert [r["status"] for r in runs] == ["success"], runs


async def test_a_failing_node_shows_failed_with_its_error(lab, page):
    lab.write_json(
        "failing.flow",
        flow(
            "failing",
            [
                node("start", "trigger.manual", 0, 0, example={}),
                node("boom", "test.fail", 320, 0, fail_times=1, permanent=True, message="boom on purpose"),
            ],
            [edge("start", "boom")],
        ),
    )
    await open_flow(page, lab, "failing.flow")
    await open_run_form(page)
    await page.get_by_test_id("run-version").select_option("draft")
    await page.get_by_test_id("run-start").click()
    await expect(page.get_by_test_id("run-status")).to_have_text("failed", timeout=RUN_TIMEOUT)
    await expect(node_body(page, "start")).to_have_attribute("data-status", "success")
    await expect(node_body(page, "boom")).to_have_attribute("data-status", "failed")
    await shot(page, "failed")

    await node_body(page, "boom").click()
    details = page.get_by_test_id("node-run-details")
    await expect(details).to_be_visible()
    await expect(details).to_contain_text("boom on purpose")
    await shot(page, "error-details")


async def test_an_approval_waits_on_the_canvas_until_approved(lab, page):
    lab.write_json(
        "approval.flow",
        flow(
            "approval",
            [
                node("start", "trigger.manual", 0, 0, example={"amount": 5}),
                node(
                    "review", "control.approval", 320, 0, title="Check the amount", message="Amount: {{ input.amount }}"
                ),
                node("done", "transform", 640, -80, output={"ok": True}),
                node("refused", "transform", 640, 80, output={"ok": False}),
            ],
            [edge("start", "review"), edge("review", "done", "approved"), edge("review", "refused", "rejected")],
        ),
    )
    await open_flow(page, lab, "approval.flow")
    await open_run_form(page)
    await page.get_by_test_id("run-version").select_option("draft")
    await expect(page.get_by_test_id("run-input")).to_have_value(re.compile("amount"))
    await page.get_by_test_id("run-start").click()

    await expect(node_body(page, "review")).to_have_attribute("data-status", "waiting", timeout=RUN_TIMEOUT)
    await expect(page.get_by_test_id("run-status")).not_to_have_text("success")
    approve = page.get_by_test_id("approve-review")
    await expect(approve).to_be_visible()
    await expect(page.get_by_test_id("reject-review")).to_be_visible()
    await shot(page, "waiting")

    await approve.click()
    await expect(page.get_by_test_id("run-status")).to_have_text("success", timeout=RUN_TIMEOUT)
    await expect(node_body(page, "review")).to_have_attribute("data-status", "success")
    await expect(node_body(page, "done")).to_have_attribute("data-status", "success")
    await expect(node_body(page, "refused")).not_to_have_attribute("data-status", "success")
    await expect(approve).to_have_count(0)
    await shot(page, "approved")
