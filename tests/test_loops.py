"""control.for_each (the explicit loop) and control.switch, on the real Temporal server."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from conftest import finished, flow_doc, nodes_by_id
from floworch_server.flowdoc import FlowDocument
from floworch_server.validate import validate

TRIGGER = {"id": "start", "type": "trigger.manual"}


def loop_edges(*extra):
    return [
        ("start", "each"),
        ("each", "item", "price"),
        {"id": "back", "source": "price", "target": "each", "targetHandle": "loop"},
        ("each", "done", "total"),
        *extra,
    ]


async def test_for_each_runs_the_body_per_item_and_gives_the_results_in_order(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "each", "type": "control.for_each", "config": {"items": "input.orders", "concurrency": 2}},
            {
                "id": "price",
                "type": "transform",
                "config": {
                    "output": {"sku": "{{ item.sku }}", "line": "{{ index }}", "cost": "{{ item.qty * item.unit }}"}
                },
            },
            {"id": "total", "type": "transform", "config": {"output": "{{ len(nodes.each.output) }} lines"}},
        ],
        loop_edges(),
    )
    orders = [{"sku": "a", "qty": 2, "unit": 5}, {"sku": "b", "qty": 1, "unit": 7}, {"sku": "c", "qty": 3, "unit": 1}]
    run = await finished(service, (await service.start_run(flow, input={"orders": orders}, by="t"))["run_id"])
    assert run["status"] == "success", run.get("error")
    assert run["result"]["outputs"] == {"total": "3 lines"}
    nodes = nodes_by_id(run)
    assert nodes["each"]["status"] == "success" and nodes["price"]["status"] == "success"
    history = await service.handle(run["run_id"]).fetch_history()
    ids = [
        e.activity_task_scheduled_event_attributes.activity_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert sorted(ids) == ["price#0", "price#1", "price#2", "total"]


async def test_for_each_output_lists_each_iteration_result(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "each", "type": "control.for_each", "config": {"items": "input.xs"}},
            {"id": "price", "type": "transform", "config": {"output": "{{ item * 10 }}"}},
            {"id": "total", "type": "transform", "config": {"output": "{{ nodes.each.output }}"}},
        ],
        loop_edges(),
    )
    run = await finished(service, (await service.start_run(flow, input={"xs": [3, 1, 2]}, by="t"))["run_id"])
    assert run["result"]["outputs"] == {"total": [30, 10, 20]}


async def test_for_each_respects_its_concurrency_limit(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "each", "type": "control.for_each", "config": {"items": "input.xs", "concurrency": 2}},
            {"id": "price", "type": "test.fail", "config": {"sleep_seconds": 0.3, "output": "{{ item }}"}},
            {"id": "total", "type": "transform", "config": {"output": "{{ nodes.each.output }}"}},
        ],
        loop_edges(),
    )
    run = await finished(service, (await service.start_run(flow, input={"xs": [1, 2, 3, 4, 5]}, by="t"))["run_id"])
    assert [r["output"] for r in run["result"]["outputs"]["total"]] == [1, 2, 3, 4, 5]
    history = await service.handle(run["run_id"]).fetch_history()
    in_flight = peak = 0
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            in_flight += 1
            peak = max(peak, in_flight)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            in_flight -= 1
    assert peak == 2


async def test_a_failing_iteration_fails_the_run_naming_node_and_iteration(service, published):
    flow = await published(
        [
            TRIGGER,
            {"id": "each", "type": "control.for_each", "config": {"items": "input.xs"}},
            {"id": "price", "type": "transform", "config": {"output": "{{ item.name }}"}},
            {"id": "total", "type": "transform", "config": {"output": 1}},
        ],
        loop_edges(),
    )
    run = await finished(
        service, (await service.start_run(flow, input={"xs": [{"name": "a"}, {"nom": "b"}]}, by="t"))["run_id"]
    )
    assert run["status"] == "failed"
    assert "node 'price' (iteration 1)" in run["error"] and "item.name is not set" in run["error"]


async def test_switch_follows_the_first_matching_case_or_default(service, published):
    flow = await published(
        [
            TRIGGER,
            {
                "id": "route",
                "type": "control.switch",
                "config": {
                    "cases": [
                        {"port": "large", "when": "input.amount >= 1000"},
                        {"port": "medium", "when": "input.amount >= 100"},
                    ]
                },
            },
            {"id": "l", "type": "transform", "config": {"output": "large"}},
            {"id": "m", "type": "transform", "config": {"output": "medium"}},
            {"id": "s", "type": "transform", "config": {"output": "small"}},
        ],
        [("start", "route"), ("route", "large", "l"), ("route", "medium", "m"), ("route", "default", "s")],
    )
    for amount, expected in ((5000, "large"), (500, "medium"), (5, "small")):
        run = await finished(service, (await service.start_run(flow, input={"amount": amount}, by="t"))["run_id"])
        assert list(run["result"]["outputs"].values()) == [expected]
        assert sorted(n["node"] for n in run["nodes"] if n["status"] == "skipped") == sorted(
            {"l", "m", "s"} - {expected[0]}
        )


def test_a_loop_body_must_be_closed():
    doc = FlowDocument.model_validate(
        flow_doc(
            [
                TRIGGER,
                {"id": "each", "type": "control.for_each", "config": {"items": "input.xs"}},
                {"id": "price", "type": "transform", "config": {"output": 1}},
                {"id": "leak", "type": "transform", "config": {"output": 1}},
            ],
            [("start", "each"), ("each", "item", "price"), ("price", "leak")],
        )
    )
    problems = {(p.code, p.node) for p in validate(doc)}
    assert ("loop-not-closed", "each") in problems


def test_a_loop_body_cannot_leave_early_or_be_entered_from_outside():
    doc = FlowDocument.model_validate(
        flow_doc(
            [
                TRIGGER,
                {"id": "each", "type": "control.for_each", "config": {"items": "input.xs"}},
                {"id": "price", "type": "transform", "config": {"output": 1}},
                {"id": "outside", "type": "transform", "config": {"output": 1}},
            ],
            [
                ("start", "each"),
                ("each", "item", "price"),
                {"id": "back", "source": "price", "target": "each", "targetHandle": "loop"},
                ("price", "outside"),
                ("start", "outside"),
            ],
        )
    )
    messages = {p.code: str(p) for p in validate(doc)}
    assert messages["loop-left-early"] == (
        "node 'price': 'price' is inside the loop of 'each' but leads to 'outside' outside it "
        "(end the body at the 'loop' port of 'each'; continue from its 'done' port)"
    )
