"""The read replica (FLOWORCH_DATABASE_READ_URL), on the real PostgreSQL.

The replica here is a second URL of the same database, logging in as its own role that can only
read (``default_transaction_read_only=on``, and SELECT granted by the store's migration) and
naming itself in ``application_name``, as a hot standby's URL would. Which connection serves a
call is seen from PostgreSQL's side: while another session holds a table locked, the call's
query waits in ``pg_stat_activity`` under the application name (and role) it came through.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from floworch_server import metrics
from floworch_server.settings import Settings
from floworch_server.store import Store, store_for
from floworch_server.store.engine import normalise_url, replica_engine
from floworch_server.store.migrate import VERSION_TABLE, check_replica
from support.postgres import (  # noqa: F401
    _connect,
    create_app_role,
    drop_app_role,
    drop_postgres_schema,
    pg_app_url,
    pg_url,
    postgres_url,
)

pytestmark = pytest.mark.postgres

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
WAIT_S = 30  # a call that never shows up waiting has failed; this only bounds the test


def named(url: str, application_name: str) -> str:
    return make_url(url).update_query_dict({"application_name": application_name}).render_as_string(hide_password=False)


@pytest.fixture
def read_role_url(pg_url):
    """A role that can log in and only read: every transaction read only, no rights of its own
    (the store's migration grants it SELECT when it opens with the owner's URL)."""
    url = create_app_role(pg_url)
    with _connect(make_url(pg_url).username) as conn:
        conn.execute(f'ALTER ROLE "{make_url(url).username}" SET default_transaction_read_only = on')
    try:
        yield url
    finally:
        drop_app_role(url)


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:8]
    return {"primary": f"floworch-primary-{tag}", "replica": f"floworch-replica-{tag}"}


@pytest.fixture
def store(pg_url, pg_app_url, read_role_url, names, tmp_path):
    """The deployment's store as the settings open it: application role, owner for migrations,
    and the read replica."""
    settings = Settings.from_env(
        {
            "FLOWORCH_DATA_DIR": str(tmp_path),
            "FLOWORCH_DATABASE_URL": named(pg_app_url, names["primary"]),
            "FLOWORCH_DATABASE_OWNER_URL": pg_url,
            "FLOWORCH_DATABASE_READ_URL": named(read_role_url, names["replica"]),
        }
    )
    opened = store_for(settings, "default")
    yield opened
    opened.close()


@pytest.fixture
def locker(pg_url):
    """Holds ACCESS EXCLUSIVE locks on tables of the test's schema, as another session."""
    engine = create_engine(normalise_url(pg_url))
    yield engine
    engine.dispose()


def served_by(locker, table: str, call, names) -> tuple[str, str, object]:
    """Run ``call`` while ``table`` is locked; returns (which URL its query came through, the
    role it ran as, what the call returned)."""
    with ThreadPoolExecutor(1) as pool, locker.connect() as owner:
        owner.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        future = pool.submit(call)
        deadline = time.monotonic() + WAIT_S
        waiting: list = []
        while not waiting and time.monotonic() < deadline and not future.done():
            waiting = owner.execute(
                text(
                    "SELECT application_name, usename FROM pg_stat_activity "
                    "WHERE application_name IN (:primary, :replica) AND wait_event_type = 'Lock'"
                ),
                names,
            ).all()
            time.sleep(0.02)
        owner.rollback()  # releases the lock
        result = future.result(timeout=WAIT_S)
    assert len(waiting) == 1, f"expected one query waiting on {table}, found {waiting}"
    which = "replica" if waiting[0].application_name == names["replica"] else "primary"
    return which, waiting[0].usename, result


def run(run_id: str, status: str = "success", **extra) -> dict:
    ended = {"end_time": T0 + timedelta(seconds=2)} if status in ("success", "failed", "cancelled") else {}
    return {"run_id": run_id, "workflow_id": "payroll", "status": status, "start_time": T0, **ended, **extra}


def test_lists_and_the_dashboard_are_read_from_the_replica(store, locker, names, read_role_url):
    store.upsert_run(run("run-1"))
    store.audit("ada", "workflow.publish", "payroll")
    replica_role = make_url(read_role_url).username

    which, role, runs = served_by(locker, "workflow_runs", store.list_runs, names)
    assert (which, role) == ("replica", replica_role)
    assert [r["run_id"] for r in runs] == ["run-1"]

    which, role, entries = served_by(locker, "audit_log", store.list_audit, names)
    assert (which, role) == ("replica", replica_role)
    assert [e["action"] for e in entries] == ["workflow.publish"]

    dashboard = lambda: metrics.dashboard_data(store, T0 - timedelta(hours=1), T0 + timedelta(hours=1))  # noqa: E731
    which, role, data = served_by(locker, "workflow_runs", dashboard, names)
    assert (which, role) == ("replica", replica_role)
    assert data["success_rate"]["success"].sum() == 1

    which, _, families = served_by(locker, "workflow_runs", lambda: metrics.store_families(store), names)
    assert which == "replica" and families


def test_a_runs_own_record_its_logs_and_every_write_stay_on_the_primary(store, locker, names, pg_app_url):
    app_role = make_url(pg_app_url).username
    store.upsert_run(run("run-1", status="running"))

    which, role, _ = served_by(locker, "workflow_runs", lambda: store.upsert_run(run("run-2", status="running")), names)
    assert (which, role) == ("primary", app_role)
    # Read straight after the write: the primary, which has it.
    which, _, record = served_by(locker, "workflow_runs", lambda: store.get_run("run-2"), names)
    assert which == "primary" and record["status"] == "running"
    which, _, _ = served_by(
        locker, "logs", lambda: store.add_log("run-2", "fetch", "info", "GET /orders -> 200"), names
    )
    assert which == "primary"
    which, _, lines = served_by(locker, "logs", lambda: store.list_logs("run-2"), names)
    assert which == "primary" and [line["message"] for line in lines] == ["GET /orders -> 200"]
    which, _, _ = served_by(locker, "audit_log", lambda: store.audit("ada", "run.start", "run-2"), names)
    assert which == "primary"


def test_tenants_stay_apart_through_the_replica(store):
    a, b = store.for_tenant("acme"), store.for_tenant("globex")
    a.upsert_run(run("run-acme"))
    b.upsert_run(run("run-globex", status="failed", error="boom"))
    a.audit("ada", "workflow.create", "payroll")

    assert [r["run_id"] for r in a.list_runs()] == ["run-acme"]
    assert [r["run_id"] for r in b.list_runs()] == ["run-globex"]
    assert b.list_audit() == [] and len(a.list_audit()) == 1
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert metrics.success_rate(a, *window)[["success", "failed"]].values.tolist() == [[1, 0]]
    assert metrics.success_rate(b, *window)[["success", "failed"]].values.tolist() == [[0, 1]]

    # A query that forgets the tenant filter still sees only its tenant's rows on the replica:
    # the replica's transactions carry the tenant setting that row-level security reads.
    with b.reader() as conn:
        assert conn.execute(text("SELECT run_id FROM workflow_runs")).scalars().all() == ["run-globex"]
        assert conn.execute(text("SELECT current_setting('floworch.tenant')")).scalar() == "globex"
    # ... and nothing can be written through it.
    with b.reader() as conn, pytest.raises(DBAPIError, match="read-only transaction"):
        conn.execute(text("UPDATE workflow_runs SET status = 'success'"))
    assert b.get_run("run-globex")["status"] == "failed"


@pytest.mark.parametrize(
    "bad, says",
    [
        ("not a url", "FLOWORCH_DATABASE_READ_URL is not a database URL: 'not a url'"),
        ("sqlite:///replica.db", "FLOWORCH_DATABASE_READ_URL must be a PostgreSQL URL"),
        ("port", "cannot connect: connection failed"),
        ("database", 'database "no_such_db" does not exist'),
        ("empty schema", "no FlowOrchestrator store there"),
        ("no grants", "may not read the store"),
    ],
)
def test_a_bad_read_url_is_refused_naming_the_setting(bad, says, pg_url, pg_app_url, read_role_url, tmp_path):
    url, owner_url = pg_app_url, pg_url
    empty_schema = None
    if bad == "port":
        bad = make_url(read_role_url).set(port=1, password="s3cret").render_as_string(hide_password=False)
    elif bad == "database":
        bad = make_url(read_role_url).set(database="no_such_db").render_as_string(hide_password=False)
    elif bad == "empty schema":
        bad = empty_schema = postgres_url()  # a schema of its own, with no store in it
    elif bad == "no grants":
        url, owner_url = pg_url, None  # the owner migrates alone: nobody grants the read role anything
        bad = read_role_url
    try:
        with pytest.raises(ValueError) as error:
            Store(url, owner_url=owner_url, read_url=bad).close()
    finally:
        if empty_schema:
            drop_postgres_schema(empty_schema)
    assert "FLOWORCH_DATABASE_READ_URL" in str(error.value) and says in str(error.value)
    assert "s3cret" not in str(error.value)


def test_a_read_url_needs_a_postgresql_store(tmp_path, read_role_url):
    with pytest.raises(
        ValueError, match="FLOWORCH_DATABASE_READ_URL is set, but FLOWORCH_DATABASE_URL is not PostgreSQL"
    ):
        store_for(Settings(data_dir=str(tmp_path), database_read_url=read_role_url))


def test_a_replica_behind_the_primarys_schema_is_refused(store, pg_url, read_role_url):
    with _connect(make_url(pg_url).username) as conn:
        schema = make_url(pg_url).query["options"].partition("search_path=")[2]
        conn.execute(f"UPDATE \"{schema}\".{VERSION_TABLE} SET version_num = '0005'")
    engine = replica_engine(read_role_url)
    try:
        with pytest.raises(
            ValueError, match=r"FLOWORCH_DATABASE_READ_URL .*schema revision '0005'.*is replication running"
        ):
            check_replica(engine, "FLOWORCH_DATABASE_READ_URL", catch_up_s=0)
    finally:
        engine.dispose()


def test_without_a_read_url_every_read_is_the_primarys(pg_app_url, pg_url, locker, names):
    opened = Store(named(pg_app_url, names["primary"]), owner_url=pg_url)
    try:
        opened.upsert_run(run("run-1"))
        which, _, runs = served_by(locker, "workflow_runs", opened.list_runs, names)
        assert which == "primary" and len(runs) == 1
    finally:
        opened.close()
