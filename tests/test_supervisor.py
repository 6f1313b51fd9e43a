"""The embedded services: a real Temporal dev server and real worker processes.

The supervised workers here register a tiny echo workflow instead of the interpreter, so
these tests say what the supervisor guarantees whatever state the engine is in.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from floworch_server import temporal
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor

pytestmark = pytest.mark.timeout(120)

ECHO_MODULE = """
from temporalio import workflow


@workflow.defn(name="SupervisorTestEcho")
class Echo:
    def __init__(self) -> None:
        self.value: str | None = None

    @workflow.signal
    def release(self, value: str) -> None:
        self.value = value

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.value is not None)
        return f"echo {self.value}"
"""

WORKER_SCRIPT = """
import os, sys
sys.path.insert(0, {here!r})
from floworch_server import worker
from supervisor_test_echo import Echo

code = worker.main(workflows=[Echo], activities=[])
os._exit(code)
"""


def write_test_worker(directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "supervisor_test_echo.py").write_text(textwrap.dedent(ECHO_MODULE))
    script = directory / "echo_worker.py"
    script.write_text(WORKER_SCRIPT.format(here=str(directory)))
    return [sys.executable, str(script)]


def alive(pid: int) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except FileNotFoundError:
            continue  # a thread that ended while we looked has no children to report
    return found


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    base = tmp_path_factory.mktemp("services")
    settings = Settings(data_dir=str(base / "data"), workers=1, task_queue="supervisor-test")
    sup = Supervisor(settings, worker_command=write_test_worker(base / "worker"))
    with sup:
        yield sup


async def test_embedded_server_is_advertised_in_runtime_json(services):
    runtime = json.loads(services.settings.runtime_file.read_text())
    assert runtime["temporal_address"] == services.address
    assert runtime["temporal_address"].startswith("127.0.0.1:")
    assert runtime["namespace"] == "default"
    assert runtime["pid"] == os.getpid()
    assert runtime["temporal_pid"] == services.temporal_pid
    assert runtime["started"]
    # Other processes find the server through the data directory alone.
    reader = Settings(data_dir=services.settings.data_dir)
    assert reader.resolved_temporal_address() == services.address
    client = await temporal.connect(reader)
    assert await client.service_client.check_health()


async def test_search_attributes_are_registered(services):
    client = await temporal.connect(services.settings, address=services.address)
    registered = await temporal.list_search_attributes(client, "default")
    for name in temporal.SEARCH_ATTRIBUTES:
        assert registered.get(name) == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, name
    # Registering again is a no-op, as it is on every start against an external cluster.
    assert await temporal.ensure_search_attributes(client, "default") == []


async def test_a_run_is_tagged_and_found_by_search_attribute(services):
    client = await temporal.connect(services.settings, address=services.address)
    flow_id = f"flow-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(
        "SupervisorTestEcho",
        id=f"tagged-{flow_id}",
        task_queue=services.settings.task_queue,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(temporal.SEARCH_ATTRIBUTES["FloworchFlowId"], flow_id)]
        ),
    )
    await handle.signal("release", "tagged")
    assert await handle.result() == "echo tagged"

    async def listed() -> list[str]:
        return [w.id async for w in client.list_workflows(f"FloworchFlowId = '{flow_id}'")]

    deadline = time.monotonic() + 10
    while await listed() != [handle.id]:
        assert time.monotonic() < deadline, "run not visible by FloworchFlowId"
        await asyncio.sleep(0.1)


def test_a_killed_worker_is_restarted(services):
    [before] = wait_for(lambda: [p for p in services.worker_pids() if p], 10, "a running worker")
    restarts = services.restarts
    os.kill(before, signal.SIGKILL)
    [after] = wait_for(lambda: [p for p in services.worker_pids() if p and p != before], 10, "a new worker pid")
    assert after != before and alive(after)
    assert services.restarts == restarts + 1
    assert (services.data_path / "worker-0.log").exists()


async def test_restarting_temporal_keeps_runs_and_workers(services):
    client = await temporal.connect(services.settings, address=services.address)

    async def start(prefix: str):
        return await client.start_workflow(
            "SupervisorTestEcho", id=f"{prefix}-{uuid.uuid4().hex[:8]}", task_queue="supervisor-test"
        )

    # A finished run first: the worker is polling when the server goes away.
    warmup = await start("warmup")
    await warmup.signal("release", "before restart")
    assert await warmup.result() == "echo before restart"
    handle = await start("survivor")
    old_pid, address = services.temporal_pid, services.address

    services.restart_temporal()

    assert services.temporal_pid != old_pid and not alive(old_pid)
    assert services.address == address
    assert json.loads(services.settings.runtime_file.read_text())["temporal_pid"] == services.temporal_pid
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    # The supervised worker reconnects on its own and finishes the run.
    await handle.signal("release", "after restart")
    assert await handle.result() == "echo after restart"


def test_a_crashed_temporal_is_restarted_on_the_same_port(services):
    before, address = services.temporal_pid, services.address
    os.kill(before, signal.SIGKILL)
    after = wait_for(
        lambda: services.temporal_pid not in (None, before) and services.temporal_pid, 15,
        "a new Temporal pid",
    )  # fmt: skip
    assert services.temporal_restarts == 1
    assert services.address == address
    wait_for(lambda: json.loads(services.settings.runtime_file.read_text())["temporal_pid"] == after,
             15, "runtime.json to name the new server")  # fmt: skip
    assert temporal.port_open(address)


async def test_external_temporal_runs_workers_only(services, tmp_path):
    settings = Settings(data_dir=str(tmp_path), temporal_address=services.address, workers=0)
    # Started from inside a running event loop, as the Jupyter server extension does.
    with Supervisor(settings) as sup:
        assert sup.address == services.address
        assert sup.temporal_pid is None and sup.child_pids() == []
        assert not settings.runtime_file.exists()


def test_a_taken_port_is_reported(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sup = Supervisor(Settings(data_dir=str(tmp_path), temporal_port=port, workers=0))
        with pytest.raises(RuntimeError, match=f"port {port}"):
            sup.start()
    assert not sup.running and sup.child_pids() == []
    assert not sup.settings.runtime_file.exists()


def test_one_supervisor_per_data_directory(services):
    second = Supervisor(services.settings.replace(workers=0))
    with pytest.raises(RuntimeError, match="already running"):
        second.start()
    assert not second.running
    assert services.settings.runtime_file.exists()  # the failed start left the first one alone


def test_stop_leaves_no_process_behind(tmp_path):
    settings = Settings(data_dir=str(tmp_path / "data"), workers=2, task_queue="stop-test")
    sup = Supervisor(settings, worker_command=write_test_worker(tmp_path / "worker"))
    sup.start()
    wait_for(lambda: all(sup.worker_pids()), 10, "two workers")
    pids = sup.child_pids()
    assert len(pids) == 3
    assert set(pids) <= children_of(os.getpid())

    sup.stop()

    assert not [p for p in pids if alive(p)]
    assert not settings.runtime_file.exists()
    assert not children_of(os.getpid()) & set(pids)
    sup.stop()  # idempotent


def test_children_die_with_a_killed_supervisor(tmp_path):
    data = tmp_path / "data"
    env = {**os.environ, "FLOWORCH_DATA_DIR": str(data), "FLOWORCH_WORKERS": "1"}
    # The real CLI; its worker may or may not start, what matters here is the process tree.
    parent = subprocess.Popen(
        [sys.executable, "-m", "floworch_server.supervisor"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        banner = parent.stdout.readline()
        assert "127.0.0.1:" in banner, banner
        runtime = json.loads((data / "runtime.json").read_text())
        assert runtime["pid"] == parent.pid
        kids = children_of(parent.pid)
        assert runtime["temporal_pid"] in kids and len(kids) == 2

        parent.kill()
        parent.wait()

        wait_for(lambda: not [k for k in kids if alive(k)], 10, "children to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
