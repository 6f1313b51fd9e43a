"""The Run panel and the Flow Dashboard on real runs: what they show is what the server says.

Runs execute on the session's Temporal dev server and worker. They are started through the lab's
REST API (POST /floworch/api/workflows, then .../runs) or from the canvas; the panels are opened
the ways a user opens them: the launcher's "Open Run…" card (a run id dialog), the canvas run
bar's "Trace and logs" button, the launcher's "Flow Dashboard" card and its recent-runs list.

The session's store is shared with every other test, so the dashboard is compared with the
API's figures read at the same moment (again and again until they agree), never with counts.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from typing import Any

from playwright.async_api import Locator, Page, expect
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from .canvas import RUN_TIMEOUT, edge, flow, node, open_flow, until
from .harness import Lab, shot

FINAL = ("success", "failed", "cancelled")
PANEL_TIMEOUT = 30_000  # ms: a panel has read what the server holds
AGREE_TIMEOUT = 60.0  # s: the dashboard and the API agree (figures move while other runs end)


# ---------------------------------------------------------------------- flows
def retrying_flow(name: str, lab: Lab) -> dict:
    """start -> flaky (fails twice, then succeeds) -> wait (1 s timer) -> fetch (logs an info
    line) -> shape (a transform)."""
    return flow(
        name,
        [
            node("start", "trigger.manual", 0, 0, example={"name": "Ada"}),
            {
                **node("flaky", "test.fail", 260, 0, fail_times=2, message="flaky on purpose", output={"ok": True}),
                "policy": {"retry": {"max_attempts": 4, "initial_interval_seconds": 0.2, "backoff": 1.0}},
            },
            node("wait", "control.delay", 520, 0, seconds=1),
            node("fetch", "action.http", 780, 0, url=f"{lab.url}api"),
            node("shape", "transform", 1040, 0, output={"greeting": "Hello, {{ input.name }}!"}),
        ],
        [edge("start", "flaky"), edge("flaky", "wait"), edge("wait", "fetch"), edge("fetch", "shape")],
    )


def failing_flow(name: str) -> dict:
    """start -> doomed: fails on every one of its 2 attempts."""
    return flow(
        name,
        [
            node("start", "trigger.manual", 0, 0, example={}),
            {
                **node("doomed", "test.fail", 320, 0, fail_times=99, message="doomed on purpose"),
                "policy": {"retry": {"max_attempts": 2, "initial_interval_seconds": 0.2, "backoff": 1.0}},
            },
        ],
        [edge("start", "doomed")],
    )


# ---------------------------------------------------------------------- the REST API
async def api_json(lab: Lab, method: str, route: str, **kwargs: Any) -> Any:
    response = await lab.api_async(method, "floworch/api/" + route.lstrip("/"), **kwargs)
    assert response.status_code < 300, f"{method} {route}: HTTP {response.status_code} {response.text}"
    return response.json()


async def start_run(lab: Lab, doc: dict, input: Any = None) -> str:
    """Save ``doc`` as a workflow and run its draft; returns the run id."""
    await api_json(lab, "POST", "workflows", json={"document": doc})
    run = await api_json(lab, "POST", f"workflows/{doc['meta']['id']}/runs", json={"input": input, "version": "draft"})
    return run["run_id"]


async def wait_run(lab: Lab, run_id: str, timeout: float = RUN_TIMEOUT / 1000) -> dict:
    """The run once it is final."""

    async def final():
        run = await api_json(lab, "GET", f"runs/{run_id}")
        return run if run["status"] in FINAL else None

    return await until(final, timeout, what=f"run {run_id} finished")


async def run_logs(lab: Lab, run_id: str) -> list[dict]:
    """Every log line of a finished run, through the log WebSocket (there is no REST route):
    records until its {"type": "end"}."""
    url = re.sub(r"^http", "ws", lab.url) + f"floworch/api/runs/{run_id}/logs"
    ws = await websocket_connect(HTTPRequest(url, headers=lab.headers()))
    records: list[dict] = []
    try:
        while True:
            message = await asyncio.wait_for(ws.read_message(), 20)
            assert message is not None, f"the log socket of {run_id} closed before its end message"
            data = json.loads(message)
            if data.get("type") == "end":
                return records
            assert data.get("type") == "log", data
            records.append(data["record"])
    finally:
        ws.close()


# ---------------------------------------------------------------------- opening panels
def launcher_card(page: Page, label: str) -> Locator:
    return page.locator('.jp-LauncherCard[data-category="FlowOrchestrator"]', has_text=label)


async def open_run_from_launcher(page: Page, run_id: str) -> Locator:
    """The launcher's "Open Run…" card, its dialog filled with the run id."""
    await launcher_card(page, "Open Run…").click()
    dialog = page.locator(".jp-Dialog")
    await expect(dialog).to_be_visible()
    await dialog.locator("input").fill(run_id)
    await shot(page, "open-run-dialog")
    await dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    await expect(dialog).to_have_count(0)
    return run_panel(page, run_id)


def run_panel(page: Page, run_id: str) -> Locator:
    return page.locator(f'[data-testid="run-panel"][data-run-id="{run_id}"]')


async def open_dashboard(page: Page) -> Locator:
    await launcher_card(page, "Flow Dashboard").click()
    dashboard = page.get_by_test_id("dashboard")
    await expect(dashboard).to_be_visible()
    return dashboard


# ---------------------------------------------------------------------- reading panels
async def gantt_bars(panel: Locator) -> list[tuple]:
    """(node, kind, attempt, status) of each bar, in the chart's order."""
    bars = await panel.get_by_test_id("gantt-bar").evaluate_all(
        "els => els.map(e => [e.dataset.node, e.dataset.kind, Number(e.dataset.attempt), e.dataset.status])"
    )
    return [tuple(b) for b in bars]


def bars_of(segments: list[dict]) -> list[tuple]:
    """The bars the Gantt draws for the trace's segments: one per segment that has a time."""
    return [(s["node"], s["kind"], s["attempt"], s["status"]) for s in segments if s["started"] or s["scheduled"]]


async def final_trace(lab: Lab, panel: Locator, run_id: str) -> list[dict]:
    """The run's trace from the API, once the panel's Gantt shows it (the panel reads the trace
    once more after the run is final: until then it may show a segment still running)."""
    segments = (await api_json(lab, "GET", f"runs/{run_id}/trace"))["segments"]
    await until(
        lambda: _bars_are(panel, bars_of(segments)),
        timeout=PANEL_TIMEOUT / 1000,
        what="the panel's Gantt showing the final trace",
    )
    return segments


async def _bars_are(panel: Locator, expected: list[tuple]) -> bool:
    return Counter(await gantt_bars(panel)) == Counter(expected)


async def shown_log_ids(logs: Locator) -> list[int]:
    return [int(i) for i in await logs.get_by_test_id("log-row").evaluate_all("els => els.map(e => e.dataset.id)")]


async def js_percent(page: Page, fraction: float | None, digits: int) -> str:
    """``fraction`` formatted as the dashboard tiles do (format.ts fmtPercent), by the browser's
    own number formatting."""
    return await page.evaluate(
        "([f, d]) => (f === null || !Number.isFinite(f)) ? '—' : `${(f * 100).toFixed(d)} %`", [fraction, digits]
    )


async def agree(what: str, read_ui, read_api, refresh=None, timeout: float = AGREE_TIMEOUT) -> Any:
    """Until the panel shows what the API says (read just before and just after the panel):
    numbers move while other tests' runs end, so each try compares one moment. ``refresh`` asks
    the panel to read again between tries."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        before = await read_api()
        shown = await read_ui()
        after = await read_api()
        if shown == before == after:
            return shown
        last = {"panel": shown, "api before": before, "api after": after}
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: the panel and the API did not agree within {timeout:.0f}s (last: {last!r})")
        if refresh is not None:
            await refresh()
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------------- the Run panel
async def test_the_run_panel_shows_each_retry_the_timer_and_the_logs_of_a_real_run(lab, page):
    doc = retrying_flow("panel-retries", lab)
    run_id = await start_run(lab, doc, {"name": "Ada"})
    panel = await open_run_from_launcher(page, run_id)
    await expect(panel).to_be_visible()
    await shot(page, "run-panel-opened")

    run = await wait_run(lab, run_id)
    assert run["status"] == "success", run
    await expect(panel).to_have_attribute("data-status", "success", timeout=PANEL_TIMEOUT)
    await expect(panel.get_by_test_id("run-panel-status")).to_have_text("success")

    # The trace: one bar per segment the server lists, the retrying node one per attempt.
    segments = await final_trace(lab, panel, run_id)
    bars = await gantt_bars(panel)
    assert Counter(bars) == Counter(bars_of(segments)), (bars, segments)
    flaky = sorted((b for b in bars if b[0] == "flaky"), key=lambda b: b[2])
    assert flaky == [
        ("flaky", "activity", 1, "failed"),
        ("flaky", "activity", 2, "failed"),
        ("flaky", "activity", 3, "success"),
    ], bars
    assert [b for b in bars if b[0] == "wait"] == [("wait", "timer", 1, "success")], bars
    assert [b for b in bars if b[0] == "shape"] == [("shape", "activity", 1, "success")], bars
    await expect(panel.locator('[data-testid="gantt-bar"][data-node="wait"][data-kind="timer"]')).to_be_visible()
    await shot(page, "trace")

    # The logs: every line the store holds for the run, then "complete".
    logs = panel.get_by_test_id("run-logs")
    await expect(logs.get_by_test_id("log-state")).to_have_attribute("data-state", "ended", timeout=PANEL_TIMEOUT)
    records = await run_logs(lab, run_id)
    rows = logs.get_by_test_id("log-row")
    await expect(rows).to_have_count(len(records))
    assert await shown_log_ids(logs) == [r["id"] for r in records]
    errors = [r for r in records if r["level"] in ("warning", "error", "critical")]
    # flaky's two failed attempts (error) and fetch's request (info).
    assert [(r["node"], r["attempt"]) for r in errors] == [("flaky", 1), ("flaky", 2)], records
    assert any(r["node"] == "fetch" and r["level"] == "info" for r in records), records
    await expect(logs.locator('[data-testid="log-row"][data-node="flaky"]').first).to_contain_text("flaky on purpose")
    await expect(logs.get_by_test_id("log-count")).to_have_text(f"{len(records)} of {len(records)} lines")
    await shot(page, "logs")

    # "warning and above": only the failed attempts' lines.
    await logs.get_by_test_id("log-level").select_option("warning")
    await expect(rows).to_have_count(len(errors))
    assert await shown_log_ids(logs) == [r["id"] for r in errors]
    for level in await rows.evaluate_all("els => els.map(e => e.dataset.level)"):
        assert level in ("warning", "error", "critical"), level
    await shot(page, "logs-warning-and-above")

    # Text: the first attempt's line only.
    await logs.get_by_test_id("log-text").fill("attempt 1 of")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("flaky on purpose (attempt 1 of 2 planned failures)")
    await shot(page, "logs-text-filter")

    # Back to every level, one node: fetch's request line.
    await logs.get_by_test_id("log-text").fill("")
    await logs.get_by_test_id("log-level").select_option("")
    await expect(rows).to_have_count(len(records))
    await logs.get_by_test_id("log-node").select_option("fetch")
    fetched = [r for r in records if r["node"].split("#")[0] == "fetch"]
    await expect(rows).to_have_count(len(fetched))
    await expect(rows.first).to_contain_text(f"GET {lab.url}api -> 200")
    await shot(page, "logs-node-filter")

    # A click on the retrying node's row: the inspector reads it.
    await panel.locator('[data-testid="gantt-row"][data-node="flaky"]').click()
    inspector = panel.get_by_test_id("inspector")
    await expect(inspector).to_have_attribute("data-node", "flaky")
    await expect(inspector).to_have_attribute("data-loaded", "true", timeout=PANEL_TIMEOUT)
    inspected = await api_json(lab, "GET", f"runs/{run_id}/nodes/flaky")
    assert inspected["status"]["status"] == "success" and inspected["status"]["attempts"] == 3, inspected
    await expect(inspector.get_by_test_id("inspector-status")).to_have_text("success")
    [call] = inspected["calls"].values()
    assert call["output"] == {"attempt": 3, "output": {"ok": True}}, call
    await expect(inspector.get_by_test_id("inspector-output")).to_contain_text('"attempt": 3')
    await expect(inspector.get_by_test_id("inspector-error")).to_have_count(0)
    await expect(panel.get_by_test_id("run-meta")).to_be_visible()
    await shot(page, "inspector-flaky")

    # The transform: what it built from the run input.
    await panel.locator('[data-testid="gantt-row"][data-node="shape"]').click()
    await expect(inspector).to_have_attribute("data-node", "shape")
    await expect(inspector).to_have_attribute("data-loaded", "true", timeout=PANEL_TIMEOUT)
    await expect(inspector.get_by_test_id("inspector-output")).to_contain_text('"greeting": "Hello, Ada!"')
    await shot(page, "inspector-transform")


async def test_a_failed_node_shows_its_error_stack_and_causes_in_the_inspector(lab, page):
    """From the canvas: the run form starts the run, the run bar's "Trace and logs" opens its panel."""
    doc = failing_flow("panel-failing")
    lab.write_json("panel-failing.flow", doc)
    await open_flow(page, lab, "panel-failing.flow")
    await page.get_by_test_id("btn-run").click()
    await expect(page.get_by_test_id("run-version")).to_be_visible()
    await page.get_by_test_id("run-version").select_option("draft")
    await page.get_by_test_id("run-start").click()
    await expect(page.get_by_test_id("run-status")).to_have_text("failed", timeout=RUN_TIMEOUT)
    await shot(page, "canvas-run-failed")

    [record] = await api_json(lab, "GET", "runs", params={"workflow_id": doc["meta"]["id"]})
    run_id = record["run_id"]
    await page.get_by_test_id("open-run-panel").click()
    panel = run_panel(page, run_id)
    await expect(panel).to_be_visible()
    await expect(panel).to_have_attribute("data-status", "failed", timeout=PANEL_TIMEOUT)
    await expect(panel.get_by_test_id("run-panel-status")).to_have_text("failed")
    await shot(page, "run-panel-failed")

    segments = await final_trace(lab, panel, run_id)
    bars = await gantt_bars(panel)
    assert Counter(bars) == Counter(bars_of(segments)), (bars, segments)
    assert sorted(b for b in bars if b[0] == "doomed") == [
        ("doomed", "activity", 1, "failed"),
        ("doomed", "activity", 2, "failed"),
    ], bars

    # The failed node, as the server describes it: its message, and each link of the cause chain.
    inspected = await api_json(lab, "GET", f"runs/{run_id}/nodes/doomed")
    assert inspected["status"]["status"] == "failed", inspected
    [call] = inspected["calls"].values()
    chain = call["error"]
    assert chain and chain[0]["stack_trace"], chain

    await panel.locator('[data-testid="gantt-row"][data-node="doomed"]').click()
    inspector = panel.get_by_test_id("inspector")
    await expect(inspector).to_have_attribute("data-node", "doomed")
    await expect(inspector).to_have_attribute("data-loaded", "true", timeout=PANEL_TIMEOUT)
    await expect(inspector.get_by_test_id("inspector-status")).to_have_text("failed")
    error = inspector.get_by_test_id("inspector-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("doomed on purpose (attempt 2 of 99 planned failures)")
    causes = inspector.get_by_test_id("inspector-cause")
    await expect(causes).to_have_count(len(chain))
    for i, link in enumerate(chain):
        await expect(causes.nth(i)).to_contain_text(link["message"])
        if link["type"]:
            await expect(causes.nth(i)).to_contain_text(link["type"])
    if len(chain) > 1:
        await expect(causes.nth(1)).to_contain_text("caused by")
    stacks = inspector.get_by_test_id("inspector-stack")
    await expect(stacks).to_have_count(sum(1 for link in chain if link["stack_trace"]))
    first_frame = next(line for line in chain[0]["stack_trace"].splitlines() if line.strip())
    await expect(stacks.first).to_contain_text(first_frame.strip())
    await expect(inspector.get_by_test_id("inspector-inputs")).to_be_visible()
    await error.scroll_into_view_if_needed()
    await shot(page, "inspector-error")


# ---------------------------------------------------------------------- the dashboard
async def test_the_dashboard_shows_the_figures_the_api_gives(lab, page):
    # At least one run of this test has ended, so the range has figures and a latency row.
    run_id = await start_run(lab, retrying_flow("panel-dashboard", lab), {"name": "Grace"})
    assert (await wait_run(lab, run_id))["status"] == "success"

    dashboard = await open_dashboard(page)
    await expect(dashboard).to_have_attribute("data-range", "24h", timeout=PANEL_TIMEOUT)
    await expect(page.get_by_test_id("dashboard-range")).to_have_value("24h")
    await shot(page, "dashboard-24h")

    async def refresh() -> None:
        button = page.get_by_test_id("dashboard-refresh")
        await expect(button).to_be_enabled()
        await button.click()
        await expect(dashboard).to_have_attribute("data-loading", "false", timeout=PANEL_TIMEOUT)

    async def check_range(range_: str) -> None:
        async def read_dashboard() -> dict:
            return await api_json(lab, "GET", "dashboard", params={"range": range_})

        async def api_tiles():
            data = await read_dashboard()
            return (
                await js_percent(page, data["success"]["success_rate"], 2),
                await js_percent(page, data["budget"]["budget_remaining"], 1),
            )

        async def ui_tiles():
            return (
                (await page.get_by_test_id("tile-success-rate").locator(".fo-dash-tile-value").inner_text()).strip(),
                (await page.get_by_test_id("budget-remaining").inner_text()).strip(),
            )

        success, budget = await agree(f"success rate and error budget ({range_})", ui_tiles, api_tiles, refresh)
        assert success.endswith(" %"), success
        assert budget.endswith(" %") or budget == "—", budget

        async def api_types():
            return sorted(r["node_type"] for r in (await read_dashboard())["latency"])

        async def ui_types():
            return sorted(
                await page.get_by_test_id("latency-row").evaluate_all("els => els.map(e => e.dataset.nodeType)")
            )

        types = await agree(f"latency node types ({range_})", ui_types, api_types, refresh)
        assert {"test.fail", "transform", "action.http"} <= set(types), types

        async def api_buckets():
            return len((await read_dashboard())["throughput"])

        async def ui_buckets():
            return await page.get_by_test_id("throughput-bar").count()

        await agree(f"throughput buckets ({range_})", ui_buckets, api_buckets, refresh)

        async def api_queue():
            queues = (await read_dashboard())["queues"]
            return "?" if queues is None else str(sum(q["backlog"] or 0 for q in queues))

        async def ui_queue():
            return (await page.get_by_test_id("tile-queue-depth").locator(".fo-dash-tile-value").inner_text()).strip()

        await agree(f"task-queue depth ({range_})", ui_queue, api_queue, refresh)

    await check_range("24h")

    # Workers: the session's worker polls; the list shows it, as the API does.
    workers = (await api_json(lab, "GET", "dashboard", params={"range": "24h"}))["workers"]
    assert workers, f"the API lists no worker: {workers!r}"
    await expect(page.get_by_test_id("workers")).to_be_visible()
    await expect(page.get_by_test_id("worker-row").first).to_be_visible()
    identities = set(await page.get_by_test_id("worker-row").locator("code").all_inner_texts())
    assert identities & {w["identity"] for w in workers}, (identities, workers)
    await expect(page.get_by_test_id("alerts")).to_be_visible()

    # Recent runs: the run just made is among them; a click opens its Run panel.
    recent = page.locator(f'[data-testid="recent-run"][data-run-id="{run_id}"]')
    await expect(recent).to_be_visible()
    await expect(recent).to_contain_text("success")
    await page.get_by_test_id("workers").scroll_into_view_if_needed()
    await shot(page, "dashboard-figures")

    # Another range: the data of 7 days arrives, and agrees with the API's.
    await page.get_by_test_id("dashboard-range").select_option("7d")
    await expect(dashboard).to_have_attribute("data-range", "7d", timeout=PANEL_TIMEOUT)
    await check_range("7d")
    await shot(page, "dashboard-7d")

    await recent.click()
    panel = run_panel(page, run_id)
    await expect(panel).to_be_visible()
    await expect(panel).to_have_attribute("data-status", "success", timeout=PANEL_TIMEOUT)
    await shot(page, "run-panel-from-dashboard")
