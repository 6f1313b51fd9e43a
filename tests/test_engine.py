"""The engine on a real Temporal dev server: control flow, retries, timeouts, cancellation,
approvals, idempotent starts, per-node status from history, run records that follow Temporal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime

import pytest

from conftest import finished, flow_doc, nodes_by_id, wait_until
from floworch_server.errors import BadRequest, Conflict
from floworch_server.messages import WORKFLOW_TYPE, RunRequest
from floworch_server.problems import FlowInvalid
from floworch_server.temporal import SEARCH_ATTRIBUTES

TRIGGER = {"id": "start", "type": "trigger.manual"}


def transform(node_id: str, output) -> dict:
    return {"id": node_id, "type": "transform", "config": {"output": output}}


async def test_a_run_passes_data_between_nodes_and_reports_every_node(service, published):
    flow = await published(
        [
            TRIGGER,
            transform("greet", {"message": "Hello, {{ input.name }}!"}),
            transform("shout", "{{ upper(nodes.greet.output.message) }}"),
        ],
        [("start", "greet"), ("greet", "shout")],
    )
    started = await service.start_run(flow, input={"name": "Ada"}, by="tester")
    run = await finished(service, started["run_id"])
    assert run["status"] == "success"
    assert run["result"] == {"outputs": {"shout": "HELLO, ADA!"}}
    nodes = nodes_by_id(run)
    assert [n["node"] for n in run["nodes"]] == ["start", "greet", "shout"]
    assert all(n["status"] == "success" and n["attempts"] == 1 for n in run["nodes"])
    assert datetime.fromisoformat(nodes["greet"]["ended"]) <= datetime.fromisoformat(nodes["shout"]["started"])
    assert run["version"] == "1" and len(run["plan_hash"]) == 64


async def test_if_follows_the_true_branch_and_skips_the_false_one(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "big", "type": "control.if", "config": {"condition": "input.amount > 100"}},
            transform("review", "manual review"),
            transform("auto", "auto approved"),
            transform("after_auto", "{{ nodes.auto.output }}"),
        ],
        [("start", "big"), ("big", "true", "review"), ("big", "false", "auto"), ("auto", "after_auto")],
    )
    big = await finished(service, (await service.start_run(flow, input={"amount": 500}, by="t"))["run_id"])
    small = await finished(service, (await service.start_run(flow, input={"amount": 5}, by="t"))["run_id"])
    status = lambda run: {n["node"]: n["status"] for n in run["nodes"]}  # noqa: E731
    assert status(big) == {
        "start": "success",
        "big": "success",
        "review": "success",
        "auto": "skipped",
        "after_auto": "skipped",
    }
    assert status(small) == {
        "start": "success",
        "big": "success",
        "review": "skipped",
        "auto": "success",
        "after_auto": "success",
    }
    assert nodes_by_id(big)["big"]["detail"]["ports"] == ["true"]
    assert small["result"] == {"outputs": {"after_auto": "auto approved"}}


async def test_parallel_branches_run_together_and_join_with_both_outputs(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "fan", "type": "control.parallel"},
            {"id": "slow", "type": "test.fail", "config": {"sleep_seconds": 1.0, "output": "slow"}},
            {"id": "fast", "type": "test.fail", "config": {"sleep_seconds": 1.0, "output": "fast"}},
            transform("join", {"a": "{{ nodes.slow.output.output }}", "b": "{{ nodes.fast.output.output }}"}),
        ],
        [
            ("start", "fan"),
            ("fan", "branches", "slow"),
            ("fan", "branches", "fast"),
            ("slow", "join"),
            ("fast", "join"),
        ],
    )
    run = await finished(service, (await service.start_run(flow, by="t"))["run_id"])
    assert run["status"] == "success"
    assert run["result"]["outputs"] == {"join": {"a": "slow", "b": "fast"}}
    nodes = nodes_by_id(run)
    # Both branches were running at the same time: each started before the other ended.
    assert nodes["slow"]["started"] < nodes["fast"]["ended"] and nodes["fast"]["started"] < nodes["slow"]["ended"]
    assert nodes["join"]["started"] >= max(nodes["slow"]["ended"], nodes["fast"]["ended"])


async def test_a_branch_inside_a_parallel_skips_only_its_own_side(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "fan", "type": "control.parallel"},
            {"id": "check", "type": "control.if", "config": {"condition": "input.vip"}},
            transform("vip", "vip"),
            transform("normal", "normal"),
            transform("audit", "audited"),
            transform("done", {"inputs": "{{ len(keys(nodes)) }}"}),
        ],
        [
            ("start", "fan"),
            ("fan", "branches", "check"),
            ("fan", "branches", "audit"),
            ("check", "true", "vip"),
            ("check", "false", "normal"),
            ("vip", "done"),
            ("normal", "done"),
            ("audit", "done"),
        ],
    )
    run = await finished(service, (await service.start_run(flow, input={"vip": False}, by="t"))["run_id"])
    status = {n["node"]: n["status"] for n in run["nodes"]}
    assert status == {
        "start": "success",
        "fan": "success",
        "check": "success",
        "vip": "skipped",
        "normal": "success",
        "audit": "success",
        "done": "success",
    }


async def test_an_approval_after_a_branch_waits_then_follows_the_decision(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "big", "type": "control.if", "config": {"condition": "input.amount > 100"}},
            {"id": "review", "type": "control.approval", "config": {"title": "Pay {{ input.amount }}?"}},
            transform("pay", "paid {{ input.amount }} after {{ nodes.review.output.by }}"),
            transform("refuse", "refused by {{ nodes.review.output.by }}"),
        ],
        [("start", "big"), ("big", "true", "review"), ("review", "approved", "pay"), ("review", "rejected", "refuse")],
    )
    run_id = (await service.start_run(flow, input={"amount": 900}, by="t"))["run_id"]

    async def review_waiting():
        run = await service.get_run(run_id)
        return nodes_by_id(run)["review"]["status"] == "waiting"

    await wait_until(review_waiting)
    with pytest.raises(Conflict, match="node 'pay' is not waiting for approval"):
        await service.approve(run_id, "pay", by="ada")
    decision = await service.approve(run_id, "review", by="ada", comment="fine")
    assert decision["decision"] == "approved" and decision["by"] == "ada"
    run = await finished(service, run_id)
    assert run["result"]["outputs"] == {"pay": "paid 900 after ada"}
    assert nodes_by_id(run)["refuse"]["status"] == "skipped"
    assert nodes_by_id(run)["review"]["detail"]["ports"] == ["approved"]


async def test_an_approval_can_be_rejected_from_a_second_process(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "review", "type": "control.approval"},
            transform("pay", "paid"),
            transform("refuse", "refused by {{ nodes.review.output.by }}"),
        ],
        [("start", "review"), ("review", "approved", "pay"), ("review", "rejected", "refuse")],
    )
    run_id = (await service.start_run(flow, by="t"))["run_id"]
    await wait_until(lambda: _status_of(service, run_id, "review", "waiting"))
    # Another process (a second kernel, say) finds the run through the same data directory.
    code = f"import floworch as fo; print(fo.get_run({run_id!r}).reject('review', by='grace'))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "rejected" in out.decode()
    run = await finished(service, run_id)
    assert run["result"]["outputs"] == {"refuse": "refused by grace"}


async def test_an_approval_that_times_out_follows_its_timeout_branch(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "review", "type": "control.approval", "config": {"timeout_seconds": 1}},
            transform("pay", "paid"),
            transform("escalate", "{{ nodes.review.output.decision }}"),
        ],
        [("start", "review"), ("review", "approved", "pay"), ("review", "timeout", "escalate")],
    )
    run = await finished(service, (await service.start_run(flow, by="t"))["run_id"])
    assert run["result"]["outputs"] == {"escalate": "timeout"}
    assert nodes_by_id(run)["pay"]["status"] == "skipped"


async def test_a_delay_waits_on_a_durable_timer(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "wait", "type": "control.delay", "config": {"seconds": 1.5}},
            transform("after", "{{ nodes.wait.output }}"),
        ],
        [("start", "wait"), ("wait", "after")],
    )
    run_id = (await service.start_run(flow, input={"x": 1}, by="t"))["run_id"]
    waiting = await wait_until(lambda: _status_of(service, run_id, "wait", "waiting"))
    assert waiting["detail"]["reason"] == "timer" and "until" in waiting["detail"]
    run = await finished(service, run_id)
    wait = nodes_by_id(run)["wait"]
    elapsed = datetime.fromisoformat(wait["ended"]) - datetime.fromisoformat(wait["started"])
    assert elapsed.total_seconds() >= 1.5
    assert run["result"]["outputs"] == {"after": {"x": 1}}


async def test_a_node_failing_twice_reports_retrying_then_success_with_3_attempts(service, published):
    flow = await published(
        [
            TRIGGER,
            {
                "id": "flaky",
                "type": "test.fail",
                "config": {"fail_times": 2},
                "policy": {"retry": {"initial_interval_seconds": 1, "backoff": 1}},
            },
        ],
        [("start", "flaky")],
    )
    run_id = (await service.start_run(flow, by="t"))["run_id"]
    retrying = await wait_until(lambda: _status_of(service, run_id, "flaky", "retrying"))
    assert retrying["attempts"] >= 2 and "planned failures" in retrying["error"]
    run = await finished(service, run_id)
    flaky = nodes_by_id(run)["flaky"]
    assert (flaky["status"], flaky["attempts"]) == ("success", 3)
    assert run["result"]["outputs"] == {"flaky": {"attempt": 3, "output": None}}


async def test_a_node_over_its_timeout_fails_the_run_naming_the_node(service, published):
    flow = await published(
        [
            TRIGGER,
            {
                "id": "slow",
                "type": "test.fail",
                "config": {"sleep_seconds": 5},
                "policy": {"timeout_seconds": 1, "retry": {"max_attempts": 1}},
            },
        ],
        [("start", "slow")],
    )
    run = await finished(service, (await service.start_run(flow, by="t"))["run_id"])
    assert run["status"] == "failed"
    assert "node 'slow' (test.fail) failed" in run["error"] and "timed out" in run["error"].lower()
    assert nodes_by_id(run)["slow"]["status"] == "failed"


async def test_a_permanent_failure_is_not_retried(service, published):
    flow = await published(
        [
            TRIGGER,
            {
                "id": "bad",
                "type": "test.fail",
                "config": {"fail_times": 9, "permanent": True, "message": "card declined"},
            },
        ],
        [("start", "bad")],
    )
    run = await finished(service, (await service.start_run(flow, by="t"))["run_id"])
    bad = nodes_by_id(run)["bad"]
    assert (run["status"], bad["status"], bad["attempts"]) == ("failed", "failed", 1)
    assert "card declined" in bad["error"] and "card declined" in run["error"]


async def test_a_reference_that_cannot_be_resolved_fails_the_node_with_its_path(service, published):
    flow = await published([TRIGGER, transform("greet", "Hello, {{ input.name }}")], [("start", "greet")])
    run = await finished(service, (await service.start_run(flow, input={"nom": "Ada"}, by="t"))["run_id"])
    assert run["status"] == "failed"
    assert "node 'greet'" in run["error"] and "input.name is not set (available: nom)" in run["error"]
    assert nodes_by_id(run)["greet"]["status"] == "failed"


async def test_cancelling_a_run_stops_it(service, published):
    flow = await published(
        [TRIGGER, {"id": "wait", "type": "control.delay", "config": {"seconds": 60}}, transform("after", "x")],
        [("start", "wait"), ("wait", "after")],
    )
    run_id = (await service.start_run(flow, by="t"))["run_id"]
    await wait_until(lambda: _status_of(service, run_id, "wait", "waiting"))
    await service.cancel(run_id, by="t")
    run = await finished(service, run_id)
    assert run["status"] == "cancelled"
    assert nodes_by_id(run)["after"]["status"] == "idle"
    with pytest.raises(Conflict, match="already finished"):
        await service.cancel(run_id, by="t")


async def test_the_same_idempotency_key_gives_one_run(service, published):
    flow = await published([TRIGGER, transform("x", "{{ input.n }}")], [("start", "x")])
    starts = await asyncio.gather(
        *(service.start_run(flow, input={"n": i}, by="t", idempotency_key="order-42") for i in range(10))
    )
    assert len({s["run_id"] for s in starts}) == 1
    run = await finished(service, starts[0]["run_id"])
    again = await service.start_run(flow, input={"n": 99}, by="t", idempotency_key="order-42")
    assert again["run_id"] == run["run_id"]
    other = await service.start_run(flow, input={"n": 1}, by="t", idempotency_key="order-43")
    assert other["run_id"] != run["run_id"]
    runs = await service.list_runs(workflow_id=flow)
    assert len(runs) == 2


async def test_runs_carry_search_attributes_and_memo(service, published):
    flow = await published([TRIGGER, transform("x", 1)], [("start", "x")])
    run_id = (await service.start_run(flow, by="t"))["run_id"]
    await finished(service, run_id)
    desc = await service.handle(run_id).describe()
    attrs = desc.typed_search_attributes
    assert attrs.get(SEARCH_ATTRIBUTES["FloworchFlowId"]) == flow
    assert attrs.get(SEARCH_ATTRIBUTES["FloworchVersion"]) == "1"
    assert attrs.get(SEARCH_ATTRIBUTES["FloworchTrigger"]) == "manual"
    assert attrs.get(SEARCH_ATTRIBUTES["FloworchTenant"]) == "default"
    memo = await desc.memo_value("floworch")
    assert memo["flow_id"] == flow and memo["plan_hash"] == attrs.get(SEARCH_ATTRIBUTES["FloworchPlanHash"])
    found = [wf.id async for wf in service.client.list_workflows(f"FloworchFlowId = '{flow}'")]
    assert found == [run_id]


async def test_a_run_started_elsewhere_appears_in_the_runs_with_its_final_status(service, published):
    flow = await published([TRIGGER, transform("x", 7)], [("start", "x")])
    version = service.get_version(flow, 1)
    # Started straight through Temporal, as another tool would: no store record is written.
    handle = await service.client.start_workflow(
        WORKFLOW_TYPE,
        RunRequest(
            plan=version["plan"], input={}, run={"flow_id": flow, "version": "1", "plan_hash": version["plan_hash"]}
        ),
        id=f"external-{flow}",
        task_queue=service.settings.task_queue,
        memo={"floworch": {"flow_id": flow, "version": "1", "plan_hash": version["plan_hash"], "trigger": "cli"}},
    )
    await handle.result()
    assert service.store.get_run(handle.id) is None
    runs = await service.list_runs(workflow_id=flow)
    assert [(r["run_id"], r["status"], r["trigger"]) for r in runs] == [(handle.id, "success", "cli")]


async def test_an_invalid_flow_never_reaches_temporal(service):
    doc = flow_doc([TRIGGER, transform("a", "{{ nodes.b.output }}"), {"id": "b", "type": "no.such"}], [("start", "a")])
    record = service.create_workflow(doc, by="t")
    before = [wf.id async for wf in service.client.list_workflows(f"WorkflowType = '{WORKFLOW_TYPE}'")]
    with pytest.raises(FlowInvalid) as failure:
        await service.publish(record["id"], by="t")
    assert {p.code for p in failure.value.problems} == {
        "unknown-node-type",
        "unreachable-node",
        "reference-not-upstream",
    }
    with pytest.raises(FlowInvalid):
        await service.start_run(record["id"], version="draft", by="t")
    after = [wf.id async for wf in service.client.list_workflows(f"WorkflowType = '{WORKFLOW_TYPE}'")]
    assert after == before


async def test_input_not_matching_the_trigger_schema_is_refused_before_starting(service, published):
    flow = await published(
        [
            {
                "id": "start",
                "type": "trigger.manual",
                "config": {
                    "input_schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
                },
            },
            transform("x", 1),
        ],
        [("start", "x")],
    )
    with pytest.raises(BadRequest) as bad:
        await service.start_run(flow, input={"name": 3}, by="t")
    assert bad.value.field == "input.name" and "3 is not of type 'string'" in str(bad.value)
    with pytest.raises(BadRequest, match="'name' is a required property"):
        await service.start_run(flow, input={}, by="t")


async def test_a_draft_runs_without_publishing_and_records_its_plan(service):
    doc = flow_doc([TRIGGER, transform("x", "draft")], [("start", "x")])
    record = service.create_workflow(doc, by="t")
    with pytest.raises(BadRequest, match="no published version"):
        await service.start_run(record["id"], by="t")
    run = await finished(service, (await service.start_run(record["id"], version="draft", by="t"))["run_id"])
    assert (run["status"], run["version"]) == ("success", "draft")


async def test_watch_streams_status_changes_until_the_run_ends(service, published):
    flow = await published(
        [TRIGGER, {"id": "wait", "type": "control.delay", "config": {"seconds": 0.5}}, transform("x", 1)],
        [("start", "wait"), ("wait", "x")],
    )
    run_id = (await service.start_run(flow, by="t"))["run_id"]
    seen: list[tuple[str, str]] = []
    async for changes in service.watch(run_id, interval=0.05):
        seen += [(c["node"], c["status"]) for c in changes]
    assert ("wait", "waiting") in seen and ("wait", "success") in seen and ("x", "success") in seen
    assert seen.index(("wait", "waiting")) < seen.index(("wait", "success"))


async def _status_of(service, run_id: str, node: str, status: str):
    run = await service.get_run(run_id)
    found = nodes_by_id(run)[node]
    return found if found["status"] == status else None
