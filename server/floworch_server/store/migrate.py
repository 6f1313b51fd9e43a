"""Schema migrations, run by ``Store`` on open: ``upgrade head`` under a lock.

Several processes (Jupyter server, workers, kernels) may open a fresh store at the same moment.
The upgrade runs inside one write transaction that first takes a lock - ``BEGIN IMMEDIATE`` on
SQLite (plus a lock file, which also covers switching a brand-new file to WAL), an advisory lock
on Postgres - so the second process waits, then finds the schema at head and does nothing.

On PostgreSQL the tables should belong to an owner role that the application does not log in
as: row-level security (FORCEd, so owners are bound too, but an owner could turn it off) and
the append-only audit log then hold against the application's own connections. ``Store`` is
given the owner's URL (FLOWORCH_DATABASE_OWNER_URL) to migrate with; afterwards
``grant_app_role`` gives the application's role exactly what it needs. With one URL only, the
application role migrates and owns the tables: the weaker setup (and a superuser, which
bypasses row-level security entirely, leaves only the store's own tenant filters).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from .engine import sqlite_file

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "floworch_alembic_version"  # as in migrations/env.py
REPLICA_CATCH_UP_S = 10.0


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config built in code: no alembic.ini to ship or to find."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # ConfigParser interpolation: a literal "%" (URL escapes) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("the store's migrations have no head revision")
    return head


def upgrade(engine: Engine, app_role: str | None = None, read_role: str | None = None) -> None:
    """Bring the database behind ``engine`` (a writer engine) to the latest schema.

    ``app_role``: on PostgreSQL, the application's role, when ``engine`` logs in as the tables'
    owner; it is granted its privileges afterwards (``grant_app_role``). ``read_role``: the role
    of the read replica's URL, granted reading only (``grant_read_role``); grants made here on
    the primary reach a physical replica with everything else."""
    with _file_lock(sqlite_file(engine.url.render_as_string(hide_password=False))), engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to change its constraints (batch mode): dropping the old
            # table would fire its children's ON DELETE actions. The pragma only takes effect
            # outside a transaction; foreign_key_check below proves the rebuild kept them whole.
            _sqlite_foreign_keys(connection, False)
        try:
            with connection.begin():
                _upgrade(connection, engine)
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                    raise RuntimeError(f"Migrating {engine.url!r} broke a foreign key; the migration was rolled back")
                if app_role and connection.dialect.name == "postgresql":
                    grant_app_role(connection, app_role)
                if read_role and connection.dialect.name == "postgresql":
                    grant_read_role(connection, read_role)
        finally:
            if sqlite:
                _sqlite_foreign_keys(connection, True)


def _upgrade(connection: Connection, engine: Engine) -> None:
    if connection.dialect.name == "postgresql":
        # Per schema, so test schemas (and tenants' schemas) migrate independently.
        connection.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(hashtext('floworch.store:' || coalesce(current_schema(), '')))"
        )
    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    except CommandError as exc:
        raise RuntimeError(
            f"Cannot migrate the FlowOrchestrator store at {engine.url!r}: {exc}. "
            "If the database was created by a newer floworch, upgrade floworch."
        ) from exc


def grant_app_role(connection: Connection, role: str) -> None:
    """Give the application's role what it needs, and no more, on the store's schema: read and
    write every table, but only read and append the audit log, and only read the migration
    version (so it can check the schema is current). Idempotent; run after every upgrade so
    tables added by later migrations are covered."""
    if connection.exec_driver_sql("SELECT current_user").scalar() == role:
        return  # the one-URL setup: the application owns the tables
    quote = connection.dialect.identifier_preparer.quote
    schema = quote(str(connection.exec_driver_sql("SELECT current_schema()").scalar()))
    grantee = quote(role)
    for statement in (
        f"GRANT USAGE ON SCHEMA {schema} TO {grantee}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {grantee}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {grantee}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.audit_log FROM {grantee}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.{VERSION_TABLE} FROM {grantee}",
    ):
        connection.exec_driver_sql(statement)


def grant_read_role(connection: Connection, role: str) -> None:
    """Let the read replica's role read every table of the store's schema, and nothing more.
    Row-level security binds it like the application's role. Idempotent."""
    if connection.exec_driver_sql("SELECT current_user").scalar() == role:
        return
    quote = connection.dialect.identifier_preparer.quote
    schema = quote(str(connection.exec_driver_sql("SELECT current_schema()").scalar()))
    connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {schema} TO {quote(role)}")
    connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {quote(role)}")


def check_replica(engine: Engine, setting: str, catch_up_s: float = REPLICA_CATCH_UP_S) -> None:
    """Make sure the read replica behind ``engine`` answers and holds this store at the latest
    schema; else raise ValueError naming ``setting`` and what is wrong. A replica a moment
    behind a migration the primary just ran gets ``catch_up_s`` to replay it."""
    where = f"{setting} ({engine.url.render_as_string(hide_password=True)})"
    head = head_revision()
    deadline = time.monotonic() + catch_up_s
    while True:
        try:
            with engine.connect() as connection:
                found = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
        except OperationalError as exc:
            raise ValueError(f"{where}: cannot connect: {_first_line(exc)}") from None
        except ProgrammingError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate == "42P01" and _schema_not_usable(engine):
                sqlstate = "42501"  # the table is there, in a schema the role may not use
            if sqlstate == "42P01":  # undefined_table
                raise ValueError(
                    f"{where}: no FlowOrchestrator store there (no table {VERSION_TABLE} in its search path); "
                    "it must be a replica of FLOWORCH_DATABASE_URL, with the same database and schema"
                ) from None
            if sqlstate == "42501":  # insufficient_privilege
                raise ValueError(
                    f"{where}: its role {engine.url.username!r} may not read the store ({_first_line(exc)}); "
                    "set FLOWORCH_DATABASE_OWNER_URL so migrations grant it reading, or GRANT SELECT on the primary"
                ) from None
            raise
        if found == head:
            return
        if time.monotonic() >= deadline:
            raise ValueError(
                f"{where}: its store is at schema revision {found!r}, the primary's at {head!r}; "
                "is it a replica of FLOWORCH_DATABASE_URL, and is replication running?"
            )
        time.sleep(0.2)


def _schema_not_usable(engine: Engine) -> bool:
    """True when a schema of the search path holds the store's version table but the role lacks
    USAGE on it: PostgreSQL then answers as if the table did not exist."""
    query = (
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = %(table)s AND NOT has_schema_privilege(n.oid, 'USAGE') "
        "AND n.nspname = ANY(string_to_array(replace(replace(current_setting('search_path'), ' ', ''), '\"', ''), ','))"
    )
    with engine.connect() as connection:
        return bool(connection.exec_driver_sql(query, {"table": VERSION_TABLE}).scalar())


def _first_line(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    # On the DBAPI connection: through SQLAlchemy the statement would open a transaction first.
    driver = connection.connection.driver_connection
    assert driver is not None, "an open connection has its DBAPI connection"
    driver.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


@contextlib.contextmanager
def _file_lock(db_file: Path | None) -> Iterator[None]:
    if db_file is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: BEGIN IMMEDIATE alone still serialises the upgrade.
        yield
        return
    # A separate file: fcntl locks on the database file itself would clash with SQLite's own.
    lock_path = db_file.with_name(db_file.name + ".migrate-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
