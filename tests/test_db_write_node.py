"""action.db_write through the engine, on SQLite (a temp file) and on the real PostgreSQL: rows
written from references, updates by key, upserts, names checked against the live schema, and
exactly one row when the worker dies after the database committed but before Temporal heard.

The database is always named by a stored integration ("orders-db"), as in a real flow."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest
import sqlalchemy as sa

from conftest import finished, flow_doc, nodes_by_id, wait_until
from floworch_server.integrations import Integrations
from floworch_server.settings import Settings
from floworch_server.validate import validate_data

TRIGGER = {"id": "start", "type": "trigger.manual"}
CONNECTION = "orders-db"
FAST_RETRY = {"retry": {"initial_interval_seconds": 0.2, "backoff": 1}}

metadata = sa.MetaData()
ORDERS = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sku", sa.String(40), nullable=False, unique=True),
    sa.Column("qty", sa.Integer, sa.CheckConstraint("qty >= 0", name="qty_not_negative"), nullable=False),
    sa.Column("customer", sa.String(80)),
    sa.Column("idem_key", sa.String(200), unique=True),
)


class Database:
    """The test's own view of the database the flow writes to (not through the worker)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = sa.create_engine(url)
        metadata.create_all(self.engine)

    def insert(self, **values) -> int:
        with self.engine.begin() as conn:
            return conn.execute(sa.insert(ORDERS).values(values).returning(ORDERS.c.id)).scalar_one()

    def rows(self, **where) -> list[dict]:
        query = sa.select(ORDERS).order_by(ORDERS.c.id).where(*(ORDERS.c[k] == v for k, v in where.items()))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path, service):
    url = f"sqlite:///{tmp_path / 'orders.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    store_connection(service, url)
    yield database
    database.engine.dispose()


def store_connection(service, url: str) -> None:
    # The worker shares the store and the secret key: it finds the URL by the integration's name.
    Integrations.from_settings(Settings.from_env(), store=service.store).add(
        CONNECTION, "database", {"url": url}, by="t"
    )


def write_node(**config) -> dict:
    return {
        "id": "write",
        "type": "action.db_write",
        "config": {"connection": CONNECTION, "table": "orders", **config},
        "policy": FAST_RETRY,
    }


async def run_flow(service, flow: str, input=None) -> dict:
    return await finished(service, (await service.start_run(flow, input=input, by="t"))["run_id"])


# ------------------------------------------------------------------ writing
async def test_an_insert_writes_the_values_its_references_name_and_returns_the_new_key(service, published, db):
    flow = await published(
        [
            TRIGGER,
            write_node(
                values={"sku": "{{ input.sku }}", "qty": "{{ input.qty }}", "customer": "{{ input.customer.name }}"}
            ),
            {"id": "use", "type": "transform", "config": {"output": "{{ nodes.write.output.rows[0].id }}"}},
        ],
        [("start", "write"), ("write", "use")],
    )
    run = await run_flow(service, flow, {"sku": "A-1", "qty": 3, "customer": {"name": "Ada"}})

    assert run["status"] == "success", run.get("error")
    [row] = db.rows()
    assert row == {"id": row["id"], "sku": "A-1", "qty": 3, "customer": "Ada", "idem_key": None}
    assert run["result"]["outputs"] == {"use": row["id"]}
    logs = service.store.list_logs(run["run_id"])
    assert [(e["node"], e["message"]) for e in logs] == [("write", "insert on orders: 1 row(s)")]


async def test_several_rows_are_written_in_one_transaction(service, published, db):
    flow = await published([TRIGGER, write_node(rows="{{ input.items }}")], [("start", "write")])

    run = await run_flow(service, flow, {"items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}]})
    assert run["status"] == "success", run.get("error")
    ids = [r["id"] for r in db.rows()]
    assert run["result"]["outputs"]["write"] == {
        "operation": "insert",
        "table": "orders",
        "rowcount": 2,
        "rows": [{"id": i} for i in ids],
        "duplicate": False,
    }

    # The second row breaks the CHECK constraint: the first is not written either, and the
    # node fails at once (the same data would fail again) with the database's message.
    run = await run_flow(service, flow, {"items": [{"sku": "C", "qty": 1}, {"sku": "D", "qty": -5}]})
    write = nodes_by_id(run)["write"]
    assert (run["status"], write["attempts"]) == ("failed", 1)
    assert "insert on table 'orders'" in write["error"] and "qty" in write["error"]
    assert [r["sku"] for r in db.rows()] == ["A", "B"]


async def test_an_update_changes_only_the_row_its_key_columns_name(service, published, db):
    db.insert(sku="A", qty=1, customer="Ada")
    kept = db.insert(sku="B", qty=2, customer="Bob")
    flow = await published(
        [
            TRIGGER,
            write_node(
                operation="update", key_columns=["sku"], values={"sku": "{{ input.sku }}", "qty": "{{ input.qty }}"}
            ),
        ],
        [("start", "write")],
    )
    run = await run_flow(service, flow, {"sku": "A", "qty": 7})

    assert run["status"] == "success", run.get("error")
    [a, b] = db.rows()
    assert (a["sku"], a["qty"], a["customer"]) == ("A", 7, "Ada")
    assert (b["id"], b["qty"]) == (kept, 2)
    assert run["result"]["outputs"]["write"] == {
        "operation": "update",
        "table": "orders",
        "rowcount": 1,
        "rows": [{"id": a["id"]}],
        "duplicate": False,
    }


async def test_an_upsert_run_twice_inserts_the_row_once_and_then_updates_it(service, published, db):
    flow = await published(
        [
            TRIGGER,
            write_node(
                operation="upsert", key_columns=["sku"], values={"sku": "{{ input.sku }}", "qty": "{{ input.qty }}"}
            ),
        ],
        [("start", "write")],
    )
    first = await run_flow(service, flow, {"sku": "A", "qty": 1})
    second = await run_flow(service, flow, {"sku": "A", "qty": 5})

    assert (first["status"], second["status"]) == ("success", "success")
    [row] = db.rows()
    assert (row["sku"], row["qty"]) == ("A", 5)
    assert (
        first["result"]["outputs"]["write"]["rows"]
        == second["result"]["outputs"]["write"]["rows"]
        == [{"id": row["id"]}]
    )


async def test_an_upsert_on_columns_without_a_unique_key_fails_saying_what_the_table_has(service, published, db):
    flow = await published(
        [
            TRIGGER,
            write_node(operation="upsert", key_columns=["customer"], values={"sku": "A", "qty": 1, "customer": "Ada"}),
        ],
        [("start", "write")],
    )
    run = await run_flow(service, flow)

    write = nodes_by_id(run)["write"]
    assert (run["status"], write["attempts"]) == ("failed", 1)
    assert "needs a PRIMARY KEY or UNIQUE constraint on exactly those columns" in write["error"]
    assert "PRIMARY KEY (id)" in write["error"] and "UNIQUE (sku)" in write["error"]
    assert db.rows() == []


# ------------------------------------------------------------------ names checked against the live schema
async def test_an_unknown_table_or_column_fails_at_once_naming_it_and_the_known_ones(service, published, db):
    no_table = await published(
        [TRIGGER, write_node(table="order", values={"sku": "A", "qty": 1})], [("start", "write")]
    )
    no_column = await published(
        [TRIGGER, write_node(values={"sku": "A", "qty": 1, "colour": "red"})], [("start", "write")]
    )

    run = await run_flow(service, no_table)
    write = nodes_by_id(run)["write"]
    assert (run["status"], write["attempts"]) == ("failed", 1)
    assert "config.table: there is no table 'order'" in write["error"]
    assert "did you mean 'orders'?" in write["error"] and "known tables: orders" in write["error"]

    run = await run_flow(service, no_column)
    write = nodes_by_id(run)["write"]
    assert (run["status"], write["attempts"]) == ("failed", 1)
    assert "config.values: table 'orders' has no column 'colour'" in write["error"]
    assert "its columns: id, sku, qty, customer, idem_key" in write["error"]
    assert db.rows() == []


async def test_a_connection_that_is_not_stored_fails_at_once_saying_how_to_add_it(service, published):
    flow = await published(
        [TRIGGER, write_node(connection="no-such-db", values={"sku": "A", "qty": 1})], [("start", "write")]
    )
    run = await run_flow(service, flow)

    write = nodes_by_id(run)["write"]
    assert (run["status"], write["attempts"]) == ("failed", 1)
    assert "config.connection: no integration named 'no-such-db' is stored" in write["error"]
    assert 'fo.integrations.add("no-such-db", "database", url=' in write["error"]


def test_a_config_that_breaks_the_schema_is_a_validation_problem_naming_the_field():
    def problems(**config):
        doc = flow_doc([TRIGGER, write_node(**config)], [("start", "write")])
        return {(p.node, p.field, p.code) for p in validate_data(doc)}

    assert problems(operation="delete", values={"sku": "A"}) == {("write", "config.operation", "invalid-config")}
    assert problems(values={"sku": "A"}, rows=[{"sku": "B"}]) == {("write", "config", "invalid-config")}
    assert problems(operation="update", values={"sku": "A"}) == {
        ("write", "config.key_columns", "db-key-columns-missing")
    }
    assert problems(values={"sku": "A", "idem_key": "x"}, idempotency_column="idem_key") == {
        ("write", "config.values.idem_key", "db-idempotency-column-set")
    }
    # The URL, and its password, belong in the integration, never in the .flow file.
    assert problems(connection="postgresql://app:hunter2@db/orders", values={"sku": "A"}) == {
        ("write", "config.connection", "db-connection-is-url")
    }


# ------------------------------------------------------------------ exactly once
class CommitHoldingProxy:
    """A TCP proxy in front of PostgreSQL that passes everything but the server's answer to the
    first COMMIT. While that answer is held, the transaction is committed - every other session
    sees its rows - yet the worker has not heard so, and Temporal has not either: the window a
    crash right after a commit leaves, made to last as long as the test needs."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.holding = threading.Event()
        self._claimed = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pass, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client), daemon=True).start()

    def _pass(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                s.close()

    def _answers(self, server: socket.socket, client: socket.socket) -> None:
        """Server -> client, message by message (type byte, int32 length including itself)."""
        buffer = b""
        try:
            while data := server.recv(65536):
                buffer += data
                ready = b""
                while len(buffer) >= 5 and len(buffer) >= 1 + int.from_bytes(buffer[1:5], "big"):
                    size = 1 + int.from_bytes(buffer[1:5], "big")
                    message, buffer = buffer[:size], buffer[size:]
                    if message[:1] == b"C" and message[5:] == b"COMMIT\0" and self._claimed.acquire(blocking=False):
                        client.sendall(ready)
                        self.holding.set()
                        return  # the rest never reaches the worker
                    ready += message
                client.sendall(ready)
        except OSError:
            pass  # the worker died or the test closed the proxy

    def url(self, url: str) -> str:
        # No TLS or GSS negotiation: the proxy must read the protocol's messages.
        parsed = sa.engine.make_url(url).set(host="127.0.0.1", port=self.port)
        return parsed.update_query_dict({"sslmode": "disable", "gssencmode": "disable"}).render_as_string(
            hide_password=False
        )

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            s.close()


@pytest.mark.postgres
async def test_a_worker_killed_after_the_commit_leaves_exactly_one_row_and_the_retry_says_duplicate(
    service, published, supervisor, pg_url
):
    database = Database(pg_url)
    parsed = sa.engine.make_url(pg_url)
    proxy = CommitHoldingProxy((parsed.host, parsed.port))
    store_connection(service, proxy.url(pg_url))
    try:
        flow = await published(
            [
                TRIGGER,
                {
                    "id": "write",
                    "type": "action.db_write",
                    "config": {
                        "connection": CONNECTION,
                        "table": "orders",
                        "values": {"sku": "{{ input.sku }}", "qty": 1},
                        "idempotency_column": "idem_key",
                    },
                    # A short heartbeat: Temporal notices the dead worker in seconds.
                    "policy": {"heartbeat_seconds": 2, "retry": {"initial_interval_seconds": 0.5}},
                },
            ],
            [("start", "write")],
        )
        run_id = (await service.start_run(flow, input={"sku": "A"}, by="t"))["run_id"]
        key = f"{run_id}:write"

        async def committed():
            if proxy.holding.is_set():
                return True
            run = await service.get_run(run_id, with_nodes=False)
            assert run["status"] not in ("success", "failed", "cancelled"), (
                f"the run ended before its commit was held: {run}"
            )
            return False

        await wait_until(committed, timeout=30)
        # Committed: the row is there for everyone, though its writer has not been told.
        [row] = database.rows(idem_key=key)

        [old_pid] = supervisor.worker_pids()
        restarts = supervisor.restarts
        os.kill(old_pid, signal.SIGKILL)

        async def restarted():
            return supervisor.restarts > restarts and supervisor.worker_pids()[0] not in (None, old_pid)

        await wait_until(restarted, timeout=30)
        run = await finished(service, run_id, timeout=60)

        assert run["status"] == "success", run.get("error")
        assert nodes_by_id(run)["write"]["attempts"] == 2
        # The second attempt found its key and wrote nothing: one row, reported as a duplicate.
        assert run["result"]["outputs"]["write"] == {
            "operation": "insert",
            "table": "orders",
            "rowcount": 1,
            "rows": [{"id": row["id"]}],
            "duplicate": True,
        }
        assert database.rows() == [row]
    finally:
        proxy.close()
        database.engine.dispose()

    logs = [e["message"] for e in service.store.list_logs(run_id)]
    assert logs == ["insert on orders: already written by an earlier attempt (1 row(s)); not written again"]
    # The session's worker is back for the tests that follow.
    assert supervisor.worker_pids()[0] not in (None, old_pid)
