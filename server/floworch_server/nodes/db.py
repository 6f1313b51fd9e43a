"""`action.db_write`: inserts, updates or upserts rows of a SQL table (PostgreSQL, SQLite).

The database is named by a stored integration of provider ``database`` whose secret is
``{"url": "<SQLAlchemy URL>"}``: the URL, and the password inside it, never appear in the
.flow file, the plan, Temporal's history or the logs.

Everything goes through SQLAlchemy Core: values are bound parameters, and the table and its
columns are looked up in the live schema before anything is written, so a name in the config
can only ever be an existing table or column, never a piece of SQL.

Exactly once: with ``idempotency_column`` (a column with a UNIQUE constraint of its own) every
written row carries the activity's idempotency key, which is the same on every attempt of the
node in one run. The key check and the write happen in one transaction, so an attempt that
finds its key already there knows an earlier attempt committed - even one whose worker died
before Temporal heard back - and answers with those rows instead of writing again.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import decimal
import difflib
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from ..problems import Problem
from .spec import NodeError, NodeSpec, Port, RetryDefaults, register

PROVIDER = "database"
OPERATIONS = ("insert", "update", "upsert")
# Engines (and their connection pools) kept per URL in a worker process; the least recently
# used is disposed of past this many, so rotated credentials do not pile up pools forever.
MAX_ENGINES = 16
CONNECT_TIMEOUT_S = 10  # a database that does not answer is a retryable failure, not a hang
SQLITE_BUSY_TIMEOUT_S = 15  # SQLite writers queue for the file lock this long
MAX_MESSAGE = 600  # characters of a database error message kept in the node's error

URL_HINT = (
    'store it with fo.integrations.add("orders-db", "database", url="postgresql+psycopg://user:password@host:5432/db")'
)


# ------------------------------------------------------------------ the request
@dataclass(frozen=True)
class Write:
    """A config, checked: what to write where. ``rows`` is ``[values]`` when config gave ``values``."""

    connection: str
    table: str
    operation: str
    rows: list[dict[str, Any]]
    from_rows: bool  # the config used `rows`: each row gets its own idempotency key
    key_columns: tuple[str, ...]
    idempotency_column: str | None

    def field(self, index: int) -> str:
        return f"config.rows[{index}]" if self.from_rows else "config.values"

    def keys(self, base: str) -> list[str]:
        # One key per row: a UNIQUE idempotency column cannot hold the same key twice.
        return [f"{base}#{i}" for i in range(len(self.rows))] if self.from_rows else [base]


def _request(config: dict) -> Write:
    """Checks the schema cannot express (or that references could only break once resolved)."""
    operation = config.get("operation", "insert")
    from_rows = "rows" in config
    rows = config["rows"] if from_rows else [config["values"]]
    key_columns = tuple(config.get("key_columns") or ())
    idem = config.get("idempotency_column")
    write = Write(config["connection"], config["table"], operation, rows, from_rows, key_columns, idem)
    if operation == "insert" and key_columns:
        raise _config_error(
            "config.key_columns: an insert does not use key_columns; remove them, or set operation to update or upsert"
        )
    if operation != "insert" and not key_columns:
        raise _config_error(
            f'config.key_columns: {operation} needs key_columns, the columns that identify the row (e.g. ["id"])'
        )
    if idem and idem in key_columns:
        raise _config_error(
            f"config.idempotency_column: '{idem}' is also a key column; the idempotency column must be a column of its own"
        )
    for i, row in enumerate(rows):
        if idem and idem in row:
            raise _config_error(
                f"{write.field(i)} sets '{idem}', the idempotency_column: the node fills it with the run's "
                "idempotency key; remove it from the values"
            )
        missing = [k for k in key_columns if k not in row]
        if missing:
            raise _config_error(
                f"{write.field(i)} has no value for key column(s) {', '.join(missing)} (from config.key_columns)"
            )
        if operation == "update" and not (set(row) - set(key_columns)) and not idem:
            raise _config_error(
                f"{write.field(i)}: an update needs a column to set besides the key_columns {', '.join(key_columns)}"
            )
    return write


def _config_error(message: str, kind: str = "DbInvalidConfig") -> NodeError:
    return NodeError(message, retryable=False, kind=kind)


# ------------------------------------------------------------------ connection
def _connection_url(name: str) -> str:
    """The SQLAlchemy URL stored in integration ``name``; every failure here is one of setup."""
    from ..errors import FloworchError, NotFound
    from ..integrations import lookup
    from ..secrets import SecretError

    try:
        _record, secret = lookup(name, PROVIDER)
    except NotFound:
        raise _config_error(
            f"config.connection: no integration named '{name}' is stored; add it with "
            f'fo.integrations.add("{name}", "database", url="postgresql+psycopg://user:password@host:5432/db"), '
            "or name an existing database integration",
            kind="DbConnectionNotFound",
        ) from None
    except (FloworchError, SecretError) as exc:
        raise _config_error(f"config.connection: {exc}", kind="DbConnectionNotFound") from None
    url = secret.get("url") if isinstance(secret, dict) else None
    if not isinstance(url, str) or not url:
        raise _config_error(
            f"config.connection: the secret of integration '{name}' has no 'url'; {URL_HINT}",
            kind="DbConnectionNotFound",
        )
    return url


_ENGINES: OrderedDict[str, Engine] = OrderedDict()
_ENGINES_LOCK = threading.Lock()


def _engine(url: str, connection: str) -> Engine:
    """One engine (with its pool) per URL and worker process, created on first use."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is not None:
            _ENGINES.move_to_end(url)
            return engine
        engine = _create_engine(url, connection)
        _ENGINES[url] = engine
        while len(_ENGINES) > MAX_ENGINES:
            _, old = _ENGINES.popitem(last=False)
            old.dispose()  # connections still checked out are closed when they come back
        return engine


def _create_engine(url: str, connection: str) -> Engine:
    try:
        parsed = sa.engine.make_url(url)
    except sa_exc.ArgumentError:
        # The URL itself is never repeated: it may hold a password.
        raise _config_error(
            f"config.connection: the url of integration '{connection}' is not a SQLAlchemy URL "
            "(dialect+driver://user:password@host:port/database)",
            kind="DbConnectionNotFound",
        ) from None
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    elif backend == "sqlite":
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
    try:
        # pre-ping: a pooled connection the server closed (restart, idle timeout) is replaced
        # before use instead of failing the write.
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except (sa_exc.NoSuchModuleError, ImportError) as exc:
        raise _config_error(
            f"config.connection: integration '{connection}' uses {parsed.drivername}, which this worker cannot load ({type(exc).__name__}: {exc}); "
            "install its driver in the worker's environment (psycopg for postgresql+psycopg)",
            kind="DbDriverMissing",
        ) from None


# ------------------------------------------------------------------ the schema
def _reflect(conn: Connection, write: Write) -> sa.Table:
    """The live table named by config.table (``name`` or ``schema.name``)."""
    inspector = sa.inspect(conn)
    schema, name = None, write.table
    if not inspector.has_table(name):
        if "." in name:
            schema, name = name.split(".", 1)
        if schema is None or not _has_table(inspector, name, schema):
            known = sorted(inspector.get_table_names() + inspector.get_view_names())
            raise NodeError(
                f"config.table: there is no table '{write.table}' in the database of connection '{write.connection}'"
                f"{_did_you_mean(write.table, known)}; known tables: {', '.join(known) or 'none'}",
                retryable=False,
                kind="DbUnknownTable",
            )
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)


def _has_table(inspector: Any, name: str, schema: str) -> bool:
    try:
        return inspector.has_table(name, schema=schema)
    except sa_exc.DBAPIError:
        return False  # e.g. the "schema" part is not a schema


def _check_columns(table: sa.Table, write: Write) -> None:
    known = list(table.columns.keys())

    def unknown(field: str, names: list[str]) -> None:
        missing = [n for n in names if n not in table.columns]
        if missing:
            which = ", ".join(f"'{n}'{_did_you_mean(n, known)}" for n in missing)
            raise NodeError(
                f"{field}: table '{write.table}' has no column {which}; its columns: {', '.join(known)}",
                retryable=False,
                kind="DbUnknownColumn",
            )

    unknown("config.key_columns", list(write.key_columns))
    if write.idempotency_column:
        unknown("config.idempotency_column", [write.idempotency_column])
    for i, row in enumerate(write.rows):
        unknown(write.field(i), list(row))

    unique = _unique_keys(table)
    unique_sets = {cols for _, cols in unique}
    if write.operation == "upsert" and frozenset(write.key_columns) not in unique_sets:
        have = "; ".join(f"{label} ({', '.join(sorted(cols))})" for label, cols in unique) or "none"
        raise NodeError(
            f"config.key_columns: upsert into '{write.table}' on ({', '.join(write.key_columns)}) needs a PRIMARY KEY or "
            f"UNIQUE constraint on exactly those columns, which the database resolves the conflict through; the table's "
            f"unique keys: {have}. Set key_columns to one of them, or add one: "
            f"CREATE UNIQUE INDEX {table.name}_{'_'.join(write.key_columns)}_key ON {table.name} ({', '.join(write.key_columns)})",
            retryable=False,
            kind="DbUpsertNeedsUniqueKey",
        )
    idem = write.idempotency_column
    if idem and frozenset([idem]) not in unique_sets:
        raise NodeError(
            f"config.idempotency_column: column '{idem}' of '{write.table}' needs a UNIQUE constraint of its own, or "
            f"two attempts could both write: CREATE UNIQUE INDEX {table.name}_{idem}_key ON {table.name} ({idem})",
            retryable=False,
            kind="DbIdempotencyColumnNotUnique",
        )


def _unique_keys(table: sa.Table) -> list[tuple[str, frozenset[str]]]:
    """(label, column set) of the primary key, every unique constraint and every plain unique index."""
    keys: list[tuple[str, frozenset[str]]] = []
    if len(table.primary_key.columns):
        keys.append(("PRIMARY KEY", frozenset(c.name for c in table.primary_key.columns)))
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint) and len(constraint.columns):
            keys.append(("UNIQUE", frozenset(c.name for c in constraint.columns)))
    for index in table.indexes:
        # A partial or expression index cannot be the ON CONFLICT target of plain columns.
        partial = any(v is not None for k, v in index.dialect_kwargs.items() if k.endswith("_where"))
        if index.unique and len(index.columns) == len(index.expressions) and not partial:
            keys.append((f"UNIQUE INDEX {index.name}", frozenset(c.name for c in index.columns)))
    return keys


def _constraint_columns(table: sa.Table, name: str) -> frozenset[str] | None:
    if table.primary_key.name == name:
        return frozenset(c.name for c in table.primary_key.columns)
    items: list[Any] = [*table.constraints, *table.indexes]  # each with its .columns
    for item in items:
        if getattr(item, "name", None) == name:
            return frozenset(c.name for c in item.columns)
    return None


def _violated_columns(exc: sa_exc.IntegrityError, table: sa.Table | None) -> frozenset[str] | None:
    """The columns of the unique key a write collided with, when the driver says."""
    orig = exc.orig
    name = getattr(getattr(orig, "diag", None), "constraint_name", None)  # psycopg, psycopg2
    if name and table is not None:
        found = _constraint_columns(table, name)
        if found is not None:
            return found
    message = str(orig)
    sqlite = re.search(r"UNIQUE constraint failed: (.+)", message)
    if sqlite:
        return frozenset(part.strip().rsplit(".", 1)[-1] for part in sqlite.group(1).split(","))
    postgres = re.search(r"Key \((.+?)\)=", message)
    if postgres:
        return frozenset(part.strip().strip('"') for part in postgres.group(1).split(","))
    return None


# ------------------------------------------------------------------ values
def _bind(table: sa.Table, write: Write, index: int, row: dict[str, Any]) -> dict[str, Any]:
    """JSON values as the column types want them: ISO strings become dates and times."""
    out = {}
    for name, value in row.items():
        column = table.columns[name]
        if isinstance(value, str):
            wanted: Any
            try:
                wanted = column.type.python_type
            except NotImplementedError:
                wanted = None
            parse = {
                dt.datetime: dt.datetime.fromisoformat,
                dt.date: dt.date.fromisoformat,
                dt.time: dt.time.fromisoformat,
            }.get(wanted)
            if parse is not None:
                try:
                    value = parse(value)
                except ValueError:
                    raise NodeError(
                        f"{write.field(index)}.{name}: {value!r} is not an ISO {wanted.__name__} for column '{name}' ({column.type})",
                        retryable=False,
                        kind="DbInvalidValue",
                    ) from None
        out[name] = value
    return out


def _jsonable(value: Any) -> Any:
    """A database value as JSON, for the node's output (which goes into Temporal's history)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return str(value)


def _row_dict(row: Any, columns: list[sa.Column]) -> dict[str, Any]:
    mapping = row._mapping
    return {c.name: _jsonable(mapping[c.name]) for c in columns}


# ------------------------------------------------------------------ the write
def _returned_columns(table: sa.Table) -> list[sa.Column]:
    # The primary key identifies a written row; a table without one is described by all its columns.
    return list(table.primary_key.columns) or list(table.columns)


def _already_written(conn: Connection, table: sa.Table, write: Write, keys: list[str]) -> list[dict] | None:
    """The rows an earlier attempt wrote with these keys, in config order; None when there are none."""
    assert write.idempotency_column is not None, "keys are made for a write with an idempotency column"
    idem = table.columns[write.idempotency_column]
    returned = _returned_columns(table)
    found = list(conn.execute(sa.select(*returned, idem.label("__floworch_key")).where(idem.in_(keys))).all())
    if not found:
        return None
    order = {key: i for i, key in enumerate(keys)}
    found.sort(key=lambda r: order.get(r._mapping["__floworch_key"], len(order)))
    return [_row_dict(r, returned) for r in found]


def _apply(conn: Connection, table: sa.Table, write: Write, keys: list[str] | None) -> tuple[int, list[dict]]:
    """Runs the statements (one per row, in config order); (rowcount, returned rows)."""
    dialect = conn.dialect
    returned = _returned_columns(table)
    rowcount, rows = 0, []
    for i, raw in enumerate(write.rows):
        values = _bind(table, write, i, raw)
        if keys is not None:
            assert write.idempotency_column is not None, "keys are made for a write with an idempotency column"
            values[write.idempotency_column] = keys[i]
        stmt: Any  # an insert, an update or a dialect's upsert
        if write.operation == "update":
            where = sa.and_(*(table.columns[k] == values[k] for k in write.key_columns))
            changes = {k: v for k, v in values.items() if k not in write.key_columns}
            stmt = sa.update(table).where(where).values(changes)
            can_return = dialect.update_returning
        else:
            stmt = (
                _upsert(table, write, values, dialect.name)
                if write.operation == "upsert"
                else sa.insert(table).values(values)
            )
            can_return = dialect.insert_returning
        if can_return:
            result = conn.execute(stmt.returning(*returned))
            got = [_row_dict(r, returned) for r in result]
            # With RETURNING, the returned rows are the reliable count (SQLite's rowcount is not).
            rowcount += len(got)
            rows += got
        else:
            result = conn.execute(stmt)
            rowcount += max(result.rowcount, 0)
            if write.operation == "insert" and result.inserted_primary_key is not None:
                rows.append(
                    {
                        c.name: _jsonable(v)
                        for c, v in zip(table.primary_key.columns, result.inserted_primary_key, strict=True)
                    }
                )
    return rowcount, rows


def _upsert(table: sa.Table, write: Write, values: dict, dialect: str) -> Any:
    insert: Any  # each dialect's insert() has on_conflict_do_update
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise _config_error(
            f"config.operation: upsert is supported on PostgreSQL and SQLite, not {dialect}; use insert or update"
        )
    stmt = insert(table).values(values)
    # Setting the key columns to themselves when nothing else changes keeps DO UPDATE (which
    # returns the row) rather than DO NOTHING (which returns nothing).
    changed = [c for c in values if c not in write.key_columns] or list(write.key_columns)
    return stmt.on_conflict_do_update(
        index_elements=[table.columns[k] for k in write.key_columns],
        set_={c: stmt.excluded[c] for c in changed},
    )


def _write(url: str, write: Write, idempotency_key: str) -> dict[str, Any]:
    """The blocking part, run on a thread: reflect, check, write, commit."""
    keys = write.keys(idempotency_key) if write.idempotency_column else None
    table: sa.Table | None = None
    try:
        engine = _engine(url, write.connection)
        with engine.begin() as conn:
            table = _reflect(conn, write)
            _check_columns(table, write)
            if keys is not None:
                earlier = _already_written(conn, table, write, keys)
                if earlier is not None:
                    return _output(write, earlier, duplicate=True)
            rowcount, rows = _apply(conn, table, write, keys)
        return _output(write, rows, duplicate=False, rowcount=rowcount)
    except sa_exc.IntegrityError as exc:
        if (
            keys is not None
            and table is not None
            and _violated_columns(exc, table) == frozenset([write.idempotency_column])
        ):
            # Another attempt of this node committed between our check and our write (an attempt
            # Temporal had given up on can still be running): its rows are the answer.
            try:
                with engine.connect() as conn:
                    earlier = _already_written(conn, table, write, keys)
            except sa_exc.SQLAlchemyError as again:
                raise _database_error(again, write, url) from None
            if earlier is not None:
                return _output(write, earlier, duplicate=True)
            raise NodeError(
                f"{write.operation} on '{write.table}' would give one idempotency key to several rows (the unique "
                f"column '{write.idempotency_column}' refused it): an update's key_columns must match one row per entry",
                retryable=False,
                kind="DbIntegrityError",
            ) from None
        raise _database_error(exc, write, url) from None
    except sa_exc.SQLAlchemyError as exc:
        raise _database_error(exc, write, url) from None


def _output(write: Write, rows: list[dict], *, duplicate: bool, rowcount: int | None = None) -> dict[str, Any]:
    return {
        "operation": write.operation,
        "table": write.table,
        "rowcount": len(rows) if rowcount is None else rowcount,
        "rows": rows,
        "duplicate": duplicate,
    }


# ------------------------------------------------------------------ errors
# Failures another attempt may get past: the server is down, restarting, overloaded, or the
# transaction lost a deadlock or serialization conflict (drivers report those as operational).
_RETRYABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.InternalError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)
# Failures the same data will hit again: fix the flow or the data.
_PERMANENT = {
    sa_exc.IntegrityError: ("broke a constraint", "DbIntegrityError"),
    sa_exc.DataError: ("was refused by the database", "DbDataError"),
    sa_exc.ProgrammingError: ("was refused by the database", "DbProgrammingError"),
    sa_exc.NotSupportedError: ("is not supported by the database", "DbNotSupported"),
}


def _database_error(exc: sa_exc.SQLAlchemyError, write: Write, url: str) -> NodeError:
    what = f"{write.operation} on table '{write.table}' (connection '{write.connection}')"
    message = _message(exc, url)
    for cls, (verb, kind) in _PERMANENT.items():
        if isinstance(exc, cls):
            return NodeError(f"{what} {verb}: {message}", retryable=False, kind=kind)
    if isinstance(exc, _RETRYABLE):
        return NodeError(f"{what} failed (worth another attempt): {message}", kind="DbUnavailable")
    if isinstance(exc, sa_exc.StatementError):
        # Raised before the database saw the statement, e.g. a value the column type cannot take.
        return NodeError(f"{what}: a value does not fit its column: {message}", retryable=False, kind="DbInvalidValue")
    return NodeError(f"{what} failed: {message}", kind="DbError")


def _message(exc: sa_exc.SQLAlchemyError, url: str) -> str:
    """The database's own words, without the statement, its parameters or the URL's password."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc).split("\n[SQL:")[0]
    text = " ".join(text.split()) or type(orig or exc).__name__
    try:
        password = sa.engine.make_url(url).password
    except sa_exc.ArgumentError:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1) or [k for k in known if k.lower() == name.lower()][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


# ------------------------------------------------------------------ the node
async def _execute(ctx: Any, config: dict, inputs: dict) -> Any:
    write = _request(config)
    # Both blocking: the integration is read from the store, the write waits on the database.
    # On a thread the event loop stays free to heartbeat (a lost worker is noticed quickly).
    url = await asyncio.to_thread(_connection_url, write.connection)
    result = await asyncio.to_thread(_write, url, write, ctx.idempotency_key)
    if result["duplicate"]:
        ctx.log(
            "info",
            f"{write.operation} on {write.table}: already written by an earlier attempt ({result['rowcount']} row(s)); not written again",
        )
    else:
        ctx.log("info", f"{write.operation} on {write.table}: {result['rowcount']} row(s)")
    return result


def _check(node: Any, doc: Any) -> list[Problem]:
    config = node.config
    problems = []

    def problem(code: str, message: str, field: str, hint: str) -> None:
        problems.append(Problem(code, message, node=node.id, field=field, hint=hint))

    connection = config.get("connection")
    if isinstance(connection, str) and "://" in connection:
        problem(
            "db-connection-is-url",
            "connection must name a stored integration, not hold a URL (its password would be saved in the .flow file)",
            "config.connection",
            f'{URL_HINT}, then set connection to "orders-db"',
        )
    operation = config.get("operation", "insert")
    key_columns = config.get("key_columns")
    if operation in ("update", "upsert") and not key_columns:
        problem(
            "db-key-columns-missing",
            f"{operation} needs key_columns: the columns that identify the row",
            "config.key_columns",
            'e.g. "key_columns": ["id"]; for upsert they must be the primary key or a unique constraint',
        )
    if operation == "insert" and key_columns:
        problem(
            "db-key-columns-unused",
            "an insert does not use key_columns",
            "config.key_columns",
            "remove key_columns, or set operation to update or upsert",
        )
    idem = config.get("idempotency_column")
    if isinstance(idem, str) and isinstance(key_columns, list) and idem in key_columns:
        problem(
            "db-idempotency-column-is-key",
            f"'{idem}' is both the idempotency_column and a key column",
            "config.idempotency_column",
            "use a column of its own for the idempotency key",
        )
    rows = config.get("rows")
    given = [("config.values", config.get("values"))] + (
        [(f"config.rows[{i}]", r) for i, r in enumerate(rows)] if isinstance(rows, list) else []
    )
    for field, row in given:
        if isinstance(idem, str) and isinstance(row, dict) and idem in row:
            problem(
                "db-idempotency-column-set",
                f"sets '{idem}', the idempotency_column, which the node fills with the run's idempotency key",
                f"{field}.{idem}",
                f"remove '{idem}' from the values",
            )
    return problems


DB_WRITE = register(
    NodeSpec(
        type="action.db_write",
        category="Actions",
        title="Database write",
        description="Inserts, updates or upserts rows of a PostgreSQL or SQLite table, exactly once per run with an idempotency column.",
        kind="activity",
        icon="database",
        execute=_execute,
        check=_check,
        timeout_seconds=60,
        # A worker that dies mid-write is noticed in seconds, not at the timeout.
        heartbeat_seconds=10,
        retry=RetryDefaults(max_attempts=5, initial_interval_seconds=1.0, backoff=2.0, max_interval_seconds=30.0),
        outputs=(Port("out", "result"),),
        config_schema={
            "type": "object",
            "required": ["connection", "table"],
            "additionalProperties": False,
            "oneOf": [{"required": ["values"]}, {"required": ["rows"]}],
            "properties": {
                "connection": {
                    "type": "string",
                    "minLength": 1,
                    "description": 'Name of a stored integration of provider `database` whose secret is {"url": "<SQLAlchemy URL>"}.',
                },
                "table": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The table (or schema.table); checked against the live schema.",
                },
                "operation": {
                    "enum": list(OPERATIONS),
                    "default": "insert",
                    "description": "insert, update (by key_columns) or upsert (insert, or update on a key conflict).",
                },
                "values": {
                    "type": "object",
                    "minProperties": 1,
                    "description": "One row: column -> value, usually {{ }} references.",
                },
                "rows": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "minProperties": 1},
                    "description": "Several rows, each column -> value; written in order, in one transaction.",
                },
                "key_columns": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"type": "string", "minLength": 1},
                    "description": "update/upsert: the columns that identify a row (for upsert, a primary key or unique constraint).",
                },
                "idempotency_column": {
                    "type": "string",
                    "minLength": 1,
                    "description": "A column with a UNIQUE constraint that receives the run's idempotency key: a retried attempt writes once.",
                },
            },
        },
        docs=(
            "Give `values` (one row) or `rows` (several), column -> value. Table and column names are checked against the "
            "live schema, values are bound parameters. The output is `{operation, table, rowcount, rows, duplicate}`, "
            "where `rows` holds each written row's primary key (the whole row when the table has none).\n\n"
            "Exactly once: with `idempotency_column`, each row gets the key `<run id>:<node id>` (with `rows`: "
            "`<run id>:<node id>#<index>`), written in the same transaction as the row. A retry whose earlier attempt "
            "committed (say its worker died before Temporal heard back) finds its key, writes nothing, and returns those "
            "rows with `duplicate: true`. The column needs a UNIQUE constraint of its own. Without it, a retry after a "
            "lost acknowledgement may write twice.\n\n"
            "Lost connections, timeouts, deadlocks and serialization failures are retried; constraint violations, bad "
            "values and unknown tables or columns fail at once with the database's message (never the URL). "
            "Upsert needs `key_columns` that are the primary key or a unique constraint. SQLite URLs should use an "
            "absolute path (`sqlite:////data/app.db`): a relative one is resolved from the worker's directory."
        ),
    )
)
