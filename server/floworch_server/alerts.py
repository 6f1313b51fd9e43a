"""SLA alerts: rules stored in ``alert_rules``, evaluated periodically; alerts open and clear.

Each enabled rule is read at every evaluation and judged by the store (``Store.judge_alert``):
a violation opens an alert if none of the rule is open, or updates the open one's value; a
reading that is no longer a violation clears it. The rule kinds:

- ``success_rate``: percent of runs that *ended* in the rule's window in success (cancelled runs
  aside, as in ``metrics.success_rate``). Violated below the threshold, and only when runs ended
  in the window: nothing running is not the service failing, so an idle window clears.
- ``queue_backlog``: the largest backlog among the engine's task queues, as Temporal reports it
  now (``FlowService.queue_depth``). Violated above the threshold. If Temporal does not answer
  the rule is skipped: an open alert neither clears nor re-opens on a guess.
- ``sync_latency``: p95 of the collaboration sync latencies reported through
  ``record_sync_latency`` in the window. Violated above the threshold (ms). Without samples it
  is idle. Kernels report them: each room client times the server's confirmation of its edits
  (`floworch.collab.RoomClient.sync_latencies`), and `fo.Flow` stores the slowest of every 10 s.

When an alert opens and its rule has an ``action_workflow_id``, that flow's published version
starts with input ``{"alert": {...}}`` and trigger "alert": a Slack message is just a flow.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from . import metrics
from .settings import Settings
from .store import Store, store_for
from .store.models import as_utc, utcnow

SYNC_LATENCY_METRIC = "collab.sync_latency_ms"
ACTOR = "alerts"  # who starts action runs, in run records and the audit log
LIVE_TIMEOUT_S = 5.0  # a Temporal that does not answer within this is "unknown", not "fine"
LATENCY_PERCENTILE = 0.95

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reading:
    """What a rule saw: its value (None when the window held nothing to judge) and verdict."""

    value: float | None
    violated: bool
    message: str = ""


async def evaluate(store: Store, service: Any = None, *, now: datetime | None = None) -> list[dict]:
    """Evaluate every enabled rule once, at ``now``. Returns the alerts that changed, each with
    its ``change``: "opened", "updated" (still violated, new value) or "cleared".

    ``service`` (a FlowService) is needed for the live queue backlog and to start action flows;
    without it those rules are skipped and actions are only logged."""
    now = as_utc(now) if now is not None else utcnow()
    changed = []
    for rule in store.list_alert_rules(enabled=True):
        try:
            reading = await _read(rule, store, service, now)
        except Exception as exc:  # noqa: BLE001 - one broken rule must not silence the others
            log.warning("alert rule %r could not be evaluated: %s: %s", rule["name"], type(exc).__name__, exc)
            continue
        if reading is None:
            continue
        change, alert = store.judge_alert(
            rule["id"], violated=reading.violated, value=reading.value, message=reading.message, at=now
        )
        if change is None or alert is None:
            continue
        if change == "opened":
            log.warning("alert opened: %s: %s", rule["name"], reading.message)
            if rule["action_workflow_id"]:
                alert = await _start_action(store, service, rule, alert)
        elif change == "cleared":
            log.info("alert cleared: %s", rule["name"])
        changed.append({**alert, "change": change})
    return changed


def record_sync_latency(ms: float, *, store: Store | None = None, at: datetime | None = None) -> None:
    """Report one collaboration sync latency (milliseconds) for the ``sync_latency`` rule.

    Without ``store``, the store of the process's settings (FLOWORCH_*) is used, opened once."""
    value = float(ms)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a sync latency is a non-negative number of milliseconds, got {ms!r}")
    (store or _default_store()).add_metric_sample(SYNC_LATENCY_METRIC, value, at=at)


def alert_payload(alert: dict) -> dict:
    """The JSON an action flow receives as ``input.alert``."""
    return {
        "id": alert["id"],
        "rule": alert["rule"],
        "kind": alert["kind"],
        "value": alert["value"],
        "threshold": alert["threshold"],
        "message": alert["message"],
        "opened_at": alert["opened_at"].isoformat(),
    }


# ---------------------------------------------------------------------- readings per kind
async def _read(rule: dict, store: Store, service: Any, now: datetime) -> Reading | None:
    window = timedelta(seconds=rule["window_seconds"])
    if rule["kind"] == "success_rate":
        return _success_rate(store, rule["threshold"], now - window, now)
    if rule["kind"] == "sync_latency":
        return _sync_latency(store, rule["threshold"], now - window, now)
    if rule["kind"] == "queue_backlog":
        return await _queue_backlog(service, rule["threshold"])
    raise ValueError(f"unknown alert rule kind {rule['kind']!r}")


def _success_rate(store: Store, threshold: float, since: datetime, until: datetime) -> Reading:
    row = metrics.success_rate(store, since, until).iloc[0]
    total, failed = int(row["total"]), int(row["failed"])
    if total == 0:
        return Reading(None, False)
    percent = 100.0 * int(row["success"]) / total
    span = _span(until - since)
    return Reading(
        percent,
        percent < threshold,
        f"run success rate {percent:.2f} % over the last {span} ({failed} of {total} runs failed), below the {threshold:g} % objective",
    )


def _sync_latency(store: Store, threshold: float, since: datetime, until: datetime) -> Reading:
    values = sorted(store.metric_values(SYNC_LATENCY_METRIC, since, until))
    if not values:
        return Reading(None, False)
    # Nearest rank: the p95 is a latency somebody actually waited.
    p95 = values[max(math.ceil(LATENCY_PERCENTILE * len(values)) - 1, 0)]
    return Reading(
        p95,
        p95 > threshold,
        f"collaboration sync latency p95 {p95:.0f} ms over the last {_span(until - since)} ({len(values)} samples), above {threshold:g} ms",
    )


async def _queue_backlog(service: Any, threshold: float) -> Reading | None:
    if service is None:
        return None
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
    # arrives as the call completes, and the server's shutdown would then wait on this loop.
    async with asyncio.timeout(LIVE_TIMEOUT_S):
        queues = await service.queue_depth()
    if queues.empty:
        return Reading(0.0, False)
    top = queues.loc[queues["backlog"].idxmax()]
    backlog = float(top["backlog"])
    return Reading(
        backlog,
        backlog > threshold,
        f"{backlog:.0f} tasks waiting in {top['type']} task queue {top['task_queue']!r}, over the threshold of {threshold:g}",
    )


# ---------------------------------------------------------------------- actions
async def _start_action(store: Store, service: Any, rule: dict, alert: dict) -> dict:
    workflow_id = rule["action_workflow_id"]
    if service is None:
        log.warning(
            "alert rule %r: action flow %s not started (evaluated without a FlowService)", rule["name"], workflow_id
        )
        return alert
    try:
        run = await service.start_run(
            workflow_id,
            input={"alert": alert_payload(alert)},
            by=ACTOR,
            trigger="alert",
            # A second evaluator racing on the same alert gets the same run, not a second message.
            idempotency_key=f"alert-{alert['id']}-{alert['opened_at'].isoformat()}",
        )
    except Exception as exc:  # noqa: BLE001 - the alert stays recorded even if its flow cannot start
        log.warning(
            "alert rule %r: could not start action flow %s: %s: %s", rule["name"], workflow_id, type(exc).__name__, exc
        )
        return alert
    store.set_alert_action_run(alert["id"], run["run_id"])
    return {**alert, "action_run_id": run["run_id"]}


# ---------------------------------------------------------------------- helpers
_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def _default_store() -> Store:
    # Reporters call this often; opening a Store per sample would re-check migrations each time.
    settings = Settings.from_env()
    key = f"{settings.tenant}@{settings.store_url}"
    with _stores_lock:
        if key not in _stores:
            _stores[key] = store_for(settings, settings.tenant)
        return _stores[key]


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
