"""`floworch worker`: a worker process an operator starts on any machine, with the options of
`python -m floworch_server.worker`; bad options are refused before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from conftest import finished, flow_doc, nodes_by_id
from floworch_server import cli, worker
from floworch_server.service import FlowService
from floworch_server.settings import Settings

pytestmark = pytest.mark.timeout(180)

FLOWORCH_WORKER = [sys.executable, "-m", "floworch_server.cli", "worker"]


def refused(main, args: list[str], capsys) -> str:
    """Exit code 2 and what was printed, from a worker's entry point called with ``args``."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    return capsys.readouterr().err


ENTRY_POINTS = {"floworch worker": lambda args: cli.main(["worker", *args]), "python -m": worker.main}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize(
    "args, message",
    [
        (["--concurrency", "0"], "argument --concurrency: must be at least 1, got 0"),
        (["--concurrency", "many"], "argument --concurrency: must be a whole number, got 'many'"),
        (["--task-queue", ""], "argument --task-queue: a task queue name must not be empty"),
        (["--task-queue", "gpu "], "task queue name 'gpu ' has leading or trailing spaces"),
        (
            ["--build-id", "v1.2"],
            "build id (--build-id, FLOWORCH_WORKER_BUILD_ID) 'v1.2': use up to 255 characters, no dots",
        ),
    ],
)
def test_bad_options_are_refused_with_exit_code_2(entry, args, message, capsys):
    assert message in refused(ENTRY_POINTS[entry], args, capsys)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("FLOWORCH_WORKER_CONCURRENCY", "0", "FLOWORCH_WORKER_CONCURRENCY must be at least 1, got 0"),
        ("FLOWORCH_WORKER_CONCURRENCY", "lots", "FLOWORCH_WORKER_CONCURRENCY must be an integer, got 'lots'"),
        ("FLOWORCH_NODE_TASK_QUEUES", "ai.*", "FLOWORCH_NODE_TASK_QUEUES: 'ai.*' is not 'node type glob=task queue'"),
    ],
)
def test_bad_worker_settings_are_refused_with_exit_code_2(name, value, message, monkeypatch, capsys):
    monkeypatch.setenv(name, value)
    assert message in refused(ENTRY_POINTS["floworch worker"], [], capsys)


def test_a_worker_with_no_temporal_address_and_no_embedded_server_says_how_to_configure_one(tmp_path):
    env = {**os.environ, "FLOWORCH_DATA_DIR": str(tmp_path / "empty"), "FLOWORCH_TEMPORAL_ADDRESS": ""}
    done = subprocess.run(FLOWORCH_WORKER, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert "No Temporal server configured" in done.stderr and "FLOWORCH_TEMPORAL_ADDRESS" in done.stderr


@pytest.fixture
async def sleepy(supervisor):
    """A service whose test.fail nodes run on a queue of their own, no worker polling it yet."""
    queue = f"slow-{uuid.uuid4().hex[:8]}"
    service = await FlowService.connect(Settings.from_env(node_task_queues=f"test.fail={queue}"))
    yield service, queue
    service.store.close()


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_concurrency_caps_how_many_activities_a_worker_runs_at_once(sleepy, supervisor, tmp_path, concurrency):
    service, queue = sleepy
    doc = flow_doc(
        [
            {"id": "start", "type": "trigger.manual"},
            {"id": "fan", "type": "control.parallel"},
            {"id": "a", "type": "test.fail", "config": {"sleep_seconds": 1.0, "output": "a"}},
            {"id": "b", "type": "test.fail", "config": {"sleep_seconds": 1.0, "output": "b"}},
        ],
        [("start", "fan"), ("fan", "branches", "a"), ("fan", "branches", "b")],
    )
    flow = service.create_workflow(doc, by="tester")["id"]
    await service.publish(flow, note="fan out", by="tester")
    run_id = (await service.start_run(flow, by="tester"))["run_id"]
    env = {**os.environ, "FLOWORCH_TEMPORAL_ADDRESS": supervisor.address, "FLOWORCH_DATA_DIR": str(tmp_path / "box"),
           "FLOWORCH_DATABASE_URL": service.settings.store_url}  # fmt: skip
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [*FLOWORCH_WORKER, "--task-queue", queue, "--concurrency", str(concurrency)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            run = await finished(service, run_id, timeout=90)
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0
    assert run["status"] == "success"
    a, b = nodes_by_id(run)["a"], nodes_by_id(run)["b"]
    # "last_started": when a worker took the activity (not when it was scheduled).
    first, second = sorted([a, b], key=lambda n: n["detail"]["last_started"])
    overlapped = second["detail"]["last_started"] < first["ended"]
    assert overlapped == (concurrency == 2)


def test_temporal_setup_names_the_address_it_cannot_reach(tmp_path):
    """`floworch temporal setup` (the Helm chart's setup Job) against a Temporal that is not there."""
    env = {**os.environ, "FLOWORCH_DATA_DIR": str(tmp_path), "FLOWORCH_TEMPORAL_ADDRESS": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "floworch_server.cli", "temporal", "setup"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "cannot reach Temporal at 127.0.0.1:1 (FLOWORCH_TEMPORAL_ADDRESS)" in done.stderr
