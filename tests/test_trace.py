"""A run's trace (Gantt segments), inspector data and error chain, from Temporal history."""

from __future__ import annotations

import itertools
from datetime import timedelta

import floworch as fo
from conftest import finished, nodes_by_id, wait_until

TRIGGER = {"id": "start", "type": "trigger.manual"}


async def test_trace_segments_match_a_run_with_retries_a_timer_and_an_approval(service, published):
    flow = await published(
        [
            TRIGGER,
            {
                "id": "flaky",
                "type": "test.fail",
                "config": {"fail_times": 2},
                "policy": {"retry": {"initial_interval_seconds": 0.3, "backoff": 1}},
            },
            {"id": "wait", "type": "control.delay", "config": {"seconds": 0.5}},
            {"id": "review", "type": "control.approval"},
            {
                "id": "done",
                "type": "transform",
                "config": {
                    "output": {"by": "{{ nodes.review.output.by }}", "attempt": "{{ nodes.flaky.output.attempt }}"}
                },
            },
        ],
        [("start", "flaky"), ("flaky", "wait"), ("wait", "review"), ("review", "approved", "done")],
    )
    run_id = (await service.start_run(flow, by="t"))["run_id"]

    async def review_waiting():
        return nodes_by_id(await service.get_run(run_id))["review"]["status"] == "waiting"

    await wait_until(review_waiting)
    await service.approve(run_id, "review", by="ada")
    run = await finished(service, run_id)
    assert run["result"]["outputs"] == {"done": {"by": "ada", "attempt": 3}}

    segments = await service.trace(run_id)
    assert [(s["node"], s["kind"], s["attempt"], s["status"]) for s in segments] == [
        ("start", "trigger", 1, "success"),
        ("flaky", "activity", 1, "failed"),
        ("flaky", "activity", 2, "failed"),
        ("flaky", "activity", 3, "success"),
        ("wait", "timer", 1, "success"),
        ("review", "approval", 1, "success"),
        ("done", "activity", 1, "success"),
    ]
    # A sequential flow: each segment starts after the one before it ended.
    for before, after in itertools.pairwise(segments):
        assert after["started"] >= before["ended"], (before, after)
    assert "attempt 1 of 2 planned failures" in segments[1]["error"]
    timer = segments[4]
    assert timer["ended"] - timer["started"] >= timedelta(seconds=0.5)


async def test_inspect_shows_what_a_node_got_and_gave_with_the_runs_memo(service, published):
    flow = await published(
        [TRIGGER, {"id": "greet", "type": "transform", "config": {"output": "Hello, {{ input.name }}"}}],
        [("start", "greet")],
    )
    run = await finished(service, (await service.start_run(flow, input={"name": "Ada"}, by="t"))["run_id"])
    seen = await service.inspect(run["run_id"], "greet")
    assert seen["config"] == {"output": "Hello, {{ input.name }}"}
    assert seen["calls"]["greet"]["config"] == {"output": "Hello, Ada"}
    assert seen["calls"]["greet"]["inputs"] == {"start": {"name": "Ada"}}
    assert seen["calls"]["greet"]["output"] == "Hello, Ada"
    assert seen["run"]["memo"]["flow_id"] == flow and seen["run"]["search_attributes"]["FloworchFlowId"] == flow
    assert seen["status"]["status"] == "success"


async def test_a_failed_run_carries_the_cause_chain_with_stack_traces(service, published):
    flow = await published(
        [
            TRIGGER,
            {
                "id": "bad",
                "type": "test.fail",
                "config": {"fail_times": 1, "permanent": True, "message": "ledger locked"},
            },
        ],
        [("start", "bad")],
    )
    run = await finished(service, (await service.start_run(flow, by="t"))["run_id"])
    chain = await service.error(run["run_id"])
    assert chain[0]["message"].startswith("node 'bad' (test.fail) failed") and chain[0]["type"] == "NodeFailed"
    types = [link["type"] for link in chain]
    assert types[0] == "NodeFailed" and "TestFailure" in types
    # The innermost cause is the node's own exception, with the stack trace of the node code.
    assert "ledger locked" in chain[-1]["message"] and "testing.py" in chain[-1]["stack_trace"]


async def test_the_kernel_shows_trace_logs_and_error(service, published):
    # The kernel API blocks on its own loop thread; called from this test's loop it must run in a thread.
    flow = await published(
        [
            TRIGGER,
            {
                "id": "bad",
                "type": "test.fail",
                "config": {"fail_times": 1, "permanent": True, "message": "ledger locked"},
            },
        ],
        [("start", "bad")],
    )
    run_id = (await service.start_run(flow, by="t"))["run_id"]
    await finished(service, run_id)
    run = fo.get_run(run_id)
    frame = run.trace_df()
    assert list(frame["node"]) == ["start", "bad"] and frame.loc[1, "status"] == "failed"
    fig = run.trace()
    assert {bar.name for bar in fig.data} == {"success", "failed"}
    logs = run.logs(level="error")
    assert "ledger locked" in logs.loc[0, "message"]
    assert "ledger locked" in run.error and run.error.stack
