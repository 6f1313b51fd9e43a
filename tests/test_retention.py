"""Retention: the purge deletes what the policies no longer keep - old finished runs with their
node timings, old logs - and nothing else: running runs and stored documents stay, and a dry
run only counts. On SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from floworch_server import blobs, retention
from floworch_server.settings import Settings
from floworch_server.store import Store

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def settings(tmp_path) -> Settings:
    # Defaults but for the data directory: runs 90 days, logs 30 days, blobs kept.
    return Settings(data_dir=str(tmp_path / "data"))


def add_run(store: Store, run_id: str, status: str, started: datetime, ended: datetime | None = None) -> None:
    record = {"run_id": run_id, "status": status, "start_time": started}
    if ended is not None:
        record["end_time"] = ended
    store.upsert_run(record)
    if ended is not None:
        store.add_node_timings(
            run_id,
            [
                {
                    "node": "a",
                    "node_type": "transform",
                    "kind": "activity",
                    "started": started,
                    "ended": ended,
                    "status": status,
                }
            ],
        )


def put_blob(settings: Settings, content: bytes, age: timedelta) -> str:
    blob_id = blobs.put(content, "scan.pdf", settings=settings)
    stamp = (NOW - age).timestamp()
    os.utime(blobs.path(blob_id, settings=settings), (stamp, stamp))
    return blob_id


@pytest.fixture
def history(store: Store, settings: Settings) -> dict:
    add_run(store, "old-success", "success", NOW - 120 * DAY, NOW - 100 * DAY)
    add_run(store, "old-failed", "failed", NOW - 95 * DAY, NOW - 91 * DAY)
    add_run(store, "just-inside", "success", NOW - 90 * DAY, NOW - 89 * DAY)
    add_run(store, "recent", "success", NOW - 2 * DAY, NOW - DAY)
    # Waiting on an approval for half a year: never purged while it runs.
    add_run(store, "still-running", "running", NOW - 200 * DAY)
    store.add_log("old-success", "a", "info", "ran long ago", timestamp=NOW - 100 * DAY)
    store.add_log("still-running", "a", "info", "asked for approval", timestamp=NOW - 31 * DAY)
    store.add_log("recent", "a", "info", "ran yesterday", timestamp=NOW - DAY)
    store.add_log("still-running", "a", "info", "reminded the approver", timestamp=NOW - 2 * DAY)
    return {"blob": put_blob(settings, b"%PDF scanned invoice", age=400 * DAY)}


def snapshot(store: Store, settings: Settings, blob_id: str) -> dict:
    run_ids = sorted(r["run_id"] for r in store.list_runs(limit=1000))
    return {
        "runs": run_ids,
        "timings": sorted(t["run_id"] for t in store.list_node_timings()),
        "logs": sorted(log["message"] for run_id in [*run_ids, "old-success"] for log in store.list_logs(run_id)),
        "blob": blobs.path(blob_id, settings=settings).exists(),
    }


def test_the_purge_removes_only_what_is_older_than_the_policy(store, settings, history):
    before = snapshot(store, settings, history["blob"])

    preview = retention.purge(store, settings, dry_run=True, now=NOW)
    expected = {"runs": 2, "node_timings": 2, "logs": 2, "alerts": 0, "metric_samples": 0, "blobs": 0}
    assert {key: preview[key] for key in expected} == expected
    assert preview["dry_run"] is True and preview["before"] == {
        "runs": NOW - 90 * DAY,
        "logs": NOW - 30 * DAY,
        "blobs": None,
    }
    assert snapshot(store, settings, history["blob"]) == before  # a dry run changes nothing

    done = retention.purge(store, settings, now=NOW)
    assert {key: done[key] for key in expected} == expected and done["dry_run"] is False
    assert snapshot(store, settings, history["blob"]) == {
        "runs": ["just-inside", "recent", "still-running"],
        "timings": ["just-inside", "recent"],
        # Logs go by their own age, even those of a run that is still going.
        "logs": ["ran yesterday", "reminded the approver"],
        "blob": True,  # stored documents are kept unless a policy says otherwise
    }

    again = retention.purge(store, settings, now=NOW)
    assert all(again[key] == 0 for key in expected)


def test_zero_days_keeps_everything(store, settings, history):
    keep = settings.replace(run_retention_days=0, log_retention_days=0)
    done = retention.purge(store, keep, now=NOW)
    assert {done[key] for key in ("runs", "node_timings", "logs", "blobs")} == {0}
    assert len(store.list_runs()) == 5


def test_a_blob_policy_removes_old_documents_only(store, settings, history):
    fresh = put_blob(settings, b"%PDF this week's invoice", age=3 * DAY)
    policy = settings.replace(blob_retention_days=365, run_retention_days=0, log_retention_days=0)

    assert retention.purge(store, policy, dry_run=True, now=NOW)["blobs"] == 1
    assert blobs.path(history["blob"], settings=settings).exists()

    assert retention.purge(store, policy, now=NOW)["blobs"] == 1
    assert not blobs.path(history["blob"], settings=settings).exists()
    assert blobs.filename(history["blob"], settings=settings) == ""  # its name hint went with it
    assert blobs.path(fresh, settings=settings).exists()


def test_cleared_alerts_and_old_metric_samples_go_with_their_policies(store, settings):
    rule = store.get_alert_rule("collab-sync-latency")
    store.judge_alert(rule["id"], violated=True, value=900, message="slow", at=NOW - 120 * DAY)
    store.judge_alert(rule["id"], violated=False, value=None, message="", at=NOW - 119 * DAY)
    store.judge_alert(rule["id"], violated=True, value=800, message="slow and still open", at=NOW - 100 * DAY)
    store.add_metric_sample("collab.sync_latency_ms", 900, at=NOW - 40 * DAY)
    store.add_metric_sample("collab.sync_latency_ms", 30, at=NOW - DAY)

    done = retention.purge(store, settings, now=NOW)
    assert (done["alerts"], done["metric_samples"]) == (1, 1)
    assert [a["message"] for a in store.list_alerts()] == ["slow and still open"]
    assert store.metric_values("collab.sync_latency_ms", NOW - 365 * DAY, NOW) == [30.0]


def test_a_negative_policy_is_refused_with_the_setting_named(store, settings):
    with pytest.raises(ValueError, match="FLOWORCH_LOG_RETENTION_DAYS must be 0"):
        retention.purge(store, settings.replace(log_retention_days=-1), now=NOW)
