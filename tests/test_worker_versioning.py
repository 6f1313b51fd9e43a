"""Blue/green worker fleets with Temporal worker versioning, on a real dev server and real
worker processes: a run stays on the fleet (build id) it started on, new runs go to the current
version, and the old fleet drains and stops without losing a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from conftest import finished, flow_doc, nodes_by_id, wait_until
from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor

pytestmark = pytest.mark.timeout(240)

FLOWORCH = [sys.executable, "-m", "floworch_server.cli"]

# The dev server re-checks a draining version every 3 minutes by default; this one every second.
FAST_DRAINAGE = (
    'matching.wv.VersionDrainageStatusVisibilityGracePeriod="1s"',
    'matching.wv.VersionDrainageStatusRefreshInterval="1s"',
)


class FastDrainage(Supervisor):
    def temporal_command(self, port: int) -> list[str]:
        cmd = super().temporal_command(port)
        for value in FAST_DRAINAGE:
            cmd += ["--dynamic-config-value", value]
        return cmd


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Temporal dev server of its own (no workers), as a remote cluster would be."""
    data = tmp_path_factory.mktemp("versioning")
    sup = FastDrainage(Settings(data_dir=str(data / "server"), workers=0)).start()
    yield sup
    sup.stop()


@pytest.fixture
def fleet_env(cluster, tmp_path):
    deployment = f"fleet-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "FLOWORCH_TEMPORAL_ADDRESS": cluster.address,
        "FLOWORCH_DATA_DIR": str(tmp_path / "worker"),  # another machine: no runtime.json here
        "FLOWORCH_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "FLOWORCH_TASK_QUEUE": f"flows-{deployment}",
        "FLOWORCH_WORKER_DEPLOYMENT": deployment,
        "FLOWORCH_OTEL_EXPORTER": "none",
    }
    return env


@pytest.fixture
async def svc(fleet_env):
    settings = Settings.from_env({k: v for k, v in fleet_env.items() if k.startswith("FLOWORCH_")})
    service = await FlowService.connect(settings)
    yield service
    service.store.close()


def start_worker(env: dict, build_id: str, log) -> subprocess.Popen:
    return subprocess.Popen(
        [*FLOWORCH, "worker", "--build-id", build_id], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def floworch(env: dict, *args: str) -> str:
    done = subprocess.run([*FLOWORCH, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def versions(env: dict) -> dict[str, dict]:
    """`floworch worker-deployment describe`, parsed: build id -> {status, running}."""
    lines = floworch(env, "worker-deployment", "describe").splitlines()
    rows = [line.split() for line in lines[2:]]
    return {row[0]: {"status": row[1], "running": int(row[2])} for row in rows}


async def make_current(env: dict, build_id: str) -> None:
    """Once the version's workers have polled (the server knows the version), make it current."""

    async def known():
        try:
            return build_id in versions(env)
        except AssertionError:  # no deployment yet: no versioned worker has polled
            return False

    await wait_until(known, timeout=60, interval=0.5)
    assert f"{build_id} is the current version" in floworch(env, "worker-deployment", "set-current", build_id)


async def activity_worker(service: FlowService, run_id: str, node_id: str) -> str:
    """Identity (``<pid>@<host>``) of the worker process that ran a node's activity."""
    scheduled = None
    async for event in service.client.get_workflow_handle(run_id).fetch_history_events():
        scheduled_attrs, started_attrs = (
            event.activity_task_scheduled_event_attributes,
            event.activity_task_started_event_attributes,
        )
        if event.HasField("activity_task_scheduled_event_attributes") and scheduled_attrs.activity_id == node_id:
            scheduled = event.event_id
        if event.HasField("activity_task_started_event_attributes") and started_attrs.scheduled_event_id == scheduled:
            return started_attrs.identity
    raise AssertionError(f"no activity {node_id} started in {run_id}")


async def waiting_at_review(service: FlowService, run_id: str) -> None:
    async def check():
        return nodes_by_id(await service.get_run(run_id)).get("review", {}).get("status") == "waiting"

    await wait_until(check, timeout=60)


async def test_new_runs_go_to_the_green_fleet_while_blue_finishes_its_own_then_drains(svc, fleet_env, tmp_path):
    doc = flow_doc(
        [
            {"id": "start", "type": "trigger.manual"},
            {"id": "review", "type": "control.approval"},
            {"id": "ship", "type": "transform", "config": {"output": "shipped {{ input.order }}"}},
        ],
        [("start", "review"), ("review", "approved", "ship")],
    )
    flow = svc.create_workflow(doc, by="ops")["id"]
    await svc.publish(flow, note="v1", by="ops")
    with open(tmp_path / "blue.log", "wb") as blue_log, open(tmp_path / "green.log", "wb") as green_log:
        blue = start_worker(fleet_env, "b1", blue_log)
        green = None
        try:
            await make_current(fleet_env, "b1")
            old = (await svc.start_run(flow, input={"order": "A"}, by="ops"))["run_id"]
            await waiting_at_review(svc, old)

            green = start_worker(fleet_env, "b2", green_log)
            await make_current(fleet_env, "b2")
            new = (await svc.start_run(flow, input={"order": "B"}, by="ops"))["run_id"]
            await waiting_at_review(svc, new)
            # Blue is no longer current but still has a run pinned to it.
            assert versions(fleet_env)["b1"] == {"status": "draining", "running": 1}
            assert versions(fleet_env)["b2"] == {"status": "current", "running": 1}

            await svc.approve(old, "review", by="ops")
            await svc.approve(new, "review", by="ops")
            old_run, new_run = await finished(svc, old), await finished(svc, new)
            assert old_run["status"] == new_run["status"] == "success"
            assert old_run["result"]["outputs"] == {"ship": "shipped A"}
            assert new_run["result"]["outputs"] == {"ship": "shipped B"}
            # Each run's node ran on the fleet the run started on.
            assert (await activity_worker(svc, old, "ship")).startswith(f"{blue.pid}@")
            assert (await activity_worker(svc, new, "ship")).startswith(f"{green.pid}@")

            async def blue_drained():
                return versions(fleet_env)["b1"] == {"status": "drained", "running": 0}

            await wait_until(blue_drained, timeout=60, interval=1)
            blue.send_signal(signal.SIGTERM)
            assert blue.wait(timeout=30) == 0

            # Green carries on alone: a run started after blue is gone finishes.
            third = (await svc.start_run(flow, input={"order": "C"}, by="ops"))["run_id"]
            await waiting_at_review(svc, third)
            await svc.approve(third, "review", by="ops")
            assert (await finished(svc, third))["result"]["outputs"] == {"ship": "shipped C"}
        finally:
            for proc in (blue, green):
                if proc and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)


async def test_set_current_names_a_version_no_worker_has_announced(fleet_env, tmp_path):
    with open(tmp_path / "blue.log", "wb") as log:
        blue = start_worker(fleet_env, "b1", log)
        try:
            await make_current(fleet_env, "b1")
            done = subprocess.run(
                [*FLOWORCH, "worker-deployment", "set-current", "b7"], env=fleet_env, capture_output=True, text=True
            )
            assert done.returncode == 2
            assert "cannot make 'b7' current" in done.stderr and "--build-id b7" in done.stderr
            assert versions(fleet_env)["b1"]["status"] == "current"
        finally:
            blue.send_signal(signal.SIGTERM)
            assert blue.wait(timeout=30) == 0


def test_describe_of_a_deployment_that_does_not_exist_says_so(fleet_env):
    done = subprocess.run(
        [*FLOWORCH, "worker-deployment", "describe", "--deployment", "nobody"],
        env=fleet_env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "no worker deployment 'nobody'" in done.stderr
