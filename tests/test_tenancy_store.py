"""Tenant isolation in the store, tried as another tenant would: on SQLite (the store's own
filters) and on the real PostgreSQL as an unprivileged application role that owns nothing
(the store's filters, and row-level security below them, even for raw SQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from floworch_server import metrics
from floworch_server.store import NotFound, Store, check_tenant
from floworch_server.store.engine import make_engine, normalise_url, writer
from floworch_server.store.migrate import alembic_config
from floworch_server.store.models import TENANT_TABLES
from support.postgres import pg_app_url  # noqa: F401  (fixture: an unprivileged role on pg_url's schema)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FLOW = {"version": 1, "nodes": {"a": {"type": "http"}}, "edges": {}, "meta": {}}
INJECTION = "x' OR '1'='1"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """The deployment's store, default tenant. On PostgreSQL: logged in as the application role,
    migrated (and granted) through the owner's URL, as a team deploys it."""
    if request.param == "sqlite":
        opened = Store(f"sqlite:///{tmp_path / 'floworch.db'}")
    else:
        opened = Store(request.getfixturevalue("pg_app_url"), owner_url=request.getfixturevalue("pg_url"))
    yield opened
    opened.close()


@pytest.fixture
def app_engine(pg_url, pg_app_url):
    """A raw engine logged in as the application role (no store in between)."""
    Store(pg_app_url, owner_url=pg_url).close()  # migrate and grant
    engine = create_engine(normalise_url(pg_app_url))
    yield engine
    engine.dispose()


def seed(a: Store) -> dict:
    """One of everything, in tenant ``a``; returns the ids an attacker would try."""
    wf = a.create_workflow(name="Payroll", document=FLOW, created_by="ada", path="payroll.flow")
    a.add_version(wf["id"], plan={"p": 1}, plan_hash="h1", document=FLOW, note="", created_by="ada")
    a.save_document_state(wf["id"], b"yjs-state")
    a.replace_triggers(
        wf["id"], [{"node_id": "hook", "kind": "webhook", "key": "hook-a", "version": 1, "secret": b"s"}]
    )
    a.upsert_run(
        {
            "run_id": "run-a",
            "workflow_id": wf["id"],
            "status": "success",
            "start_time": T0,
            "end_time": T0 + timedelta(seconds=1),
        }
    )
    a.add_node_timings(
        "run-a",
        [
            {
                "node": "n",
                "node_type": "http",
                "kind": "activity",
                "started": T0,
                "ended": T0 + timedelta(milliseconds=5),
                "status": "success",
            }
        ],
    )
    log_id = a.add_log("run-a", "n", "info", "salary of ada")
    a.audit("ada", "workflow.create", f"workflow:{wf['id']}", {"name": "Payroll"})
    a.put_integration(name="bank", provider="http", secret=b"encrypted-a", settings={}, created_by="ada")
    a.add_member("ada", "admin", "ada")
    rule = a.add_alert_rule(name="payroll-rate", kind="success_rate", threshold=99.0)
    _, alert = a.judge_alert(rule["id"], violated=True, value=50.0, message="low", at=T0)
    assert alert is not None
    a.add_metric_sample("collab_sync_ms", 12.0, at=T0)
    a.add_refresh_token("f" * 64, "family-a", "ada", T0 + timedelta(days=14))
    return {"workflow": wf["id"], "rule": rule["id"], "alert": alert["id"], "log": log_id}


def snapshot(a: Store, ids: dict) -> dict:
    """Everything tenant ``a`` can read about its records."""
    return {
        "workflow": a.get_workflow(ids["workflow"]),
        "state": a.get_document_state(ids["workflow"]),
        "versions": a.list_versions(ids["workflow"]),
        "triggers": a.list_triggers(),
        "runs": a.list_runs(),
        "timings": a.list_node_timings(),
        "logs": a.list_logs("run-a"),
        "audit": a.list_audit(),
        "integration": a.get_integration("bank"),
        "members": a.list_members(),
        "rules": a.list_alert_rules(),
        "alerts": a.list_alerts(),
        "samples": a.metric_values("collab_sync_ms", T0 - timedelta(hours=1), T0 + timedelta(hours=1)),
    }


# -- reads and writes through the store ------------------------------------------------


def test_another_tenant_sees_none_of_a_tenants_records_through_any_method(store):
    a, b = store.for_tenant("a"), store.for_tenant("b")
    ids = seed(a)
    wf = ids["workflow"]

    assert b.get_workflow(wf) is None and b.list_workflows() == [] and b.find_workflow_by_path("payroll.flow") is None
    with pytest.raises(NotFound):
        b.get_document_state(wf)
    assert b.get_version(wf, 1) is None and b.list_versions(wf) == []
    assert b.list_triggers() == [] and b.list_triggers(kind="webhook", key="hook-a") == []
    assert b.get_run("run-a") is None and b.list_runs() == [] and b.list_runs(workflow_id=wf) == []
    assert (
        b.list_node_timings() == [] and b.list_node_timings("run-a") == [] and b.runs_needing_timings(["run-a"]) == []
    )
    assert b.list_logs("run-a") == []
    assert b.list_audit() == [] and b.list_audit(actor="ada") == []
    assert b.get_integration("bank") is None and b.list_integrations() == []
    assert b.get_member("ada") is None and b.list_members() == []
    assert b.get_alert_rule("payroll-rate") is None and b.get_alert_rule(ids["rule"]) is None
    assert b.get_alert(ids["alert"]) is None and b.list_alerts() == []
    assert b.metric_values("collab_sync_ms", T0 - timedelta(hours=1), T0 + timedelta(hours=1)) == []
    assert b.use_refresh_token("f" * 64) is None
    # The dashboard's aggregates read through the same scoping.
    assert metrics.success_rate(b, T0 - timedelta(hours=1), T0 + timedelta(hours=1))["total"].tolist() == [0]
    assert metrics.success_rate(a, T0 - timedelta(hours=1), T0 + timedelta(hours=1))["total"].tolist() == [1]
    assert metrics.latency(b, T0 - timedelta(hours=1), T0 + timedelta(hours=1)).empty
    assert metrics.throughput(b, T0, T0 + timedelta(hours=1), bucket="1h")["total"].tolist() == [0]
    # ... and the default tenant, which every single-tenant caller uses, sees none of it either.
    assert store.get_workflow(wf) is None and store.list_runs() == [] and store.list_audit() == []


def test_another_tenant_cannot_change_or_delete_a_tenants_records(store):
    a, b = store.for_tenant("a"), store.for_tenant("b")
    ids = seed(a)
    wf = ids["workflow"]
    before = snapshot(a, ids)

    for attempt in (
        lambda: b.update_draft(wf, document={**FLOW, "nodes": {}}, by="mallory"),
        lambda: b.save_document_state(wf, b"evil"),
        lambda: b.add_version(wf, plan={}, plan_hash="x", document=FLOW, note="", created_by="mallory"),
        lambda: b.unpublish_workflow(wf),
        lambda: b.delete_workflow(wf),
        lambda: b.replace_triggers(wf, [{"node_id": "hook", "kind": "webhook", "key": "evil", "version": 9}]),
        lambda: b.delete_integration("bank"),
        lambda: b.remove_member("ada"),
        lambda: b.update_alert_rule(ids["rule"], threshold=0.0),
        lambda: b.judge_alert(ids["rule"], violated=False, value=None, message="cleared by b"),
    ):
        with pytest.raises(NotFound):
            attempt()
    with pytest.raises(ValueError, match="run 'run-a' belongs to another tenant"):
        b.upsert_run({"run_id": "run-a", "status": "failed", "error": "forged"})
    assert b.replace_triggers(wf, []) == []  # removes nothing of a's
    b.set_alert_action_run(ids["alert"], "evil-run")
    assert b.revoke_refresh_family("family-a") == 0
    # Same names in b are b's own records, not a's.
    b.put_integration(name="bank", provider="http", secret=b"encrypted-b", settings={}, created_by="mallory")
    b.add_member("ada", "viewer", "mallory")
    b.add_node_timings("run-a", [])
    assert b.purge(runs_ended_before=T0 + timedelta(days=1), logs_before=T0 + timedelta(days=365)) == dict.fromkeys(
        ["runs", "node_timings", "logs", "alerts", "metric_samples"], 0
    )

    assert snapshot(a, ids) == before
    assert a.get_integration("bank")["secret"] == b"encrypted-a" and a.get_member("ada")["role"] == "admin"
    assert a.use_refresh_token("f" * 64)["revoked_at"] is None


def test_a_record_naming_another_tenant_is_refused_and_nothing_is_stored(store):
    a = store.for_tenant("a")
    refusals = {
        "create_workflow": lambda: a.create_workflow(name="x", document=FLOW, created_by="ada", tenant="b"),
        "run 'r1'": lambda: a.upsert_run({"run_id": "r1", "status": "queued", "tenant": "b"}),
        "list_workflows": lambda: a.list_workflows(tenant="b"),
        "put_integration": lambda: a.put_integration(
            name="n", provider="p", secret=b"s", settings={}, created_by="ada", tenant="b"
        ),
        "get_integration": lambda: a.get_integration("n", tenant="b"),
        "list_integrations": lambda: a.list_integrations("b"),
        "add_node_timings": lambda: a.add_node_timings("r1", [], tenant="b"),
    }
    for method, attempt in refusals.items():
        with pytest.raises(
            ValueError, match=rf"{method}: tenant 'b' is not this store's tenant 'a'; use store.for_tenant\('b'\)"
        ):
            attempt()
    for tenant in ("a", "b"):
        view = store.for_tenant(tenant)
        assert view.list_workflows() == [] and view.list_runs() == [] and view.list_integrations() == []
    # Naming its own tenant is what older callers do, and stays fine.
    assert a.create_workflow(name="x", document=FLOW, created_by="ada", tenant="a")["tenant"] == "a"


@pytest.mark.parametrize(
    "bad", ["", "Acme", "acme corp", "-acme", "a" * 65, "acme\n", "a'; DROP TABLE workflows; --", "ümlaut", None, 7]
)
def test_an_invalid_tenant_id_is_a_clear_error(store, bad):
    with pytest.raises(ValueError, match=r"invalid tenant id .*: use 1 to 64 characters of a-z, 0-9, '_' and '-'"):
        store.for_tenant(bad)
    with pytest.raises(ValueError, match="invalid tenant id"):
        Store(store.url, tenant=bad)
    assert store.tenants() == ["default"]


def test_valid_tenant_ids(store):
    for good in ("default", "acme", "a", "team-7_eu", "0" * 64):
        assert check_tenant(good) == good and store.for_tenant(good).tenant == good


def test_names_are_per_tenant_but_ids_are_unique_across_tenants(store):
    a, b = store.for_tenant("a"), store.for_tenant("b")
    wa = a.create_workflow(name="etl", document=FLOW, created_by="ada", path="etl.flow", id="wf-1")
    wb = b.create_workflow(name="etl", document=FLOW, created_by="bob", path="etl.flow")
    assert (
        a.find_workflow_by_path("etl.flow")["id"] == wa["id"] and b.find_workflow_by_path("etl.flow")["id"] == wb["id"]
    )
    a.add_alert_rule(name="slow", kind="sync_latency", threshold=100)
    b.add_alert_rule(name="slow", kind="sync_latency", threshold=900)
    assert (a.get_alert_rule("slow")["threshold"], b.get_alert_rule("slow")["threshold"]) == (100, 900)
    # An id taken in another tenant: refused without saying whose it is, and a's is untouched.
    with pytest.raises(ValueError, match="workflow id 'wf-1' already exists; leave the id out"):
        b.create_workflow(name="hijack", document=FLOW, created_by="bob", id="wf-1")
    assert a.get_workflow("wf-1")["name"] == "etl" and b.get_workflow("wf-1") is None


def test_tenants_are_listed_and_a_new_tenant_starts_with_the_default_alert_rules(store):
    assert store.tenants() == ["default"]
    acme = store.for_tenant("acme")
    assert acme.list_alert_rules() == []
    acme.add_member("ada", "admin", "root")
    assert store.tenants() == ["acme", "default"]
    assert [r["name"] for r in acme.list_alert_rules()] == [
        "run-success-rate",
        "task-queue-backlog",
        "collab-sync-latency",
    ]
    acme.update_alert_rule("run-success-rate", enabled=False)
    assert acme.ensure_tenant() is False  # known: not seeded twice
    assert store.get_alert_rule("run-success-rate")["enabled"] is True  # the default tenant's own rule


def test_a_tenant_view_is_cheap_to_drop(store):
    with store.for_tenant("acme") as acme:
        acme.add_member("ada", "admin", "root")
    # Closing the view left the shared connections to the store it came from.
    assert store.for_tenant("acme").get_member("ada")["role"] == "admin"
    assert store.for_tenant(store.tenant) is store


# -- members ---------------------------------------------------------------------------


def test_members_are_added_changed_listed_and_removed(store):
    acme = store.for_tenant("acme")
    added = acme.add_member("ada", "admin", "root")
    assert (added["user"], added["role"], added["added_by"], added["tenant"]) == ("ada", "admin", "root", "acme")
    acme.add_member("bob", "viewer", "ada")
    assert acme.add_member("bob", "editor", "ada")["role"] == "editor"  # an upsert: one row per user
    assert [(m["user"], m["role"]) for m in acme.list_members()] == [("ada", "admin"), ("bob", "editor")]
    with pytest.raises(ValueError, match="role must be one of admin, editor, viewer; got 'owner'"):
        acme.add_member("carol", "owner", "ada")
    with pytest.raises(ValueError, match="user must be a non-empty string"):
        acme.add_member("", "viewer", "ada")
    assert acme.get_member("carol") is None
    acme.remove_member("bob")
    assert acme.get_member("bob") is None
    with pytest.raises(NotFound, match="'bob' is not a member of tenant 'acme'"):
        acme.remove_member("bob")


# -- refresh tokens --------------------------------------------------------------------


def test_a_refresh_token_is_spent_once_and_a_replay_is_visible_to_the_caller(store):
    acme = store.for_tenant("acme")
    expires = T0 + timedelta(days=14)
    acme.add_refresh_token("1" * 64, "fam", "ada", expires)
    acme.add_refresh_token("2" * 64, "fam", "ada", expires)  # rotated from the first
    acme.add_refresh_token("3" * 64, "other", "ada", expires)

    first = acme.use_refresh_token("1" * 64)
    assert first["used_at"] is None and (first["user"], first["family"], first["tenant"], first["expires_at"]) == (
        "ada",
        "fam",
        "acme",
        expires,
    )
    replay = acme.use_refresh_token("1" * 64)
    assert replay["used_at"] is not None  # spent before: the caller revokes the family
    assert acme.revoke_refresh_family("fam") == 2
    assert acme.revoke_refresh_family("fam") == 0
    assert acme.use_refresh_token("2" * 64)["revoked_at"] is not None
    assert acme.use_refresh_token("3" * 64)["revoked_at"] is None  # another sign-in's family is untouched
    assert acme.use_refresh_token("0" * 64) is None
    # Another tenant can neither spend nor revoke it.
    acme.add_refresh_token("4" * 64, "fam4", "ada", expires)
    assert store.use_refresh_token("4" * 64) is None and store.revoke_refresh_family("fam4") == 0
    assert acme.use_refresh_token("4" * 64)["used_at"] is None


# -- audit -----------------------------------------------------------------------------


def test_the_audit_log_is_filtered_by_actor_action_target_and_time(store):
    acme = store.for_tenant("acme")
    acme.audit("ada", "workflow.create", "workflow:w1")
    acme.audit("bob", "workflow.publish", "workflow:w1", {"version": 1})
    acme.audit("ada", "member.add", "member:bob", {"role": "viewer"})
    acme.audit("ada", "workflowx", "workflow:w2")
    store.audit("ada", "workflow.create", "workflow:w9")  # the default tenant's

    def actions(**filters):
        return [e["action"] for e in acme.list_audit(**filters)]

    assert actions() == ["workflowx", "member.add", "workflow.publish", "workflow.create"]
    assert actions(actor="ada") == ["workflowx", "member.add", "workflow.create"]
    assert actions(action="workflow.") == ["workflow.publish", "workflow.create"]  # a prefix, not "workflowx"
    assert actions(action="workflow.create") == ["workflow.create"]
    assert actions(target="workflow:w1", actor="bob") == ["workflow.publish"]
    assert actions(limit=2) == ["workflowx", "member.add"]
    entries = acme.list_audit()
    assert all(e["tenant"] == "acme" for e in entries)
    newest, oldest = entries[0]["timestamp"], entries[-1]["timestamp"]
    assert len(actions(since=oldest, until=newest + timedelta(seconds=1))) == 4  # since inclusive
    assert actions(until=oldest) == []  # until exclusive
    assert actions(since=newest + timedelta(seconds=1)) == []
    assert actions(since=oldest.isoformat(), actor="bob") == ["workflow.publish"]  # ISO text is accepted too


def test_sql_shaped_filter_values_match_nothing_and_break_nothing(store):
    acme = store.for_tenant("acme")
    acme.audit("ada", "workflow.create", "workflow:w1")
    for filters in (
        {"actor": INJECTION},
        {"actor": "ada' --"},
        {"target": "workflow:w1' OR 1=1 --"},
        {"action": "%."},  # a LIKE wildcard as the prefix
        {"action": "_orkflow."},
        {"action": "workflow'; DELETE FROM audit_log; --."},
    ):
        assert acme.list_audit(**filters) == [], filters
    assert acme.get_member(INJECTION) is None and acme.get_workflow(INJECTION) is None
    assert acme.find_workflow_by_path(INJECTION) is None and acme.list_logs(INJECTION) == []
    assert [e["actor"] for e in acme.list_audit()] == ["ada"]  # still there, nothing else is


# -- PostgreSQL: row-level security against the application's own raw SQL ----------------


def _count(conn, table: str) -> int:
    return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def _as(conn, tenant: str) -> None:
    conn.execute(text("SELECT set_config('floworch.tenant', :t, true)"), {"t": tenant})


@pytest.mark.postgres
def test_postgres_without_a_tenant_the_app_role_reads_nothing(pg_url, pg_app_url, app_engine):
    with Store(pg_app_url, tenant="a", owner_url=pg_url) as a:
        seed(a)
    with app_engine.connect() as conn:
        assert {table: _count(conn, table) for table in TENANT_TABLES} == dict.fromkeys(TENANT_TABLES, 0)
        _as(conn, "b")
        assert _count(conn, "workflows") == 0 and _count(conn, "audit_log") == 0
    with app_engine.begin() as conn:
        _as(conn, "a")
        assert _count(conn, "workflows") == 1 and _count(conn, "logs") == 1 and _count(conn, "members") == 1
    # The tenant set by a transaction ends with it: the next one on the pool sees nothing again.
    with app_engine.connect() as conn:
        assert _count(conn, "workflows") == 0


@pytest.mark.postgres
def test_postgres_raw_sql_of_one_tenant_cannot_write_or_touch_anothers_rows(pg_url, pg_app_url, app_engine):
    with Store(pg_app_url, tenant="b", owner_url=pg_url) as b:
        ids = seed(b)
        before = snapshot(b, ids)
    row = {"id": "forged", "name": "x", "document": "{}", "created_by": "mallory", "now": T0}
    insert = "INSERT INTO workflows (id, name, tenant, document, created_by, created_at, updated_at, draft_version) VALUES (:id, :name, {tenant}, :document, :created_by, :now, :now, 1)"
    with app_engine.begin() as conn:
        _as(conn, "a")
        with pytest.raises(DBAPIError, match="row-level security"), conn.begin_nested():
            conn.execute(text(insert.format(tenant="'b'")), row)
        with pytest.raises(DBAPIError, match="row-level security"), conn.begin_nested():
            conn.execute(
                text(
                    "INSERT INTO audit_log (tenant, actor, action, target, timestamp) VALUES ('b', 'mallory', 'x', 'y', now())"
                )
            )
        # Its own rows it may write (the policy is not simply "no"): then it tries to move one to b.
        conn.execute(text(insert.format(tenant="'a'")), row)
        with pytest.raises(DBAPIError, match="row-level security"), conn.begin_nested():
            conn.execute(text("UPDATE workflows SET tenant = 'b' WHERE id = 'forged'"))
        assert conn.execute(text("UPDATE workflows SET name = 'pwned'")).rowcount == 1  # only its own
        assert (
            conn.execute(text("UPDATE workflow_runs SET status = 'failed' WHERE run_id = 'run-a' OR '1'='1'")).rowcount
            == 0
        )
        assert conn.execute(text(f"DELETE FROM workflows WHERE id = '{ids['workflow']}'")).rowcount == 0
        for table in ("logs", "members", "integrations", "refresh_tokens", "workflow_versions", "alert_rules"):
            assert conn.execute(text(f"DELETE FROM {table}")).rowcount == 0, table
    with Store(pg_app_url, tenant="b", owner_url=pg_url) as b:
        assert snapshot(b, ids) == before


@pytest.mark.postgres
def test_postgres_the_app_role_can_only_append_to_the_audit_log_and_owns_no_table(pg_url, pg_app_url, app_engine):
    with Store(pg_app_url, tenant="a", owner_url=pg_url) as a:
        a.audit("ada", "workflow.create", "workflow:w1")
    with app_engine.begin() as conn:
        _as(conn, "a")
        for statement in ("UPDATE audit_log SET actor = 'nobody'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(DBAPIError, match="permission denied for table audit_log"), conn.begin_nested():
                conn.execute(text(statement))
        with pytest.raises(DBAPIError, match="must be owner of table workflows"), conn.begin_nested():
            conn.execute(text("ALTER TABLE workflows DISABLE ROW LEVEL SECURITY"))
        owners = (
            conn.execute(text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = current_schema()"))
            .scalars()
            .all()
        )
        me = conn.execute(text("SELECT current_user")).scalar()
        assert owners and me not in owners
    with Store(pg_app_url, tenant="a", owner_url=pg_url) as a:
        assert [(e["actor"], e["action"]) for e in a.list_audit()] == [("ada", "workflow.create")]


# -- upgrading a single-tenant store ---------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def old_store_url(request, tmp_path) -> str:
    """A store at the last single-tenant schema (revision 0004), with records in it."""
    url = f"sqlite:///{tmp_path / 'floworch.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = writer(make_engine(url))
    try:
        with engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0004")
            now = {"now": "2025-03-01 12:00:00.000000"}  # UTC, in the store's SQLite text format
            conn.execute(
                text(
                    "INSERT INTO workflows (id, name, tenant, path, document, created_by, created_at, updated_at, draft_version) VALUES ('w1', 'Payroll', 'acme', 'p.flow', '{}', 'ada', :now, :now, 1)"
                ),
                now,
            )
            conn.execute(
                text(
                    "INSERT INTO workflow_versions (workflow_id, version, plan, plan_hash, document, note, created_by, created_at) VALUES ('w1', 1, '{}', 'h', '{}', '', 'ada', :now)"
                ),
                now,
            )
            conn.execute(
                text(
                    "INSERT INTO trigger_registrations (workflow_id, node_id, kind, key, version, config, created_at, updated_at) VALUES ('w1', 'hook', 'webhook', 'k', 1, '{}', :now, :now)"
                ),
                now,
            )
            conn.execute(
                text(
                    "INSERT INTO workflow_runs (run_id, workflow_id, tenant, start_time, status, search_attributes, updated_at) VALUES ('r1', 'w1', 'acme', :now, 'success', '{}', :now)"
                ),
                now,
            )
            conn.execute(
                text(
                    "INSERT INTO logs (timestamp, run_id, node, level, message) VALUES (:now, 'r1', 'n', 'info', 'hello')"
                ),
                now,
            )
            conn.execute(
                text(
                    "INSERT INTO audit_log (timestamp, actor, action, target) VALUES (:now, 'ada', 'workflow.create', 'workflow:w1')"
                ),
                now,
            )
    finally:
        engine.dispose()
    return url


def test_upgrading_keeps_every_record_and_gives_it_its_parents_tenant(old_store_url):
    with Store(old_store_url, tenant="acme") as acme:
        assert acme.tenants() == ["acme", "default"]
        # SQLite rebuilt the workflows table: its versions and triggers (ON DELETE CASCADE) survived.
        assert [v["tenant"] for v in acme.list_versions("w1")] == ["acme"]
        assert [(t["key"], t["tenant"]) for t in acme.list_triggers()] == [("k", "acme")]
        assert [line["message"] for line in acme.list_logs("r1")] == ["hello"]
        assert acme.get_run("r1")["status"] == "success"
        assert acme.list_audit() == []  # entries without a tenant were the default tenant's
        default = acme.for_tenant("default")
        assert [e["action"] for e in default.list_audit()] == ["workflow.create"]
        assert [r["name"] for r in default.list_alert_rules()] == [
            "run-success-rate",
            "task-queue-backlog",
            "collab-sync-latency",
        ]
