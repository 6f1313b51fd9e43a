"""Schedule (trigger.cron) and event (trigger.event) triggers on the real Temporal server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import ScheduleOverlapPolicy
from temporalio.service import RPCError

from conftest import finished, flow_doc, wait_until
from floworch_server.flowdoc import FlowDocument
from floworch_server.nodes.cron import schedule_id
from floworch_server.validate import validate


def cron_flow(**config) -> tuple[list, list]:
    return (
        [
            {"id": "tick", "type": "trigger.cron", "config": {"cron": "0 9 * * MON-FRI", **config}},
            {"id": "work", "type": "transform", "config": {"output": "{{ input.greeting }}"}},
        ],
        [("tick", "work")],
    )


async def test_publishing_a_cron_flow_creates_its_schedule_with_explicit_policies(service, published):
    flow = await published(
        *cron_flow(
            timezone="Europe/Paris", input={"greeting": "bonjour"}, overlap="buffer_one", catchup_window_seconds=600
        )
    )
    desc = await service.client.get_schedule_handle(schedule_id(flow, "tick")).describe()
    assert desc.schedule.spec.cron_expressions == ["0 9 * * MON-FRI"] or desc.schedule.spec.calendars
    assert desc.schedule.spec.time_zone_name == "Europe/Paris"
    assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.BUFFER_ONE
    assert desc.schedule.policy.catchup_window == timedelta(seconds=600)
    listed = {s["schedule_id"]: s for s in await service.list_schedules()}
    entry = listed[schedule_id(flow, "tick")]
    assert (entry["workflow_id"], entry["cron"], entry["paused"]) == (flow, "0 9 * * MON-FRI", False)
    assert len(entry["next_runs"]) == 3


async def test_a_scheduled_run_starts_the_published_version_with_the_schedule_input(service, published):
    flow = await published(*cron_flow(input={"greeting": "hello"}))
    handle = service.client.get_schedule_handle(schedule_id(flow, "tick"))
    await handle.trigger()  # what the clock would do at 9:00

    async def scheduled_run():
        runs = await service.list_runs(workflow_id=flow)
        return runs[0] if runs else None

    run = await finished(service, (await wait_until(scheduled_run))["run_id"])
    assert (run["status"], run["trigger"], run["version"]) == ("success", "cron", "1")
    assert run["result"]["outputs"] == {"work": "hello"}


async def test_schedules_pause_resume_update_and_go_away_when_unpublished(service, published):
    flow = await published(*cron_flow())
    sid = schedule_id(flow, "tick")
    handle = service.client.get_schedule_handle(sid)
    await service.pause_schedules(flow, by="ada")
    assert (await handle.describe()).schedule.state.paused
    await service.pause_schedules(flow, paused=False, by="ada")
    assert not (await handle.describe()).schedule.state.paused

    doc = service.get_workflow(flow)["document"]
    doc["nodes"][0]["config"]["cron"] = "30 7 * * *"
    service.save_draft(flow, doc, by="ada")
    await service.publish(flow, by="ada")
    desc = await handle.describe()
    assert desc.schedule.spec.cron_expressions == ["30 7 * * *"] or "7" in str(desc.schedule.spec.calendars)
    assert desc.schedule.action.args  # the new version's plan

    await service.unpublish(flow, by="ada")
    with pytest.raises(RPCError):
        await handle.describe()
    assert service.get_workflow(flow)["version"] is None
    assert sid not in {s["schedule_id"] for s in await service.list_schedules()}


def test_a_bad_cron_expression_or_time_zone_is_a_validation_problem():
    doc = FlowDocument.model_validate(flow_doc(*cron_flow(cron="61 * *", timezone="Mars/Olympus")))
    problems = {(p.code, p.node, p.field): p.message for p in validate(doc)}
    assert problems[("invalid-cron", "tick", "config.cron")] == (
        "'61 * *' has 3 fields; a cron expression has 5: minute hour day-of-month month day-of-week"
    )
    assert problems[("invalid-timezone", "tick", "config.timezone")] == "unknown time zone 'Mars/Olympus'"


def event_flow(topic: str, output: str, schema: dict | None = None) -> tuple[list, list]:
    config = {"topic": topic, **({"input_schema": schema} if schema else {})}
    return (
        [
            {"id": "on", "type": "trigger.event", "config": config},
            {"id": "handle", "type": "transform", "config": {"output": output}},
        ],
        [("on", "handle")],
    )


async def test_an_event_starts_every_subscribed_flow_once_per_event_id(service, published):
    a = await published(*event_flow("invoices.received", "a got {{ input.number }}"))
    b = await published(*event_flow("invoices.received", "b got {{ input.number }}"))
    other = await published(*event_flow("invoices.paid", "not me"))
    first = await service.publish_event("invoices.received", {"number": 7}, event_id="evt-1", by="t")
    assert sorted(r["workflow_id"] for r in first) == sorted([a, b])
    again = await service.publish_event("invoices.received", {"number": 7}, event_id="evt-1", by="t")
    assert sorted(r["run_id"] for r in again) == sorted(r["run_id"] for r in first)
    for r in first:
        run = await finished(service, r["run_id"])
        assert run["trigger"] == "event"
        assert next(iter(run["result"]["outputs"].values())) in ("a got 7", "b got 7")
    assert await service.list_runs(workflow_id=other) == []
    assert len(await service.list_runs(workflow_id=a)) == 1
    await service.publish_event("invoices.received", {"number": 8}, event_id="evt-2", by="t")
    assert len(await service.list_runs(workflow_id=a)) == 2


async def test_an_event_that_one_flow_refuses_still_starts_the_others(service, published):
    strict = await published(*event_flow("orders.new", "x", schema={"type": "object", "required": ["sku"]}))
    lenient = await published(*event_flow("orders.new", "y"))
    results = {
        r["workflow_id"]: r for r in await service.publish_event("orders.new", {"qty": 1}, event_id="o-1", by="t")
    }
    assert "'sku' is a required property" in results[strict]["error"]
    assert results[lenient]["run_id"]


async def test_an_unpublished_flow_no_longer_receives_events(service, published):
    flow = await published(*event_flow("gone.topic", "x"))
    await service.unpublish(flow, by="t")
    assert await service.publish_event("gone.topic", {}, event_id="e", by="t") == []
