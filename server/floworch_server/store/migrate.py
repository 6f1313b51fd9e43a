"""Schema migrations, run by ``Store`` on open: ``upgrade head`` under a lock.

Several processes (Jupyter server, workers, kernels) may open a fresh store at the same moment.
The upgrade runs inside one write transaction that first takes a lock - ``BEGIN IMMEDIATE`` on
SQLite (plus a lock file, which also covers switching a brand-new file to WAL), an advisory lock
on Postgres - so the second process waits, then finds the schema at head and does nothing.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from .engine import sqlite_file

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config built in code: no alembic.ini to ship or to find."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        # ConfigParser interpolation: a literal "%" (URL escapes) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(engine: Engine) -> None:
    """Bring the database behind ``engine`` (a writer engine) to the latest schema."""
    with _file_lock(sqlite_file(engine.url.render_as_string(hide_password=False))):
        with engine.begin() as connection:
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
