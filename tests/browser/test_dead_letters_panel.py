"""The Dashboard's dead letters on a real run: a run that failed at an HTTP node is listed with
its node and error kind, one click on its node type (the latency table) lists it, and
"Resume from failed node" starts a run that reuses what succeeded before and does not call it
again (counted at a small HTTP receiver in the test)."""

from __future__ import annotations

from playwright.async_api import expect

from support.receiver import Receiver

from .canvas import edge, flow, node
from .harness import shot
from .test_panels import PANEL_TIMEOUT, api_json, open_dashboard, wait_run


def checkout(name: str, base: str) -> dict:
    """start -> fetch (200) -> charge (422 until the receiver is fixed)."""
    policy = {"retry": {"max_attempts": 1}}
    return flow(
        name,
        [
            node("start", "trigger.manual", 0, 0, example={"id": 1}),
            {
                **node(
                    "fetch",
                    "action.http",
                    260,
                    0,
                    method="POST",
                    url=f"{base}/fetch",
                    json={"customer": "{{ input.id }}"},
                ),
                "policy": policy,
            },
            {
                **node(
                    "charge",
                    "action.http",
                    520,
                    0,
                    method="POST",
                    url=f"{base}/charge",
                    json={"customer": "{{ input.id }}"},
                ),
                "policy": policy,
            },
        ],
        [edge("start", "fetch"), edge("fetch", "charge")],
    )


async def test_a_failed_run_is_resumed_from_the_dashboards_dead_letters(lab, page):
    receiver = Receiver().start()
    try:
        doc = checkout("panel-dead-letters", receiver.base)
        await api_json(lab, "POST", "workflows", json={"document": doc})
        await api_json(lab, "POST", f"workflows/{doc['meta']['id']}/publish", json={"note": "v1"})
        failed = await api_json(lab, "POST", f"workflows/{doc['meta']['id']}/runs", json={"input": {"id": 4}})
        assert (await wait_run(lab, failed["run_id"]))["status"] == "failed"

        dashboard = await open_dashboard(page)
        letters = page.get_by_test_id("dead-letters")
        await letters.scroll_into_view_if_needed()
        # One click on the failing node type (the latency table) lists the runs that failed at it.
        type_button = dashboard.locator(
            '[data-testid="latency-row"][data-node-type="action.http"] [data-testid="latency-node-type"]'
        )
        await expect(type_button).to_be_visible(timeout=PANEL_TIMEOUT)
        await type_button.click()
        await expect(letters).to_have_attribute("data-node-type", "action.http")
        row = letters.locator(f'[data-testid="dead-letter"][data-run-id="{failed["run_id"]}"]')
        await expect(row).to_be_visible(timeout=PANEL_TIMEOUT)
        await expect(row).to_have_attribute("data-node", "charge")
        await expect(row).to_have_attribute("data-error-kind", "HttpStatus422")
        await expect(row).to_contain_text("card declined")
        await shot(page, "dead-letters")

        receiver.fixed = True
        await row.locator('input[type="checkbox"]').check()
        await letters.get_by_test_id("dead-letters-resume").click()
        outcome = letters.get_by_test_id("dead-letters-outcome")
        await expect(outcome).to_contain_text("1 resumed run(s)")
        await expect(outcome).to_contain_text("1 node output(s) reused")
        await expect(row).to_have_count(0, timeout=PANEL_TIMEOUT)  # retried: it left the list
        await shot(page, "dead-letters-resumed")

        [marked] = await api_json(
            lab, "GET", "dead-letters", params={"workflow_id": doc["meta"]["id"], "include_retried": "true"}
        )
        retry = await wait_run(lab, marked["retried_as"])
        assert (retry["status"], marked["retry_mode"]) == ("success", "resume")
        # fetch came from the failed run: the receiver saw it once, charge twice.
        assert receiver.counts() == {"/fetch": 1, "/charge": 2}
    finally:
        receiver.stop()
