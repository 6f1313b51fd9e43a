"""Tracing and structured logs: a run is one OpenTelemetry trace, from the call that starts it
to every node's activity in the worker process, and its trace id is on the run record and on
its node log lines; every process writes its log lines as JSON objects into the data directory.

Runs here go through the session's real Temporal dev server and real worker processes; spans
are read back from the exporter's output, ``<data_dir>/traces.jsonl``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from traitlets.config import Config

import floworch as fo
from conftest import finished, wait_until
from floworch_server import logging_json, tracing
from floworch_server.interpreter import FlowRun, workflow_runner
from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(180)

TRIGGER = {"id": "start", "type": "trigger.manual"}
HISTORIES = sorted((Path(__file__).parent / "data" / "histories").glob("*.json"))
TRACE_HEADER = "_tracer-data"  # where temporalio's TracingInterceptor carries the trace context


@pytest.fixture
def jp_server_config():
    return Config({"ServerApp": {"jpserver_extensions": {"floworch_ext": True}}})


@pytest.fixture
def api():
    """A local HTTP API answering every GET with the path it was asked for."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            data = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def two_calls(base: str) -> tuple[list[dict], list[tuple]]:
    """``start -> fetch -> notify``: two activity nodes, each logging its request."""
    nodes: list[dict] = [
        TRIGGER,
        {"id": "fetch", "type": "action.http", "config": {"method": "GET", "url": base + "/orders"}},
        {
            "id": "notify",
            "type": "action.http",
            "config": {"method": "GET", "url": base + "/notify?order={{ nodes.fetch.output.body.path }}"},
        },
    ]
    return nodes, [("start", "fetch"), ("fetch", "notify")]


def spans_of(path: Path, trace_id: str) -> list[dict]:
    return [s for s in tracing.read_spans(path) if s["trace_id"] == trace_id]


def json_lines(path: Path) -> list[dict]:
    """Every line of a log file, each of which must be one JSON object."""
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line in {path.name}: {line!r}")
    assert all(isinstance(p, dict) for p in parsed)
    return parsed


# ---------------------------------------------------------------------- one trace per run
async def test_a_run_is_one_trace_from_its_start_through_the_workflow_to_every_node(service, published, api):
    flow = await published(*two_calls(api))
    started = await service.start_run(flow, by="tester")
    trace_id = started["trace_id"]
    assert trace_id and len(trace_id) == 32 and int(trace_id, 16)

    run = await finished(service, started["run_id"])
    assert run["status"] == "success"
    assert run["trace_id"] == trace_id  # get_run returns it too

    run_id = run["run_id"]
    traces = service.settings.traces_file
    tracing.flush()  # this process's spans (StartRun, StartWorkflow); the worker exports its own

    def complete(spans: list[dict]) -> bool:
        names = [s["name"] for s in spans]
        return (
            "RunWorkflow:FlowRun" in names
            and names.count("RunActivity:action.http") == 2
            and "CompleteWorkflow:FlowRun" in names
        )

    async def trace_written():
        spans = spans_of(traces, trace_id)
        return spans if complete(spans) else None

    spans = await wait_until(trace_written, timeout=60, interval=0.2)
    by_name = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)

    [start] = by_name["StartRun"]
    assert start["parent_id"] is None and start["attributes"]["floworch.run_id"] == run_id
    [workflow] = by_name["RunWorkflow:FlowRun"]
    assert workflow["attributes"]["temporalWorkflowID"] == run_id
    activities = by_name["RunActivity:action.http"]
    assert sorted(a["attributes"]["temporalActivityID"] for a in activities) == ["fetch", "notify"]
    assert all(a["attributes"]["temporalWorkflowID"] == run_id for a in activities)
    # The workflow and its activities ran in the worker process, yet joined the starter's trace.
    assert {s["service"] for s in [workflow, *activities]} == {"floworch-worker"}
    assert os.getpid() not in {s["pid"] for s in [workflow, *activities]}
    # One tree: every span but the start hangs off another span of the same trace.
    ids = {s["span_id"] for s in spans}
    assert [s["name"] for s in spans if s["parent_id"] not in ids] == ["StartRun"]

    # The nodes' log lines in the store lead to the same trace.
    logs = service.store.list_logs(run_id)
    assert sorted(entry["node"] for entry in logs) == ["fetch", "notify"]
    assert {entry["trace_id"] for entry in logs} == {trace_id}
    # And so does a notebook's view of the run.
    seen = fo.get_run(run_id)
    assert seen.trace_id == trace_id
    assert set(seen.logs()["trace_id"]) == {trace_id}


async def test_a_traced_run_replays_with_and_without_the_tracing_interceptor(service, published, api):
    flow = await published(*two_calls(api))
    run = await finished(service, (await service.start_run(flow, by="tester"))["run_id"])
    assert run["status"] == "success"
    history = await service.handle(run["run_id"]).fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    # Tracing only added a header to the activities the workflow scheduled...
    assert len(scheduled) == 2 and all(TRACE_HEADER in a.header.fields for a in scheduled)
    # ...so its history replays whether or not the replaying worker traces.
    await Replayer(workflows=[FlowRun], workflow_runner=workflow_runner()).replay_workflow(history)
    await Replayer(
        workflows=[FlowRun],
        workflow_runner=workflow_runner(),
        interceptors=tracing.client_interceptors(service.settings),
    ).replay_workflow(history)


@pytest.fixture(scope="module")
def replay_settings(tmp_path_factory) -> Settings:
    return Settings(data_dir=str(tmp_path_factory.mktemp("replay")), otel_exporter="file")


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_histories_recorded_without_tracing_replay_on_a_tracing_worker(path: Path, replay_settings):
    settings = replay_settings
    replayer = Replayer(
        workflows=[FlowRun], workflow_runner=workflow_runner(), interceptors=tracing.client_interceptors(settings)
    )
    await replayer.replay_workflow(WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text()))
    tracing.flush()
    assert tracing.read_spans(settings.traces_file) == []  # replaying makes no spans


def test_with_tracing_off_there_is_no_interceptor_and_no_span(tmp_path):
    settings = Settings(data_dir=str(tmp_path), otel_exporter="none")
    assert tracing.client_interceptors(settings) == []
    with tracing.run_span(settings, "StartRun", {"floworch.run_id": "r"}) as trace_id:
        assert trace_id is None
    assert not settings.traces_file.exists()


def test_an_unknown_exporter_is_refused_naming_the_variable_and_the_choices(tmp_path):
    with pytest.raises(ValueError, match="FLOWORCH_OTEL_EXPORTER must be one of file, console, otlp, none"):
        tracing.client_interceptors(Settings(data_dir=str(tmp_path), otel_exporter="jaeger"))


# ---------------------------------------------------------------------- JSON log lines
async def test_a_worker_process_and_its_supervisor_write_json_lines_with_run_node_and_trace_ids(
    service, published, api, supervisor, tmp_path
):
    # A supervisor of its own (workers only, on the session's Temporal and store), so its log
    # files hold exactly what this test made happen.
    settings = Settings.from_env(
        data_dir=str(tmp_path / "data"), temporal_address=supervisor.address, database_url=service.settings.store_url,
        task_queue=f"telemetry-{uuid.uuid4().hex[:8]}", workers=1,
    )  # fmt: skip
    own = FlowService(settings, service.client, service.store)
    flow = await published(*two_calls(api))
    with Supervisor(settings):
        run = await finished(own, (await own.start_run(flow, by="tester"))["run_id"])
    assert run["status"] == "success"

    lines = json_lines(settings.data_path / "worker-0.log")
    assert all({"timestamp", "level", "logger", "message", "process", "service"} <= set(entry) for entry in lines)
    assert {entry["service"] for entry in lines} == {"floworch-worker"}
    assert "worker polling" in [entry["message"] for entry in lines]
    node_lines = [entry for entry in lines if entry["logger"] == "floworch.node"]
    assert sorted((entry["run_id"], entry["node"]) for entry in node_lines) == [
        (run["run_id"], "fetch"),
        (run["run_id"], "notify"),
    ]
    assert {entry["trace_id"] for entry in node_lines} == {run["trace_id"]}
    assert node_lines[0]["message"] == f"GET {api}/orders -> 200" and node_lines[0]["level"] == "info"

    supervisor_lines = json_lines(settings.data_path / "supervisor.log")
    assert [entry["message"].split(":")[0] for entry in supervisor_lines] == [
        "FlowOrchestrator services up",
        "FlowOrchestrator services stopped",
    ]
    assert {entry["process"] for entry in supervisor_lines} == {os.getpid()}

    # The worker exported its spans to its own data directory before it exited.
    worker_spans = spans_of(settings.traces_file, run["trace_id"])
    assert sorted(
        s["attributes"].get("temporalActivityID", "") for s in worker_spans if s["name"].startswith("RunActivity:")
    ) == ["fetch", "notify"]


async def test_the_jupyter_server_extension_writes_json_lines_into_the_data_directory(jp_serverapp, service):
    lines = json_lines(service.settings.data_path / "jupyter-server.log")
    mine = [entry for entry in lines if entry["process"] == os.getpid() and entry["logger"] == "floworch_ext"]
    assert any(entry["message"].startswith("FlowOrchestrator API at") for entry in mine)
    assert {entry["service"] for entry in mine} == {"floworch-jupyter"}


def record(message: str, **extra) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "floworch.node", "levelname": "INFO", "levelno": logging.INFO, "msg": message, **extra}
    )


def test_json_lines_carry_the_run_node_and_trace_of_a_record_and_its_extra_fields():
    line = logging_json.JsonFormatter("floworch-worker").format(
        record("GET /x -> 200", run_id="run-1", node="fetch", attempt=2, trace_id="ab" * 16, fields={"status": 200})
    )
    entry = json.loads(line)
    assert {k: entry[k] for k in ("level", "logger", "message", "service", "run_id", "node", "attempt", "trace_id", "status")} == {
        "level": "info", "logger": "floworch.node", "message": "GET /x -> 200", "service": "floworch-worker",
        "run_id": "run-1", "node": "fetch", "attempt": 2, "trace_id": "ab" * 16, "status": 200,
    }  # fmt: skip
    assert entry["timestamp"].endswith("+00:00")


def test_temporal_activity_records_name_the_run_and_node_they_belong_to():
    activity = {"workflow_id": "run-9", "activity_id": "notify", "attempt": 1}
    entry = json.loads(
        logging_json.JsonFormatter().format(record("Completing activity as failed", temporal_activity=activity))
    )
    assert (entry["run_id"], entry["node"], entry["attempt"]) == ("run-9", "notify", 1)


def test_auto_writes_json_into_files_and_text_to_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    auto, text, forced = Settings(), Settings(log_format="text"), Settings(log_format="json")
    assert logging_json.json_for_stream(auto, io.StringIO()) and not logging_json.json_for_stream(auto, Terminal())
    assert logging_json.json_for_stream(forced, Terminal()) and not logging_json.json_for_stream(text, io.StringIO())
    assert logging_json.json_for_files(auto) and not logging_json.json_for_files(text)
    line = logging_json.TextFormatter().format(record("GET /x -> 200", run_id="run-1", node="fetch"))
    assert line.endswith("INFO floworch.node: GET /x -> 200 [run_id=run-1 node=fetch]")
    with pytest.raises(ValueError, match="FLOWORCH_LOG_FORMAT must be one of auto, json, text"):
        logging_json.log_format(Settings(log_format="yaml"))
