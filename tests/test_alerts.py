"""SLA alerts: rules in the store, alerts that open while a rule is violated and clear when it no
longer is, and action flows an opening alert starts. Store parts on SQLite and PostgreSQL; the
action flow runs on the session's real Temporal."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from conftest import finished, flow_doc
from floworch_server import alerts
from floworch_server.service import FlowService
from floworch_server.store import NotFound, Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def seed_runs(store: Store, status: str, count: int, ended: datetime) -> None:
    for _ in range(count):
        store.upsert_run(
            {
                "run_id": f"seed-{uuid.uuid4().hex}",
                "status": status,
                "start_time": ended - timedelta(seconds=1),
                "end_time": ended,
            }
        )


def changes(changed: list[dict]) -> list[tuple[str, str]]:
    return [(c["rule"], c["change"]) for c in changed]


# ---------------------------------------------------------------------- rules are data
def test_a_new_store_has_the_three_default_rules(store):
    rules = {r["name"]: r for r in store.list_alert_rules()}
    assert {name: (r["kind"], r["threshold"], r["enabled"], r["action_workflow_id"]) for name, r in rules.items()} == {
        "run-success-rate": ("success_rate", 99.9, True, None),
        "task-queue-backlog": ("queue_backlog", 100.0, True, None),
        "collab-sync-latency": ("sync_latency", 500.0, True, None),
    }
    assert rules["run-success-rate"]["window_seconds"] == 300


def test_rule_edits_are_checked_and_name_the_problem(store):
    with pytest.raises(ValueError, match="kind must be one of success_rate, queue_backlog, sync_latency"):
        store.add_alert_rule(name="odd", kind="cpu", threshold=1)
    with pytest.raises(ValueError, match="already exists"):
        store.add_alert_rule(name="run-success-rate", kind="success_rate", threshold=99)
    with pytest.raises(NotFound, match="action_workflow_id 'nope' names no workflow"):
        store.update_alert_rule("run-success-rate", action_workflow_id="nope")
    with pytest.raises(ValueError, match="unknown alert rule field"):
        store.update_alert_rule("run-success-rate", colour="red")
    assert store.update_alert_rule("run-success-rate", threshold=99.5)["threshold"] == 99.5


# ---------------------------------------------------------------------- success rate
async def test_an_alert_opens_while_runs_fail_and_clears_when_the_success_rate_recovers(store):
    seed_runs(store, "success", 9, T0 - 2 * MINUTE)
    seed_runs(store, "failed", 1, T0 - MINUTE)

    assert changes(await alerts.evaluate(store, now=T0)) == [("run-success-rate", "opened")]
    [alert] = store.list_alerts(open_only=True)
    assert alert["value"] == 90.0 and alert["opened_at"] == T0 and alert["cleared_at"] is None
    assert (
        alert["message"]
        == "run success rate 90.00 % over the last 5 min (1 of 10 runs failed), below the 99.9 % objective"
    )

    # Still violated a minute later: the same alert, with the new value.
    seed_runs(store, "success", 10, T0 + timedelta(seconds=40))
    assert changes(await alerts.evaluate(store, now=T0 + MINUTE)) == [("run-success-rate", "updated")]
    [alert] = store.list_alerts()
    assert alert["value"] == 95.0 and alert["cleared_at"] is None and alert["opened_at"] == T0

    # The failure leaves the 5-minute window while successes keep coming: recovered.
    seed_runs(store, "success", 5, T0 + 5 * MINUTE)
    recovered = T0 + 5 * MINUTE + timedelta(seconds=30)
    assert changes(await alerts.evaluate(store, now=recovered)) == [("run-success-rate", "cleared")]
    [alert] = store.list_alerts()
    assert alert["cleared_at"] == recovered and alert["value"] == 95.0  # the last violating value
    assert store.list_alerts(open_only=True) == []

    # Healthy again: evaluating adds nothing.
    assert await alerts.evaluate(store, now=recovered + MINUTE) == []
    assert len(store.list_alerts()) == 1


async def test_a_window_without_finished_runs_opens_nothing(store):
    assert await alerts.evaluate(store, now=T0) == []
    seed_runs(store, "cancelled", 3, T0 - MINUTE)  # somebody's decision, not a failure
    seed_runs(store, "failed", 3, T0 - 10 * MINUTE)  # outside the window
    assert await alerts.evaluate(store, now=T0) == []
    assert store.list_alerts() == []


async def test_a_disabled_rule_is_not_evaluated(store):
    store.update_alert_rule("run-success-rate", enabled=False)
    seed_runs(store, "failed", 1, T0 - MINUTE)
    assert await alerts.evaluate(store, now=T0) == []


# ---------------------------------------------------------------------- sync latency
async def test_sync_latency_is_idle_without_samples_and_alerts_on_a_slow_p95(store):
    assert await alerts.evaluate(store, now=T0) == []  # nothing reports samples: idle

    for ms in (120, 700, 950):
        alerts.record_sync_latency(ms, store=store, at=T0 - MINUTE)
    assert changes(await alerts.evaluate(store, now=T0)) == [("collab-sync-latency", "opened")]
    [alert] = store.list_alerts(open_only=True)
    assert alert["value"] == 950.0 and alert["kind"] == "sync_latency"
    assert "p95 950 ms over the last 5 min (3 samples), above 500 ms" in alert["message"]

    later = T0 + 10 * MINUTE
    for ms in (40, 60):
        alerts.record_sync_latency(ms, store=store, at=later - MINUTE)
    assert changes(await alerts.evaluate(store, now=later)) == [("collab-sync-latency", "cleared")]

    with pytest.raises(ValueError, match="non-negative number of milliseconds"):
        alerts.record_sync_latency(-1, store=store)


# ---------------------------------------------------------------------- task-queue backlog
class QueueDepth:
    """Stands in for FlowService.queue_depth: a backlog, or an exception (Temporal down)."""

    def __init__(self, backlog: int | Exception) -> None:
        self.backlog = backlog

    async def queue_depth(self) -> pd.DataFrame:
        if isinstance(self.backlog, Exception):
            raise self.backlog
        return pd.DataFrame(
            [
                {"task_queue": "floworch", "type": "workflow", "backlog": 0},
                {"task_queue": "floworch", "type": "activity", "backlog": self.backlog},
            ]
        )


async def test_a_backlog_over_the_threshold_alerts_and_an_unreachable_temporal_changes_nothing(store):
    assert changes(await alerts.evaluate(store, QueueDepth(250), now=T0)) == [("task-queue-backlog", "opened")]
    [alert] = store.list_alerts(open_only=True)
    assert alert["value"] == 250.0
    assert alert["message"] == "250 tasks waiting in activity task queue 'floworch', over the threshold of 100"

    # No answer is no evidence either way: the alert stays open, unchanged.
    assert await alerts.evaluate(store, QueueDepth(RuntimeError("connection refused")), now=T0 + MINUTE) == []
    assert store.list_alerts(open_only=True) == [alert]

    assert changes(await alerts.evaluate(store, QueueDepth(3), now=T0 + 2 * MINUTE)) == [
        ("task-queue-backlog", "cleared")
    ]


# ---------------------------------------------------------------------- action flows
async def test_an_alert_with_an_action_flow_starts_a_run_of_it(service, store):
    # The session's Temporal and worker, with this test's own store.
    svc = FlowService(service.settings, service.client, store)
    doc = flow_doc(
        [
            {"id": "start", "type": "trigger.manual"},
            {"id": "notify", "type": "transform", "config": {"output": {"text": "ALERT {{ input.alert.message }}"}}},
        ],
        [("start", "notify")],
        name="notify-on-alert",
    )
    flow = svc.create_workflow(doc, by="tester")["id"]
    await svc.publish(flow, note="alert action", by="tester")
    store.update_alert_rule("run-success-rate", action_workflow_id=flow)

    seed_runs(store, "failed", 1, datetime.now(UTC) - timedelta(seconds=5))
    [opened] = [c for c in await svc.evaluate_alerts() if c["change"] == "opened"]
    assert opened["rule"] == "run-success-rate" and opened["action_run_id"]

    run = await finished(svc, opened["action_run_id"])
    assert (
        run["status"] == "success"
        and run["trigger"] == "alert"
        and run["workflow_id"] == flow
        and run["version"] == "1"
    )
    assert run["result"] == {"outputs": {"notify": {"text": f"ALERT {opened['message']}"}}}
    assert run["input"]["alert"] == alerts.alert_payload(opened)
    assert store.list_alerts(open_only=True)[0]["action_run_id"] == opened["action_run_id"]

    # While the alert stays open, evaluating again starts no second run.
    assert ("run-success-rate", "updated") in changes(await svc.evaluate_alerts())
    assert [r["run_id"] for r in store.list_runs(workflow_id=flow)] == [opened["action_run_id"]]


# ---------------------------------------------------------------------- the notebook API
def test_the_kernel_lists_alerts_newest_first_with_open_ones_marked():
    import floworch as fo
    from floworch._service import service

    store = service().store
    rule = store.add_alert_rule(
        name=f"kernel-{uuid.uuid4().hex[:8]}", kind="sync_latency", threshold=500, enabled=False
    )
    store.judge_alert(rule["id"], violated=True, value=900, message="slow", at=T0)
    store.judge_alert(rule["id"], violated=False, value=None, message="", at=T0 + MINUTE)
    store.judge_alert(rule["id"], violated=True, value=800, message="slow again", at=T0 + 2 * MINUTE)

    frame = fo.alerts()
    mine = frame[frame["rule"] == rule["name"]]
    assert list(frame.columns) == fo.ALERT_COLUMNS
    assert list(mine["message"]) == ["slow again", "slow"] and list(mine["open"]) == [True, False]
    assert mine["opened_at"].iloc[0] == pd.Timestamp(T0 + 2 * MINUTE)

    preview = fo.purge()  # a dry run by default
    assert preview["dry_run"] is True and {"runs", "logs", "node_timings", "blobs"} <= set(preview)
