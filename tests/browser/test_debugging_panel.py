"""The Run panel's debugging tools in the browser: "Try here" in the inspector runs a failed
node again on a worker with a fixed config and shows what it gave, while the run stays failed;
"Compare" shows the diff of two runs with the first divergence highlighted."""

from __future__ import annotations

from playwright.async_api import expect

from .harness import shot
from .test_panels import PANEL_TIMEOUT, api_json, failing_flow, open_run_from_launcher, start_run, wait_run


async def test_try_here_runs_the_failed_node_again_with_a_fixed_config_and_the_run_stays_failed(lab, page):
    doc = failing_flow("debug-try")
    run_id = await start_run(lab, doc)
    assert (await wait_run(lab, run_id))["status"] == "failed"
    history = len((await api_json(lab, "GET", f"runs/{run_id}/trace"))["segments"])

    panel = await open_run_from_launcher(page, run_id)
    await expect(panel).to_have_attribute("data-status", "failed", timeout=PANEL_TIMEOUT)
    await panel.locator('[data-testid="gantt-row"][data-node="doomed"]').click()
    inspector = panel.get_by_test_id("inspector")
    await expect(inspector).to_have_attribute("data-loaded", "true", timeout=PANEL_TIMEOUT)

    await inspector.get_by_test_id("try-open").click()
    config = inspector.get_by_test_id("try-config")
    await expect(config).to_have_value('{\n  "fail_times": 99,\n  "message": "doomed on purpose"\n}')  # as it ran
    await config.fill('{"fail_times": 0, "output": {"fixed": true}}')
    await inspector.get_by_test_id("try-run").click()
    result = inspector.get_by_test_id("try-result")
    await expect(result).to_have_attribute("data-status", "success", timeout=PANEL_TIMEOUT)
    await expect(result.get_by_test_id("try-output")).to_contain_text('"fixed": true')
    await shot(page, "inspector-try-here")

    test_run_id = await result.get_by_test_id("try-test-run").inner_text()
    test_run = await api_json(lab, "GET", f"runs/{test_run_id}")
    assert (test_run["trigger"], test_run["version"], test_run["status"]) == ("test", "draft", "success")
    # The run is as it was.
    run = await api_json(lab, "GET", f"runs/{run_id}")
    assert run["status"] == "failed"
    assert len((await api_json(lab, "GET", f"runs/{run_id}/trace"))["segments"]) == history
    await expect(panel.get_by_test_id("run-panel-status")).to_have_text("failed")

    # A config the node's schema refuses is refused, with the field named.
    await config.fill('{"fail_times": -1}')
    await inspector.get_by_test_id("try-run").click()
    await expect(inspector.get_by_test_id("try-error")).to_contain_text("config.fail_times")


async def test_compare_shows_where_two_runs_differ_with_the_first_divergence_highlighted(lab, page):
    doc = failing_flow("debug-diff")
    a = await start_run(lab, doc, input={"try": 1})
    b = (
        await api_json(
            lab, "POST", f"workflows/{doc['meta']['id']}/runs", json={"input": {"try": 2}, "version": "draft"}
        )
    )["run_id"]
    for run_id in (a, b):
        await wait_run(lab, run_id)

    panel = await open_run_from_launcher(page, a)
    await expect(panel).to_have_attribute("data-status", "failed", timeout=PANEL_TIMEOUT)
    diff = panel.get_by_test_id("run-diff")
    await diff.get_by_test_id("diff-other").fill(b)
    await diff.get_by_test_id("diff-compare").click()
    shown = diff.get_by_test_id("diff-result")
    await expect(shown).to_be_visible(timeout=PANEL_TIMEOUT)
    expected = await api_json(lab, "GET", f"runs/{a}/diff/{b}")
    first = expected["first_divergence"]["node"]
    await expect(shown).to_have_attribute("data-first", first)
    await expect(diff.locator(f'[data-testid="diff-row"][data-node="{first}"]')).to_have_attribute("data-first", "true")
    await expect(diff.get_by_test_id("diff-row")).to_have_count(len(expected["nodes"]))
    await expect(diff.get_by_test_id("diff-first")).to_contain_text(f"First divergence: {first}")
    await expect(
        diff.locator('[data-testid="diff-row"][data-node="start"]').get_by_test_id("diff-output")
    ).to_contain_text("$.try")
    await shot(page, "run-diff")
