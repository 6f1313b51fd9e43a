"""A fresh, empty PostgreSQL schema per test, on the local server.

Tests run against the real PostgreSQL at 127.0.0.1:5432 (trust auth, database ``test``). Each
caller gets its own uniquely named schema, selected through ``search_path`` in the URL, so tests
and parallel test runs never see each other's tables. When the server is not there the test is
skipped - unless FLOWORCH_REQUIRE_SERVICES=1 (CI), where a missing service is a failure.

Other test modules use the fixture by importing it::

    from support.postgres import pg_url  # noqa: F401  (pytest fixture)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import unquote

import pytest

from .services import missing

HOST = "127.0.0.1"
PORT = 5432
DATABASE = "test"
USERS = ("postgres", "root")  # the image's superuser, or the OS user when run as root
CONNECT_TIMEOUT_S = 3

_reachable_user: str | None = None
_unreachable_reason: str | None = None


def _connect(user: str | None):
    import psycopg

    return psycopg.connect(
        host=HOST, port=PORT, dbname=DATABASE, user=user, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True
    )


def _user() -> str:
    """The first user that can log in; the outcome is remembered so a down server costs one timeout."""
    global _reachable_user, _unreachable_reason
    if _reachable_user is None and _unreachable_reason is None:
        errors = []
        for user in USERS:
            try:
                _connect(user).close()
            except Exception as exc:  # noqa: BLE001 - any failure means "not usable", with the reason
                errors.append(f"user {user}: {' '.join(str(exc).split()) or type(exc).__name__}")
                continue
            _reachable_user = user
            break
        else:
            _unreachable_reason = "; ".join(errors)
    if _reachable_user is None:
        message = f"PostgreSQL not reachable at {HOST}:{PORT}: {_unreachable_reason}"
        missing("PostgreSQL", message)
    return _reachable_user


def postgres_url() -> str:
    """Create an empty schema and return a SQLAlchemy URL whose connections use only it."""
    user = _user()
    schema = f"floworch_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with _connect(user) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"postgresql+psycopg://{user}@{HOST}:{PORT}/{DATABASE}?options=-csearch_path%3D{schema}"


def drop_postgres_schema(url: str) -> None:
    """Drop the schema ``postgres_url`` created for ``url``, with everything in it."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    options = unquote(str(parsed.query.get("options", "")))
    schema = options.partition("search_path=")[2].split()[0]
    if not schema.startswith("floworch_test_"):
        raise ValueError(f"refusing to drop {schema!r}: not a schema created by postgres_url()")
    with _connect(parsed.username) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL schema, dropped after the test."""
    url = postgres_url()
    try:
        yield url
    finally:
        drop_postgres_schema(url)


def create_app_role(owner_url: str) -> str:
    """A new LOGIN role that is neither superuser nor BYPASSRLS, as an application logs in with,
    and the URL of ``owner_url``'s schema connecting as it. It owns nothing: what it may do is
    what the store's migration grants it (see ``Store(owner_url=...)``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(owner_url)
    role = f"floworch_app_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with _connect(parsed.username) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE')
    return parsed.set(username=role).render_as_string(hide_password=False)


def drop_app_role(app_url: str) -> None:
    from sqlalchemy.engine import make_url

    role = make_url(app_url).username
    if not role or not role.startswith("floworch_app_"):
        raise ValueError(f"refusing to drop role {role!r}: not a role created by create_app_role()")
    with _connect(_user()) as conn:
        # Its grants first (a role with privileges cannot be dropped); it owns nothing else.
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture
def pg_app_url(pg_url) -> Iterator[str]:
    """URL of ``pg_url``'s schema as a fresh unprivileged application role, dropped after the test.
    ``pg_url`` (a superuser) stays the owner: open the store with ``owner_url=pg_url``."""
    url = create_app_role(pg_url)
    try:
        yield url
    finally:
        drop_app_role(url)
