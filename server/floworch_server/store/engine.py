"""Engine creation: the connection settings that let several processes share one store.

SQLite is the embedded default (Jupyter server, worker and kernels all write the same file), so
every connection gets WAL (readers never block the writer), a busy timeout (writers queue instead
of failing) and foreign keys. Transactions that write start with ``BEGIN IMMEDIATE``: a deferred
transaction that reads and then writes fails outright with "database is locked" when another
process committed in between, which is exactly the read-max-then-insert pattern of versioning.

On PostgreSQL every transaction of a tenant-scoped engine (``scoped``) first sets the
transaction-local ``floworch.tenant`` setting that the row-level security policies compare
against (migration 0006). It is set in this one place, the engine's "begin" event, so no query
can run in a transaction without it; being transaction-local (``SET LOCAL``), it never leaks to
the next user of a pooled connection.

A read replica (``replica_engine``, FLOWORCH_DATABASE_READ_URL) is made the same way, so its
transactions carry the same tenant setting, and every one of them is also ``READ ONLY``: a
replica URL that turns out to reach the primary still cannot write.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
BUSY_TIMEOUT_MS = 5000
# Execution option marking an engine whose transactions write (see module docstring).
WRITE_OPTION = "floworch_write"
# Execution option carrying the tenant whose rows an engine's transactions may see.
TENANT_OPTION = "floworch_tenant"
# The PostgreSQL setting the row-level security policies read.
TENANT_SETTING = "floworch.tenant"
READ_URL_SETTING = "FLOWORCH_DATABASE_READ_URL"


def normalise_url(url: str, setting: str = "FLOWORCH_DATABASE_URL") -> str:
    """Accept plain ``postgresql://`` URLs, using psycopg 3 (the driver we depend on).
    ``setting`` names where the URL came from, for the error a bad one gets."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            f"{setting} is not a database URL: {url!r}; use sqlite:///<file> or postgresql+psycopg://user@host/db"
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"Unsupported store database {parsed.get_backend_name()!r} in {setting}; "
            "use sqlite:///<file> or postgresql+psycopg://user@host/db"
        )
    return parsed.render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory databases and other backends."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # pre_ping: the Jupyter server holds connections for days; Postgres may restart meanwhile.
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "begin")
    def _set_tenant(connection) -> None:
        tenant = connection.get_execution_options().get(TENANT_OPTION)
        if tenant is not None:
            # is_local=true: the SET LOCAL form, undone when the transaction ends.
            connection.exec_driver_sql(
                "SELECT set_config(%(name)s, %(tenant)s, true)", {"name": TENANT_SETTING, "tenant": tenant}
            )

    return engine


def replica_engine(url: str) -> Engine:
    """The engine of a PostgreSQL read replica at ``url`` (FLOWORCH_DATABASE_READ_URL): like
    ``make_engine``'s, with every transaction read only. Connects to nothing yet; the store
    checks the replica when it opens (``migrate.check_replica``)."""
    url = normalise_url(url, READ_URL_SETTING)
    if make_url(url).get_backend_name() != "postgresql":
        raise ValueError(
            f"{READ_URL_SETTING} must be a PostgreSQL URL (a read replica of FLOWORCH_DATABASE_URL), "
            f"got {make_url(url).render_as_string()!r}"
        )
    return make_engine(url).execution_options(postgresql_readonly=True)


def _sqlite_engine(url: str) -> Engine:
    path = sqlite_file(url)
    if path is None:
        # One shared connection, or every pooled connection would see its own empty database.
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN, instead of pysqlite's implicit, deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching a fresh file to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def scoped(engine: Engine, tenant: str) -> Engine:
    """The same engine (same pool), whose transactions belong to ``tenant`` (see module docstring)."""
    return engine.execution_options(**{TENANT_OPTION: tenant})


def writer(engine: Engine) -> Engine:
    """The same engine (same pool), with transactions that take the write lock up front."""
    return engine.execution_options(**{WRITE_OPTION: True})
