"""Node types pinned to task queues by the deployment (FLOWORCH_NODE_TASK_QUEUES): a pinned
node waits, visibly, on its queue until a worker polling that queue (started with
`floworch worker --task-queue`) runs it; a node's own policy.task_queue still wins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from conftest import finished, flow_doc, nodes_by_id, wait_until
from floworch_server.flowdoc import FlowDocument
from floworch_server.plan import compile_plan, run_task_queues
from floworch_server.service import FlowService
from floworch_server.settings import Settings

pytestmark = pytest.mark.timeout(180)


def plan_of(nodes: list[dict], edges: list) -> dict:
    return compile_plan(FlowDocument.model_validate(flow_doc(nodes, edges))).to_data()


def test_the_first_matching_glob_picks_a_node_types_queue_and_a_nodes_own_queue_wins():
    plan = plan_of(
        [
            {"id": "start", "type": "trigger.manual"},
            {"id": "ocr", "type": "ai.ocr", "config": {"document": "blob:x"}},
            {"id": "save", "type": "transform", "config": {"output": 1}},
            {
                "id": "own",
                "type": "action.http",
                "config": {"url": "https://example.org"},
                "policy": {"task_queue": "edge"},
            },
            {"id": "wait", "type": "control.delay", "config": {"seconds": 1}},
        ],
        [("start", "ocr"), ("ocr", "save"), ("save", "own"), ("own", "wait")],
    )
    rules = Settings(node_task_queues="ai.*=gpu, action.*=egress, *=cpu").node_queue_rules()
    assert rules == [("ai.*", "gpu"), ("action.*", "egress"), ("*", "cpu")]
    # action.http names its own queue, so no rule applies to it; control nodes run in the workflow.
    assert run_task_queues(plan, rules) == {"ai.ocr": "gpu", "transform": "cpu"}
    assert run_task_queues(plan, []) == {}


@pytest.mark.parametrize("value", ["ai.*", "ai.*=", "=gpu", "ai.*=gpu,db"])
def test_a_pin_that_is_not_glob_equals_queue_is_refused_when_settings_are_read(value):
    with pytest.raises(ValueError, match=r"FLOWORCH_NODE_TASK_QUEUES: '.*' is not 'node type glob=task queue'"):
        Settings.from_env({"FLOWORCH_NODE_TASK_QUEUES": value})


@pytest.fixture
async def pinned(supervisor):
    """A service of the session's deployment whose transform nodes are pinned to a queue no worker polls yet."""
    queue = f"gpu-{uuid.uuid4().hex[:8]}"
    service = await FlowService.connect(Settings.from_env(node_task_queues=f"ai.*=ai-{queue},trans*={queue}"))
    yield service, queue
    service.store.close()


async def test_a_pinned_node_waits_on_its_queue_until_a_worker_of_that_queue_runs_it(pinned, supervisor, tmp_path):
    service, queue = pinned
    assert queue in service.metric_task_queues() and f"ai-{queue}" in service.metric_task_queues()
    doc = flow_doc(
        [
            {"id": "start", "type": "trigger.manual"},
            # Its own queue wins over the deployment's pin: the session worker runs it.
            {
                "id": "prep",
                "type": "transform",
                "config": {"output": "{{ input.n }}"},
                "policy": {"task_queue": service.settings.task_queue},
            },
            {"id": "heavy", "type": "transform", "config": {"output": "heavy {{ nodes.prep.output }}"}},
        ],
        [("start", "prep"), ("prep", "heavy")],
    )
    flow = service.create_workflow(doc, by="tester")["id"]
    await service.publish(flow, note="pinned", by="tester")
    run_id = (await service.start_run(flow, input={"n": 7}, by="tester"))["run_id"]

    async def heavy_queued():
        queues = await service.queue_depth()  # the dashboard's queues: the pinned one included
        backlog = queues[(queues["task_queue"] == queue) & (queues["type"] == "activity")]["backlog"]
        return len(backlog) and backlog.iloc[0] >= 1

    await wait_until(heavy_queued, timeout=60, interval=0.5)
    nodes = nodes_by_id(await service.get_run(run_id))
    assert nodes["prep"]["status"] == "success"
    assert nodes["heavy"]["status"] not in ("success", "failed")

    # A worker on another machine: it knows Temporal's address and the store, nothing else.
    env = {
        **os.environ,
        "FLOWORCH_TEMPORAL_ADDRESS": supervisor.address,
        "FLOWORCH_DATA_DIR": str(tmp_path / "gpu-box"),
        "FLOWORCH_DATABASE_URL": service.settings.store_url,
    }
    with open(tmp_path / "gpu-worker.log", "wb") as log:
        gpu = subprocess.Popen(
            [sys.executable, "-m", "floworch_server.cli", "worker", "--task-queue", queue, "--concurrency", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            run = await finished(service, run_id, timeout=90)
        finally:
            gpu.send_signal(signal.SIGTERM)
            code = gpu.wait(timeout=30)
    assert run["status"] == "success" and run["result"]["outputs"] == {"heavy": "heavy 7"}
    assert code == 0
    assert not (tmp_path / "gpu-box" / "runtime.json").exists()
    started = [
        e.activity_task_started_event_attributes.identity
        async for e in service.client.get_workflow_handle(run_id).fetch_history_events()
        if e.HasField("activity_task_started_event_attributes")
    ]
    # prep on the session's worker, heavy on the one polling the pinned queue.
    assert [i.split("@")[0] for i in started] == [str(supervisor.worker_pids()[0]), str(gpu.pid)]
