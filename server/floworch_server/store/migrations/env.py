"""Alembic environment for the FlowOrchestrator store.

``Store`` runs migrations itself and passes its own connection in ``config.attributes``,
already inside a locked transaction; the URL path below is for ad-hoc use (for example
``alembic revision --autogenerate`` with a Config built by ``migrate.alembic_config``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from floworch_server.store.models import Base

VERSION_TABLE = "floworch_alembic_version"

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        # Our own version table, so a shared database or schema can also host other Alembic apps.
        version_table=VERSION_TABLE,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no sqlalchemy.url to migrate (alembic_config() sets it)")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


def _run(connection) -> None:
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
