"""Root cause in two clicks: from the Dashboard's failing node type to the failed node's error.

A run fails at an action.http node (a small HTTP server in the test answers 422 with a body).
On the Dashboard, "Failing node types" lists action.http with its failed runs; click 1 lists
them, click 2 opens the run's Run panel with the failed node selected, where the inspector
already shows the error message, its kind, the cause chain with its stack trace and the inputs
the node was given. The test counts its clicks: nothing else is clicked on the way.
"""

from __future__ import annotations

import re

from playwright.async_api import Locator, Page, expect

from support.receiver import Receiver

from .canvas import edge, flow, node
from .harness import shot
from .test_panels import PANEL_TIMEOUT, api_json, open_dashboard, run_panel, wait_run

MAX_CLICKS = 3  # the bound: dashboard -> failed run -> error
CUSTOMER = "cus-7Q2X"  # given to fetch, echoed back, so among the inputs charge failed on


def checkout(name: str, base: str) -> dict:
    """start -> fetch (200, echoes what it got) -> charge (422 "card declined"), no retries."""
    policy = {"retry": {"max_attempts": 1}}
    return flow(
        name,
        [
            node("start", "trigger.manual", 0, 0, example={"customer": "cus-1"}),
            {
                **node(
                    "fetch",
                    "action.http",
                    260,
                    0,
                    method="POST",
                    url=f"{base}/fetch",
                    json={"customer": "{{ input.customer }}"},
                ),
                "policy": policy,
            },
            {
                **node("charge", "action.http", 520, 0, method="POST", url=f"{base}/charge", json={"amount": 1250}),
                "policy": policy,
            },
        ],
        [edge("start", "fetch"), edge("fetch", "charge")],
    )


class Clicks:
    """Every click of the walk, counted."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.done: list[str] = []

    async def click(self, target: Locator, what: str) -> None:
        await expect(target).to_be_visible(timeout=PANEL_TIMEOUT)
        await target.click()
        self.done.append(what)


async def test_two_clicks_lead_from_the_failing_node_type_to_the_failed_nodes_error_and_inputs(lab, page):
    receiver = Receiver().start()
    try:
        doc = checkout("root-cause-checkout", receiver.base)
        await api_json(lab, "POST", "workflows", json={"document": doc})
        await api_json(lab, "POST", f"workflows/{doc['meta']['id']}/publish", json={"note": "v1"})
        started = await api_json(
            lab, "POST", f"workflows/{doc['meta']['id']}/runs", json={"input": {"customer": CUSTOMER}}
        )
        run_id = started["run_id"]
        assert (await wait_run(lab, run_id))["status"] == "failed"
    finally:
        receiver.stop()

    # What the server knows of the failure, to compare the page with.
    [letter] = [
        x
        for x in await api_json(lab, "GET", "dead-letters", params={"workflow_id": doc["meta"]["id"]})
        if x["run_id"] == run_id
    ]
    assert (letter["node"], letter["node_type"], letter["error_kind"]) == ("charge", "action.http", "HttpStatus422"), (
        letter
    )
    inspected = await api_json(lab, "GET", f"runs/{run_id}/nodes/charge")
    [call] = inspected["calls"].values()
    assert CUSTOMER in str(call["inputs"]), call["inputs"]
    traced = [link for link in call["error"] if link["stack_trace"]]
    assert traced, f"no link of the cause chain has a stack trace: {call['error']!r}"
    frame = next(line.strip() for line in traced[0]["stack_trace"].splitlines() if line.strip())

    dashboard = await open_dashboard(page)  # opening the dashboard is where the walk starts
    await shot(page, "dashboard")
    clicks = Clicks(page)

    # Click 1: the failing node type, near the top of the dashboard, with its count of failed runs.
    failing = dashboard.locator('[data-testid="failing-node-type"][data-node-type="action.http"]')
    await expect(failing).to_contain_text("failed run", timeout=PANEL_TIMEOUT)
    await expect(failing).to_contain_text("HttpStatus422")
    await clicks.click(failing, "failing-node-type")
    letters = dashboard.get_by_test_id("dead-letters")
    await expect(letters).to_have_attribute("data-node-type", "action.http")
    row = letters.locator(f'[data-testid="dead-letter"][data-run-id="{run_id}"]')
    await expect(row).to_be_in_viewport(timeout=PANEL_TIMEOUT)  # brought into view, no scrolling needed
    await expect(row).to_contain_text("charge")
    await expect(row).to_contain_text("card declined")
    listed = await letters.get_by_test_id("dead-letter").all_inner_texts()
    assert listed and all("action.http" in text for text in listed), listed  # that type's failed runs only
    await shot(page, "click-1-failed-runs-of-action.http")

    # Click 2: the failed run. Its Run panel opens with the failed node selected.
    await clicks.click(row.get_by_test_id("dead-letter-open"), "failed-run")
    panel = run_panel(page, run_id)
    await expect(panel).to_be_visible()
    await expect(panel).to_have_attribute("data-status", "failed", timeout=PANEL_TIMEOUT)
    inspector = panel.get_by_test_id("inspector")
    await expect(inspector).to_have_attribute("data-node", "charge")
    await expect(inspector).to_have_attribute("data-loaded", "true", timeout=PANEL_TIMEOUT)
    await expect(panel.locator('[data-testid="gantt-row"][data-node="charge"]')).to_have_class(
        re.compile(r"\bfo-gantt-row-selected\b")
    )
    await expect(inspector.get_by_test_id("inspector-status")).to_have_text("failed")
    await shot(page, "click-2-run-at-its-failed-node")

    # All of the root cause is shown, without another click.
    error = inspector.get_by_test_id("inspector-error")
    await expect(error).to_be_in_viewport()
    await expect(inspector.get_by_test_id("inspector-error-message")).to_contain_text("card declined")
    await expect(inspector.get_by_test_id("inspector-error-kind")).to_have_text("HttpStatus422")
    causes = inspector.get_by_test_id("inspector-cause")
    await expect(causes).to_have_count(len(call["error"]))
    await expect(causes.first).to_contain_text(call["error"][0]["message"])
    await expect(inspector.get_by_test_id("inspector-stack").first).to_contain_text(frame)
    await expect(inspector.get_by_test_id("inspector-inputs")).to_contain_text(CUSTOMER)
    for shown in (inspector.get_by_test_id("inspector-inputs"), causes.first):
        await expect(shown).to_be_in_viewport()  # in the same view as the error, nothing to scroll
    await shot(page, "root-cause-shown")

    assert len(clicks.done) <= MAX_CLICKS, clicks.done
    assert clicks.done == ["failing-node-type", "failed-run"]
