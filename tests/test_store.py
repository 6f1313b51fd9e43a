"""The store, specified by behaviour, on SQLite (a temp file) and on the real PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from floworch_server.store import NotFound, Store
from floworch_server.store.migrate import head_revision
from floworch_server.store.models import Base

TABLES = {"workflows", "workflow_versions", "workflow_runs", "logs", "audit_log"}
VERSION_TABLE = "floworch_alembic_version"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FLOW = {"version": 1, "nodes": {"a": {"type": "http"}}, "edges": {}, "meta": {}}


def is_utc(value: datetime) -> bool:
    return value.tzinfo is UTC


# -- schema ---------------------------------------------------------------------------


def test_opening_an_empty_database_creates_the_schema_and_reopening_changes_nothing(store_url):
    with Store(store_url) as store:
        workflow = store.create_workflow(name="first", document=FLOW, created_by="ada")

    engine = create_engine(store_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
        with Store(store_url) as again:  # second open: already at head, data untouched
            assert again.get_workflow(workflow["id"])["name"] == "first"
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        assert rows == [(head_revision(),)]
    finally:
        engine.dispose()


def test_migrations_create_exactly_the_models(store):
    engine = create_engine(store.url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(context, Base.metadata) if VERSION_TABLE not in repr(d)]
    finally:
        engine.dispose()
    assert diff == []


# -- workflows ------------------------------------------------------------------------


def test_workflow_round_trip(store):
    acme = store.for_tenant("acme")
    created = acme.create_workflow(
        name="Invoices", document=FLOW, created_by="ada", tenant="acme", path="flows/invoices.flow"
    )
    assert created["version"] is None and created["draft_version"] == 1
    assert created["document"] == FLOW and created["tenant"] == "acme"
    assert is_utc(created["created_at"]) and created["updated_at"] == created["created_at"]
    assert "y_document_state" not in created

    assert acme.get_workflow(created["id"]) == created
    assert acme.find_workflow_by_path("flows/invoices.flow") == created
    assert acme.find_workflow_by_path("flows/other.flow") is None
    assert acme.get_workflow("no-such-id") is None

    edited = {**FLOW, "nodes": {**FLOW["nodes"], "b": {"type": "if"}}}
    saved = acme.update_draft(created["id"], document=edited, by="grace", name="Invoices v2")
    assert saved["draft_version"] == 2 and saved["document"] == edited and saved["name"] == "Invoices v2"
    assert saved["updated_at"] >= created["updated_at"] and saved["created_at"] == created["created_at"]
    assert acme.update_draft(created["id"], document=edited, by="grace")["draft_version"] == 3

    store.create_workflow(name="Other tenant", document=FLOW, created_by="ada", id="fixed-id")
    assert [w["id"] for w in acme.list_workflows(tenant="acme")] == [created["id"]]
    assert [w["id"] for w in store.list_workflows()] == ["fixed-id"]

    assert store.get_document_state("fixed-id") is None
    store.save_document_state("fixed-id", b"\x01\x02yjs")
    assert store.get_document_state("fixed-id") == b"\x01\x02yjs"


def test_workflow_errors_name_the_id_or_field(store):
    store.create_workflow(name="a", document=FLOW, created_by="ada", id="w1", path="a.flow")
    with pytest.raises(ValueError, match="'w1' already exists"):
        store.create_workflow(name="b", document=FLOW, created_by="ada", id="w1")
    with pytest.raises(ValueError, match=r"path 'a\.flow'"):
        store.create_workflow(name="b", document=FLOW, created_by="ada", path="a.flow")
    with pytest.raises(ValueError, match="name"):
        store.create_workflow(name="", document=FLOW, created_by="ada")
    with pytest.raises(ValueError, match="document"):
        store.create_workflow(name="b", document=[], created_by="ada")
    with pytest.raises(KeyError, match="nope"):
        store.update_draft("nope", document=FLOW, by="ada")
    with pytest.raises(NotFound, match="nope"):
        store.add_version("nope", plan={}, plan_hash="h", document=FLOW, note="", created_by="ada")


# -- versions -------------------------------------------------------------------------


def test_versions_are_numbered_in_order_and_the_latest_is_the_workflows_version(store):
    wf = store.create_workflow(name="w", document=FLOW, created_by="ada")
    for n in (1, 2, 3):
        v = store.add_version(wf["id"], plan={"n": n}, plan_hash=f"h{n}", document=FLOW, note=f"v{n}", created_by="ada")
        assert v["version"] == n and v["plan"] == {"n": n} and is_utc(v["created_at"])
    assert [v["version"] for v in store.list_versions(wf["id"])] == [3, 2, 1]
    assert store.get_version(wf["id"], 2)["note"] == "v2"
    assert store.get_version(wf["id"], 4) is None
    assert store.get_workflow(wf["id"])["version"] == 3


def test_concurrent_publishes_get_distinct_consecutive_numbers(store):
    wf = store.create_workflow(name="w", document=FLOW, created_by="ada")
    publishers = 8
    start = threading.Barrier(publishers)

    def publish(i: int) -> int:
        start.wait()
        return store.add_version(
            wf["id"], plan={"i": i}, plan_hash=f"h{i}", document=FLOW, note="", created_by=f"user{i}"
        )["version"]

    with ThreadPoolExecutor(publishers) as pool:
        numbers = list(pool.map(publish, range(publishers)))

    assert sorted(numbers) == list(range(1, publishers + 1))
    assert [v["version"] for v in store.list_versions(wf["id"])] == list(range(publishers, 0, -1))
    assert store.get_workflow(wf["id"])["version"] == publishers


# -- runs -----------------------------------------------------------------------------


def test_run_upsert_merges_fields_and_never_regresses_a_final_status(store):
    store.upsert_run({"run_id": "r1", "workflow_id": "w1", "version": 3, "status": "queued", "start_time": T0})
    store.upsert_run({"run_id": "r1", "status": "running", "trace_id": "t-1"})
    run = store.get_run("r1")
    assert (run["status"], run["version"], run["trace_id"], run["start_time"]) == ("running", "3", "t-1", T0)

    store.upsert_run({"run_id": "r1", "status": "failed", "end_time": T0 + timedelta(seconds=5), "error": "boom"})
    # Late reports from other processes: status, end time and error stay; new facts still land.
    store.upsert_run({"run_id": "r1", "status": "running", "end_time": None, "error": None, "input": {"x": 1}})
    store.upsert_run({"run_id": "r1", "status": "queued", "search_attributes": {"Owner": "ada"}})
    run = store.get_run("r1")
    assert (run["status"], run["error"], run["end_time"]) == ("failed", "boom", T0 + timedelta(seconds=5))
    assert run["input"] == {"x": 1} and run["search_attributes"] == {"Owner": "ada"}
    assert is_utc(run["start_time"]) and is_utc(run["end_time"]) and is_utc(run["updated_at"])


def test_run_reports_arriving_out_of_order(store):
    # The worker's "success" lands before the starter's "queued" row; a run not known to any workflow.
    acme = store.for_tenant("acme")
    acme.upsert_run({"run_id": "r2", "status": "success", "end_time": T0 + timedelta(seconds=1)})
    acme.upsert_run({"run_id": "r2", "status": "queued", "start_time": T0, "trigger": "webhook", "tenant": "acme"})
    run = acme.get_run("r2")
    assert (run["status"], run["start_time"], run["trigger"], run["tenant"]) == ("success", T0, "webhook", "acme")
    assert run["workflow_id"] is None

    store.upsert_run({"run_id": "r3", "status": "running", "start_time": T0})
    store.upsert_run({"run_id": "r3", "status": "queued"})
    assert store.get_run("r3")["status"] == "running"
    assert store.get_run("missing") is None


def test_run_timestamps_come_back_in_utc_whatever_zone_went_in(store):
    paris = timezone(timedelta(hours=2))
    store.upsert_run({"run_id": "r", "start_time": datetime(2025, 3, 1, 14, 0, tzinfo=paris)})
    run = store.get_run("r")
    assert run["start_time"] == T0 and is_utc(run["start_time"]) and run["status"] == "queued"


def test_bad_run_records_are_refused_with_the_field_named(store):
    with pytest.raises(ValueError, match=r"status must be one of .*'done'"):
        store.upsert_run({"run_id": "r", "status": "done"})
    with pytest.raises(ValueError, match="colour"):
        store.upsert_run({"run_id": "r", "colour": "red"})
    with pytest.raises(ValueError, match="run_id"):
        store.upsert_run({"status": "running"})
    with pytest.raises(ValueError, match="status"):
        store.list_runs(status="done")


def test_list_runs_is_newest_first_and_filters(store):
    for i, (wf, status) in enumerate(
        [("a", "success"), ("b", "failed"), ("a", "running"), ("a", "success"), (None, "success")]
    ):
        store.upsert_run(
            {"run_id": f"r{i}", "workflow_id": wf, "status": status, "start_time": T0 + timedelta(minutes=i)}
        )

    assert [r["run_id"] for r in store.list_runs()] == ["r4", "r3", "r2", "r1", "r0"]
    assert [r["run_id"] for r in store.list_runs(workflow_id="a")] == ["r3", "r2", "r0"]
    assert [r["run_id"] for r in store.list_runs(status="success")] == ["r4", "r3", "r0"]
    assert [r["run_id"] for r in store.list_runs(workflow_id="a", status="success")] == ["r3", "r0"]
    assert [r["run_id"] for r in store.list_runs(limit=2, offset=1)] == ["r3", "r2"]
    assert store.list_runs(workflow_id="zzz") == []


# -- logs and audit -------------------------------------------------------------------


def test_logs_are_ordered_and_tailed_with_an_after_id_cursor(store):
    ids = []
    for i in range(5):
        ids.append(store.add_log("r1", "fetch", "info", f"line {i}", attempt=1))
        store.add_log("r2", "other", "debug", "noise")
    store.add_log("r1", "parse", "error", "bad row", trace_id="t", extra={"row": 7}, timestamp=T0)

    lines = store.list_logs("r1")
    assert [line["message"] for line in lines] == [f"line {i}" for i in range(5)] + ["bad row"]
    assert [line["id"] for line in lines[:5]] == ids and ids == sorted(ids)
    assert lines[-1]["extra"] == {"row": 7} and lines[-1]["timestamp"] == T0 and lines[-1]["node"] == "parse"
    assert is_utc(lines[0]["timestamp"]) and lines[0]["attempt"] == 1

    assert [line["message"] for line in store.list_logs("r1", after_id=ids[2])] == ["line 3", "line 4", "bad row"]
    assert [line["message"] for line in store.list_logs("r1", after_id=ids[0], limit=2)] == ["line 1", "line 2"]
    assert store.list_logs("r1", after_id=lines[-1]["id"]) == []


def test_audit_log_lists_newest_first(store):
    store.audit("ada", "workflow.create", "workflow:w1")
    store.audit("grace", "workflow.publish", "workflow:w1", {"version": 1})
    entries = store.list_audit()
    assert [(e["actor"], e["action"], e["detail"]) for e in entries] == [
        ("grace", "workflow.publish", {"version": 1}),
        ("ada", "workflow.create", None),
    ]
    assert entries[0]["target"] == "workflow:w1" and is_utc(entries[0]["timestamp"])
    assert len(store.list_audit(limit=1)) == 1


# -- several processes ----------------------------------------------------------------


def _open_and_write(url: str, start, index: int) -> None:
    start.wait()
    with Store(url) as store:
        store.create_workflow(name=f"from process {index}", document=FLOW, created_by=f"p{index}")
        store.add_log("shared-run", f"p{index}", "info", "hello")


def test_processes_opening_the_same_fresh_sqlite_file_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh' / 'floworch.db'}"
    context = multiprocessing.get_context("spawn")  # no inherited engine state, like real processes
    processes = 3
    start = context.Barrier(processes)
    children = [context.Process(target=_open_and_write, args=(url, start, i)) for i in range(processes)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)
    assert [child.exitcode for child in children] == [0] * processes

    with Store(url) as store:
        assert len(store.list_workflows()) == processes
        assert len(store.list_logs("shared-run")) == processes
