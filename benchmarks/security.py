"""The security benchmark: what authentication and row-level security add to a request.

    python -m benchmarks.security [--quick]

Two routes are measured, as a REST client outside JupyterLab calls them, through a real
`jupyter server` with FlowOrchestrator's extension (services from a `Supervisor`: an embedded
Temporal dev server and one worker, so started runs finish):

- ``GET /floworch/api/runs/{run_id}`` of a finished run (describe + history from Temporal, the
  run upserted and read back from the store);
- ``POST /floworch/api/workflows/{id}/runs`` of a published two-node flow (version and run
  written to the store, the run started on Temporal, an audit entry).

Every request carries a FlowOrchestrator access token (``Authorization: Bearer``, issued by
``POST /auth/tokens`` for an editor member) and keeps one keep-alive connection per
configuration. Configurations take turns request by request, in rounds whose order rotates and
reverses, so a drift in this shared machine's load falls on all of them alike (all the reads
first, then all the starts, whose runs keep the worker busy). The figures are medians and p95s;
a ratio is ours / baseline on the medians; "added" is the median of the round-by-round
differences with its 95 % confidence interval, which says whether the machine's noise is
larger than what is measured.

(a) authentication, on the default store (SQLite, as `make run` has it): ours against the same
    server process with the checks off. "Checks off" exists only inside this benchmark: the
    server is started with a Python config file that wraps the extension's identity functions
    (``floworch_ext.identity``) so that a request carrying the ``X-Floworch-Bench-Checks: off``
    header is a fixed editor without its token being verified, its membership looked up or its
    permission checked. Requests without the header run the product's code unchanged (behind
    one header lookup). Everything else - Jupyter's own request handling, the rate-limit count
    (in memory, limits set out of reach), the service call - is the same for both.

(b) row-level security on the real PostgreSQL at 127.0.0.1:5432 (skipped, with the reason
    printed, when it is not reachable; a failure when FLOWORCH_REQUIRE_SERVICES=1). Two fresh
    schemas, both migrated by the owner for an unprivileged application role, seeded alike
    (5 000 runs in the tenant measured and 5 000 in another tenant, its workflow, version and
    member): "rls" as the product has it (FORCE ROW LEVEL SECURITY, policies, the tenant set per
    transaction by ``set_config``), and "no rls" (RLS disabled on every table and no tenant
    setting: what the store would cost without row-level security; it still filters by tenant
    in SQL, as it does on SQLite). A third view, "policies off", keeps the per-transaction
    ``set_config`` on the RLS-disabled schema, to tell the policies' cost from the setting's.
    Timed: the store operations behind the two routes (get_member, get_workflow, get_version,
    get_run, upsert_run for an insert and for an update, audit, list_runs), one of each per
    configuration per round, and the two routes' store work as a whole.

(c) both routes through two Jupyter servers, one on each schema (the application role as
    ``FLOWORCH_DATABASE_URL``, the owner as ``FLOWORCH_DATABASE_OWNER_URL``), each also with the
    checks switch: RLS against no RLS with authentication on, authentication on PostgreSQL, and
    the two together against neither.

Every benchmark server also has the extension's background copy of runs from Temporal turned off
after its first pass (see ``install_switch``): it is unrelated to security, and at the rate the
benchmark starts runs it stalls the server's event loop for random requests of either side.

The last stdout line is one JSON object: ``auth_overhead_ratio`` (from (a), the worse of the two
routes), ``rls_overhead_ratio`` (from (c), the worse of the two routes; null, with the reason in
``notes``, when PostgreSQL was skipped), ``rls_store_overhead_ratio`` (from (b)), and the
medians, p95s, intervals and sample counts behind every figure. Target, reported and never
asserted: at most 5 % added (ratio <= 1.05).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.observe import postgres_base

TARGET_RATIO = 1.05
SWITCH_HEADER = "X-Floworch-Bench-Checks"
BENCH_USER = "bench"
OTHER_TENANT = "bench-other"
SEED_RUNS = 5000  # per tenant, in each PostgreSQL schema
ROOT = Path(__file__).resolve().parent.parent
API = "/floworch/api"
# Far above what the benchmark sends: the count is still taken on every request, for both sides.
UNLIMITED = "100000000/minute"
SYNC_OFF_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class Counts:
    route_rounds: int  # (a): each round sends each route once per configuration
    pg_route_rounds: int  # (c)
    store_rounds: int  # (b)
    warmup: int  # rounds of each phase that are not counted


FULL = Counts(route_rounds=400, pg_route_rounds=300, store_rounds=600, warmup=20)
QUICK = Counts(route_rounds=30, pg_route_rounds=20, store_rounds=60, warmup=3)


# ---------------------------------------------------------------------- the switch (in the server)
def install_switch(tenant_setting: bool = True) -> None:
    """Called by the benchmark server's config file, before the extension loads.

    Requests with ``X-Floworch-Bench-Checks: off`` skip the token check, the membership lookup
    and the permission check: they are a fixed editor of the default tenant. Others run the
    extension's functions as they are. ``tenant_setting=False`` also drops the store's
    per-transaction tenant setting (for the schema without row-level security). For every
    server, the background copy of runs from Temporal stops after its first pass (below)."""
    from jupyter_server.auth.identity import User

    from floworch_ext import identity
    from floworch_server.auth import Principal

    fixed = Principal(BENCH_USER, "default", "editor", "token")
    install, refuse_bad_token, authorize = identity.install, identity.refuse_bad_token, identity.authorize

    def off(handler: Any) -> bool:
        return handler.request.headers.get(SWITCH_HEADER) == "off"

    def install_with_switch(identity_provider: Any, runtime: Any) -> None:
        install(identity_provider, runtime)
        checked = identity_provider.get_user

        async def get_user(handler: Any) -> Any:
            if off(handler):
                handler._token_authenticated = True  # as a verified token would be (no XSRF check)
                return User(username=BENCH_USER, name=BENCH_USER)
            return await checked(handler)

        identity_provider.get_user = get_user

    identity.install = install_with_switch
    identity.refuse_bad_token = lambda handler: None if off(handler) else refuse_bad_token(handler)
    identity.authorize = lambda handler, runtime, permission: (  # type: ignore[assignment]  # one stand-in for both overloads
        (fixed if permission is not None else None) if off(handler) else authorize(handler, runtime, permission)
    )
    if not tenant_setting:
        from floworch_server.store import repo

        repo.scoped = lambda engine, tenant: engine
    # The server copies every run that ended in the last 30 s from Temporal into the store every
    # 2 s, on its event loop: at the rate this benchmark starts runs that is a stall of a good
    # fraction of a second every 2 s, which lands on random requests of either side and drowns
    # what is measured. It has nothing to do with the checks: after its first pass, it is off.
    import floworch_ext

    floworch_ext.SYNC_INTERVAL = SYNC_OFF_SECONDS


def _server_config(directory: Path, tenant_setting: bool) -> Path:
    directory.mkdir(parents=True)
    # jupyter_config.py: the base config Jupyter reads from every config path even when
    # --config names the server's own file (as benchmarks.collab's server does).
    (directory / "jupyter_config.py").write_text(
        "# The security benchmark's switch; see benchmarks/security.py.\n"
        "from benchmarks.security import install_switch\n"
        f"install_switch(tenant_setting={tenant_setting!r})\n"
    )
    return directory


# ---------------------------------------------------------------------- the servers
@contextmanager
def services(workdir: Path) -> Iterator[Any]:
    """Temporal and one worker for ``workdir/data``; yields their settings."""
    from floworch_server.settings import Settings
    from floworch_server.supervisor import Supervisor

    settings = Settings(data_dir=str(workdir / "data"), workers=1)
    with Supervisor(settings):
        yield settings


@contextmanager
def bench_server(
    workdir: Path, settings: Any, *, database: tuple[str, str] | None = None, tenant_setting: bool = True
) -> Iterator[dict]:
    """A `jupyter server` with the extension and the switch, on ``settings``' services;
    ``database``: (application URL, owner URL) of its store, else the SQLite file."""
    from .collab import jupyter_server

    (workdir / "jupyter").mkdir(parents=True)
    env = {
        "FLOWORCH_DATA_DIR": settings.data_dir,
        "FLOWORCH_RATE_LIMIT_USER": UNLIMITED,
        "FLOWORCH_RATE_LIMIT_TENANT": UNLIMITED,
        "FLOWORCH_JUPYTER_ROLE": "admin",  # the Jupyter token's holder sets the tenant up
        "FLOWORCH_DATABASE_URL": database[0] if database else "",
        "FLOWORCH_DATABASE_OWNER_URL": database[1] if database else "",
        "JUPYTER_CONFIG_PATH": str(_server_config(workdir / "config", tenant_setting)),
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    with jupyter_server(workdir / "jupyter", floworch=True, env=env) as info:
        yield info


@contextmanager
def started_together(*servers: Any) -> Iterator[list[dict]]:
    """Enter several server context managers at once (each waits for its server to answer)."""
    with ExitStack() as stack, ThreadPoolExecutor(len(servers)) as pool:
        futures = [pool.submit(server.__enter__) for server in servers]
        errors = []
        for server, future in zip(servers, futures, strict=True):
            try:
                future.result()
                stack.push(server.__exit__)
            except BaseException as exc:  # noqa: BLE001 - the others are stopped, then it is raised
                errors.append(exc)
        if errors:
            raise errors[0]
        yield [future.result() for future in futures]


@contextmanager
def clean_environment() -> Iterator[None]:
    """Settings this shell may have that would point the servers elsewhere than measured."""
    dropped = ("FLOWORCH_TEMPORAL_ADDRESS", "FLOWORCH_REDIS_URL", "JUPYTER_CONFIG_DIR")
    saved = {name: os.environ.pop(name) for name in dropped if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class Client:
    """One keep-alive HTTP connection, as a REST client holds one."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ValueError(f"no host in {url!r}")
        self.host, self.port = parts.hostname, parts.port
        self.headers = headers
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def call(
        self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200,), headers: dict | None = None
    ) -> tuple[float, Any]:
        data = None if body is None else json.dumps(body).encode()
        sent = {**self.headers, **(headers or {}), **({"Content-Type": "application/json"} if data is not None else {})}
        for attempt in (1, 2):
            try:
                began = time.perf_counter()
                self.conn.request(method, API + path, body=data, headers=sent)
                response = self.conn.getresponse()
                raw = response.read()
                ms = (time.perf_counter() - began) * 1000
                break
            except (http.client.RemoteDisconnected, ConnectionError):
                # The server closed an idle keep-alive connection: open a new one, time that.
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                if attempt == 2:
                    raise
        if response.status not in expect:
            raise RuntimeError(f"{method} {API}{path} answered {response.status}, expected {expect}: {raw[:600]!r}")
        return ms, (json.loads(raw) if raw else None)

    def close(self) -> None:
        self.conn.close()


def prepare_server(info: dict) -> dict[str, Any]:
    """Make ``bench`` an editor, issue its token, publish the flow and finish one run."""
    from .engine import flow_document

    admin = Client(info["url"], {"Authorization": f"token {info['token']}"})
    try:
        admin.call("PUT", f"/members/{BENCH_USER}", {"role": "editor"})
        token = admin.call("POST", "/auth/tokens", {"user": BENCH_USER}, expect=(201,))[1]["access_token"]
        doc = flow_document(1)
        doc["meta"]["id"] = f"bench-security-{uuid.uuid4().hex[:8]}"
        flow = admin.call("POST", "/workflows", {"document": doc}, expect=(201,))[1]
        admin.call("POST", f"/workflows/{flow['id']}/publish", {}, expect=(201,))
    finally:
        admin.close()
    user = Client(info["url"], {"Authorization": f"Bearer {token}"})
    try:
        run_id = user.call("POST", f"/workflows/{flow['id']}/runs", {"input": {"value": 1}}, expect=(201,))[1]["run_id"]
        deadline = time.monotonic() + 60
        while (run := user.call("GET", f"/runs/{run_id}")[1])["status"] != "success":
            if run["status"] in ("failed", "cancelled", "terminated", "timed_out") or time.monotonic() > deadline:
                raise RuntimeError(f"the benchmark's run {run_id} did not succeed: {run}")
            time.sleep(0.1)
        # The two sides really differ: ours refuses a forged token, the switch lets it through.
        forged = {"Authorization": "Bearer " + token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")}
        user.call("GET", f"/runs/{run_id}", expect=(401,), headers=forged)
        user.call("GET", f"/runs/{run_id}", expect=(200,), headers={**forged, SWITCH_HEADER: "off"})
    finally:
        user.close()
    return {"token": token, "workflow_id": flow["id"], "run_id": run_id}


ROUTES = ("run_get", "run_start")  # GET /runs/{id}, POST /workflows/{id}/runs


def measure_routes(sides: dict[str, tuple[dict, dict]], rounds: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    """``sides``: name -> (server info, prepared server). Samples in ms per side and route.

    All the reads first, then all the starts: the worker running the started runs is then load
    on the starts' measurement only, where it belongs."""
    clients = {}
    for name, (info, prepared) in sides.items():
        headers = {
            "Authorization": f"Bearer {prepared['token']}",
            **({SWITCH_HEADER: "off"} if name.endswith("checks off") else {}),
        }
        clients[name] = (Client(info["url"], headers), prepared)
    calls: dict[str, Callable[[Client, dict, int], float]] = {
        "run_get": lambda client, prepared, n: client.call("GET", f"/runs/{prepared['run_id']}")[0],
        "run_start": lambda client, prepared, n: client.call(
            "POST", f"/workflows/{prepared['workflow_id']}/runs", {"input": {"value": n}}, expect=(201,)
        )[0],
    }
    samples: dict[str, dict[str, list[float]]] = {name: {route: [] for route in ROUTES} for name in sides}
    try:
        for route in ROUTES:
            for n, order in enumerate(_orders(list(sides), warmup + rounds)):
                for name in order:
                    client, prepared = clients[name]
                    ms = calls[route](client, prepared, n)
                    if n >= warmup:
                        samples[name][route].append(ms)
    finally:
        for client, _ in clients.values():
            client.close()
    return samples


def _orders(names: list[str], rounds: int) -> Iterator[list[str]]:
    """Each round rotates the order by one and every other round reverses it, so over a few
    rounds each configuration goes first, last and next to each of the others alike."""
    for n in range(rounds):
        k = (n // 2) % len(names)
        order = names[k:] + names[:k]
        yield order if n % 2 == 0 else order[::-1]


# ---------------------------------------------------------------------- (a) authentication
def run_auth(info: dict, counts: Counts, log: Callable[[str], None]) -> dict[str, Any]:
    prepared = prepare_server(info)
    log(f"measuring authentication: {counts.route_rounds} rounds of each route, checks on and off")
    sides = {"ours": (info, prepared), "checks off": (info, prepared)}
    return {"samples": measure_routes(sides, counts.route_rounds, counts.warmup)}


def profile_auth(settings: Any, repeats: int = 2000) -> dict[str, float]:
    """Microseconds of each step the checks take, timed in this process: where the time goes."""
    from floworch_server.auth import Roles, SigningKeys, Tokens
    from floworch_server.store import Store

    with tempfile.TemporaryDirectory(prefix="floworch-bench-auth-") as tmp, Store(f"sqlite:///{tmp}/auth.db") as store:
        store.add_member(BENCH_USER, "editor", by="benchmark")
        tokens = Tokens(SigningKeys(Path(tmp) / "keys.json"), store)
        token = tokens.access_token(BENCH_USER, "default")
        roles = Roles(settings, store)

        def per_call_us(fn: Callable[[], Any], number: int) -> float:
            return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

        def miss() -> None:
            roles.forget()
            roles.principal(BENCH_USER, "default", "token")

        roles.principal(BENCH_USER, "default", "token")
        checks, verifications = _request_checks(tokens, roles, settings, token)
        return {
            "verify_token_us": per_call_us(lambda: tokens.verify(token), repeats),
            "role_cached_us": per_call_us(
                lambda: roles.principal(BENCH_USER, "default", "token").require("edit"), repeats
            ),
            "role_lookup_sqlite_us": per_call_us(miss, max(50, repeats // 10)),
            "checks_per_request_us": per_call_us(checks, repeats),
            "token_verifications_per_request": verifications,
        }


def _request_checks(tokens: Any, roles: Any, settings: Any, token: str) -> tuple[Callable[[], None], int]:
    """One request's checks as ``FlowOrchHandler.prepare`` makes them (the 401 pre-check, the
    identity provider's ``get_user``, ``authorize``), on a stand-in handler with no Jupyter around
    it; and how many times they verify the token."""
    from types import SimpleNamespace

    from floworch_ext import identity

    runtime = SimpleNamespace(tokens=tokens, roles=roles, settings=settings)
    provider = SimpleNamespace(get_user=lambda handler: None)
    identity.install(provider, runtime)
    headers = {"Authorization": f"Bearer {token}"}

    class Handler:
        def __init__(self) -> None:
            self.request = SimpleNamespace(headers=headers)
            self.settings = {"floworch": runtime}
            self.current_user = None

        def get_query_argument(self, name: str, default: Any = None) -> Any:
            return default

    def checks() -> None:
        handler = Handler()
        identity.refuse_bad_token(handler)
        coroutine = provider.get_user(handler)
        try:
            coroutine.send(None)  # it never awaits anything real: run it to its end here
        except StopIteration as done:
            handler.current_user = done.value
        identity.authorize(handler, runtime, "read")

    count = 0
    verify = tokens.verify

    def counted(value: str) -> dict:
        nonlocal count
        count += 1
        return verify(value)

    tokens.verify = counted
    checks()
    tokens.verify = verify
    return checks, count


# ---------------------------------------------------------------------- (b) row-level security in the store
@contextmanager
def postgres_schemas(base: str) -> Iterator[dict[str, tuple[str, str]]]:
    """Two migrated, seeded schemas and one application role: {"rls": (app url, owner url),
    "no rls": (...)}; the second with row-level security disabled on every table."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from floworch_server.store import Store

    tag = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    role = f"floworch_bench_app_{tag}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    schemas = {"rls": f"floworch_bench_rls_{tag}", "no rls": f"floworch_bench_norls_{tag}"}
    urls: dict[str, tuple[str, str]] = {}
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE'))
            for schema in schemas.values():
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        for name, schema in schemas.items():
            owner = f"{base}?options=-csearch_path%3D{schema}"
            app = make_url(owner).set(username=role).render_as_string(hide_password=False)
            Store(app, owner_url=owner).close()  # migrates as the owner, grants the app role
            seed(owner)
            urls[name] = (app, owner)
        with admin.connect() as conn:
            tables = (
                conn.execute(
                    text(
                        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relrowsecurity"
                    ),
                    {"s": schemas["no rls"]},
                )
                .scalars()
                .all()
            )
            if not tables:
                raise RuntimeError(f"schema {schemas['no rls']} has no table with row-level security to turn off")
            for table in tables:
                conn.execute(text(f'ALTER TABLE "{schemas["no rls"]}"."{table}" NO FORCE ROW LEVEL SECURITY'))
                conn.execute(text(f'ALTER TABLE "{schemas["no rls"]}"."{table}" DISABLE ROW LEVEL SECURITY'))
            conn.execute(text("ANALYZE"))
        yield urls
    finally:
        with admin.connect() as conn:
            for schema in schemas.values():
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            if _role_exists(conn, role):
                conn.execute(text(f'DROP OWNED BY "{role}"'))  # its grants: a role with privileges cannot be dropped
                conn.execute(text(f'DROP ROLE "{role}"'))
        admin.dispose()


def _role_exists(conn: Any, role: str) -> bool:
    from sqlalchemy import text

    return conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first() is not None


def seed(owner_url: str) -> None:
    """The same rows in each schema: this tenant's and another's runs, in bulk (as the owner)."""
    from sqlalchemy import create_engine, insert

    from floworch_server.store.repo import runs

    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        {
            "run_id": f"seed-{tenant}-{i:05d}", "workflow_id": "seed-flow", "version": "1", "trigger": "manual", "tenant": tenant,
            "start_time": now - timedelta(seconds=10 * i), "end_time": now - timedelta(seconds=10 * i - 1), "status": "success",
            "search_attributes": {}, "updated_at": now,
        }
        for tenant in ("default", OTHER_TENANT)
        for i in range(SEED_RUNS)
    ]  # fmt: skip
    engine = create_engine(owner_url)
    try:
        with engine.begin() as conn:
            for i in range(0, len(rows), 5000):
                conn.execute(insert(runs), rows[i : i + 5000])
    finally:
        engine.dispose()


def store_views(urls: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """The three configurations, each its own store (and connection pool) as the app role."""
    from floworch_server.store import Store
    from floworch_server.store.engine import writer

    def open_store(name: str) -> Store:
        app, owner = urls[name]
        return Store(app, owner_url=owner)

    views = {"rls": open_store("rls"), "policies off": open_store("no rls"), "no rls": open_store("no rls")}
    bare = views["no rls"]
    bare._engine, bare._writer = bare._base, writer(bare._base)  # no per-transaction tenant setting
    return views


STORE_OPS = ("get_member", "get_workflow", "get_version", "get_run", "insert_run", "update_run", "audit", "list_runs")
# What each route asks of the store (the role lookup is cached; it is counted on its own).
ROUTE_STORE_OPS = {
    "run_get": ("update_run", "get_run"),
    "run_start": ("get_workflow", "get_version", "get_run", "insert_run", "audit", "get_run"),
}


def measure_store(views: dict[str, Any], rounds: int, warmup: int) -> dict[str, Any]:
    from sqlalchemy import text

    from .engine import CompiledFlow, flow_document

    compiled = CompiledFlow.of_chain(1)
    doc = flow_document(1)
    finished = datetime.now(UTC)
    prepared: dict[str, dict[str, Callable[..., Any]]] = {}  # called with no arguments
    for name, store in views.items():
        if store.get_member(BENCH_USER) is None:  # "policies off" and "no rls" share a schema
            store.add_member(BENCH_USER, "editor", by="benchmark")
        flow = store.get_workflow("bench-flow") or store.create_workflow(
            name="bench", document=doc, created_by="benchmark", id="bench-flow"
        )
        if flow["version"] is None:
            store.add_version(
                "bench-flow", plan=compiled.plan, plan_hash=compiled.hash, document=doc, note="", created_by="benchmark"
            )
        known = f"seed-default-{SEED_RUNS // 2:05d}"
        if store.get_run(known) is None:
            raise RuntimeError(
                f"the seeded run {known} is not visible to the store {name!r}: the tenant filter or policies are wrong"
            )
        if store.get_run(f"seed-{OTHER_TENANT}-00001") is not None:
            raise RuntimeError(f"the store {name!r} sees another tenant's run")
        # The configurations are what they say: a query with no tenant filter of its own sees
        # only this tenant's seeded runs under RLS, and both tenants' without it.
        with store._engine.connect() as conn:
            seen = conn.execute(text("SELECT count(*) FROM workflow_runs WHERE run_id LIKE 'seed-%'")).scalar()
        if seen != (SEED_RUNS if name == "rls" else 2 * SEED_RUNS):
            raise RuntimeError(
                f"the store {name!r} sees {seen} seeded runs through an unfiltered query: its RLS state is not what it is named"
            )
        counter = iter(range(10**9))
        prepared[name] = {
            "get_member": lambda s=store: s.get_member(BENCH_USER),
            "get_workflow": lambda s=store: s.get_workflow("bench-flow"),
            "get_version": lambda s=store: s.get_version("bench-flow", 1),
            "get_run": lambda s=store, k=known: s.get_run(k),
            "insert_run": lambda s=store, c=counter, n=name: s.upsert_run(
                {
                    "run_id": f"bench-{n.replace(' ', '-')}-{next(c)}",
                    "workflow_id": "bench-flow",
                    "version": "1",
                    "status": "running",
                }
            ),
            "update_run": lambda s=store, k=known: s.upsert_run(
                {"run_id": k, "status": "success", "end_time": finished}
            ),
            "audit": lambda s=store, k=known: s.audit(BENCH_USER, "run.start", k, {"workflow_id": "bench-flow"}),
            "list_runs": lambda s=store: s.list_runs(limit=100),
        }
    samples: dict[str, dict[str, list[float]]] = {name: {op: [] for op in STORE_OPS} for name in views}
    for n, order in enumerate(_orders(list(views), warmup + rounds)):
        for name in order:
            for op in STORE_OPS:
                began = time.perf_counter()
                prepared[name][op]()
                ms = (time.perf_counter() - began) * 1000
                if n >= warmup:
                    samples[name][op].append(ms)
    # A route's store work, round by round: the sum of its operations in that round.
    for name in views:
        for route, ops in ROUTE_STORE_OPS.items():
            samples[name][route] = [sum(parts) for parts in zip(*(samples[name][op] for op in ops), strict=True)]
    return {"samples": samples}


# ---------------------------------------------------------------------- (c) through the servers
def run_postgres(
    urls: dict[str, tuple[str, str]], servers: list[dict], counts: Counts, log: Callable[[str], None]
) -> dict[str, Any]:
    views = store_views(urls)
    try:
        log(f"measuring the store: {counts.store_rounds} rounds of {len(STORE_OPS)} operations, three configurations")
        store = measure_store(views, counts.store_rounds, counts.warmup)
    finally:
        for view in views.values():
            view.close()
    rls, norls = servers
    on, off = prepare_server(rls), prepare_server(norls)
    log(f"measuring both routes through a server on each schema: {counts.pg_route_rounds} rounds, four configurations")
    sides = {"rls": (rls, on), "rls, checks off": (rls, on), "no rls": (norls, off), "no rls, checks off": (norls, off)}
    return {"store": store, "routes": {"samples": measure_routes(sides, counts.pg_route_rounds, counts.warmup)}}


def postgres_or_reason() -> tuple[str | None, str]:
    base, reason = postgres_base()
    if base is None and os.environ.get("FLOWORCH_REQUIRE_SERVICES") == "1":
        raise SystemExit(f"{reason} (FLOWORCH_REQUIRE_SERVICES=1: start PostgreSQL)")
    return base, reason


# ---------------------------------------------------------------------- results
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def figures(samples: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(percentile(samples, 95), 3),
        "n": len(samples),
    }


def compare(ours: list[float], base: list[float]) -> dict[str, Any]:
    """Ratio of the medians, and the median of the round-by-round differences (paired) with its
    95 % confidence interval (distribution-free: the sign test's order statistics), also given
    as a ratio interval over the baseline's median. An interval that holds 0 added ms means the
    noise of this machine is larger than what the checks cost."""
    diffs = sorted(a - b for a, b in zip(ours, base, strict=True))
    n, base_median = len(diffs), statistics.median(base)
    k = max(0, int((n - 1.96 * n**0.5) / 2))
    low, high = diffs[k], diffs[n - 1 - k]
    return {
        "ours": figures(ours),
        "baseline": figures(base),
        "ratio": round(statistics.median(ours) / base_median, 4),
        "added_ms": round(statistics.median(diffs), 3),
        "added_ms_ci95": [round(low, 3), round(high, 3)],
        "ratio_ci95": [round(1 + low / base_median, 4), round(1 + high / base_median, 4)],
    }


def summarize(auth: dict[str, Any], pg: dict[str, Any], profile: dict[str, float]) -> dict[str, Any]:
    a = auth["samples"]
    comparisons: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        comparisons[f"auth_{route}"] = compare(a["ours"][route], a["checks off"][route])
    notes: dict[str, str] = {}
    if "skipped" in pg:
        notes["postgres"] = pg["skipped"]
    else:
        s, r = pg["store"]["samples"], pg["routes"]["samples"]
        for op in (*ROUTES, *STORE_OPS):
            comparisons[f"rls_store_{op}"] = compare(s["rls"][op], s["no rls"][op])
        for route in ROUTES:
            comparisons[f"rls_policies_store_{route}"] = compare(s["rls"][route], s["policies off"][route])
            comparisons[f"rls_setting_store_{route}"] = compare(s["policies off"][route], s["no rls"][route])
            comparisons[f"rls_{route}"] = compare(r["rls"][route], r["no rls"][route])
            comparisons[f"pg_auth_{route}"] = compare(r["rls"][route], r["rls, checks off"][route])
            comparisons[f"auth_rls_{route}"] = compare(r["rls"][route], r["no rls, checks off"][route])

    def worst(prefix: str) -> float | None:
        found = [comparisons[f"{prefix}_{route}"]["ratio"] for route in ROUTES if f"{prefix}_{route}" in comparisons]
        return max(found) if found else None

    summary: dict[str, Any] = {
        "auth_overhead_ratio": worst("auth"),
        "rls_overhead_ratio": worst("rls"),
        "rls_store_overhead_ratio": worst("rls_store"),
        "rls_policies_store_overhead_ratio": worst("rls_policies_store"),
        "rls_setting_store_overhead_ratio": worst("rls_setting_store"),
        "pg_auth_overhead_ratio": worst("pg_auth"),
        "auth_rls_overhead_ratio": worst("auth_rls"),
        "target_ratio": TARGET_RATIO,
    }
    for key, c in comparisons.items():
        summary[f"{key}_ratio"] = c["ratio"]
        summary[f"{key}_added_ms"] = c["added_ms"]
        summary[f"{key}_added_ms_ci95"] = c["added_ms_ci95"]
        summary[f"{key}_ratio_ci95"] = c["ratio_ci95"]
        for side in ("ours", "baseline"):
            summary[f"{key}_{side}_median_ms"] = c[side]["median_ms"]
            summary[f"{key}_{side}_p95_ms"] = c[side]["p95_ms"]
            summary[f"{key}_{side}_samples"] = c[side]["n"]
    summary.update({k: round(v, 2) for k, v in profile.items()})
    summary["notes"] = notes
    summary["comparisons"] = sorted(comparisons)
    return summary


LABELS = {
    "auth": ("authentication, SQLite store", "checks off"),
    "rls_store": ("RLS, store only, PostgreSQL", "no rls"),
    "rls_policies_store": ("RLS policies alone, store only (ours: rls)", "policies off"),
    "rls_setting_store": ("RLS tenant setting alone, store only (ours: policies off)", "no rls"),
    "rls": ("RLS, through the server", "no rls"),
    "pg_auth": ("authentication, PostgreSQL store", "checks off"),
    "auth_rls": ("authentication + RLS, PostgreSQL", "neither"),
}


def table(summary: dict[str, Any]) -> str:
    rows = [("", "ours median", "p95", "baseline median", "p95", "added (paired)", "95 % CI", "ratio", "n")]
    for prefix, (title, baseline) in LABELS.items():
        keys = [f"{prefix}_{name}" for name in (*ROUTES, *STORE_OPS) if f"{prefix}_{name}" in summary["comparisons"]]
        if not keys:
            continue
        rows.append((f"{title} (baseline: {baseline})", "", "", "", "", "", "", "", ""))
        for key in keys:
            s = summary
            label = key[len(prefix) + 1 :]
            label = {"run_get": "GET /runs/{id}", "run_start": "POST /workflows/{id}/runs"}.get(label, label)
            if prefix.endswith("store") and key[len(prefix) + 1 :] in ROUTES:
                label += " (its store work)"
            ratio = s[f"{key}_ratio"]
            rows.append((
                f"  {label}", f"{s[f'{key}_ours_median_ms']:.3f}", f"{s[f'{key}_ours_p95_ms']:.3f}",
                f"{s[f'{key}_baseline_median_ms']:.3f}", f"{s[f'{key}_baseline_p95_ms']:.3f}",
                f"{s[f'{key}_added_ms']:+.3f}", "{:+.3f} .. {:+.3f}".format(*s[f"{key}_added_ms_ci95"]),
                # The target is about requests; a store operation's ratio only says where time goes.
                f"{ratio:.3f}{' >5%' if ratio > TARGET_RATIO and not prefix.endswith('store') else ''}", str(s[f"{key}_ours_samples"]),
            ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(
        "(ms; ratio = ours / baseline on the medians; added = median of the round-by-round differences, with its 95 % CI)"
    )
    lines.append(
        f"in-process, one request's checks: {summary['checks_per_request_us']:.1f} us of CPU, verifying the token "
        f"{summary['token_verifications_per_request']:.0f} time(s) at {summary['verify_token_us']:.1f} us each; cached role + "
        f"permission {summary['role_cached_us']:.1f} us; membership lookup on a cache miss (SQLite, every "
        f"{_role_cache():.0f} s per user) {summary['role_lookup_sqlite_us']:.1f} us"
    )
    if "postgres" in summary["notes"]:
        lines.append(f"PostgreSQL part skipped: {summary['notes']['postgres']}")
    for name, key in (("authentication", "auth_overhead_ratio"), ("row-level security", "rls_overhead_ratio")):
        value = summary[key]
        verdict = "skipped" if value is None else ("ok" if value <= TARGET_RATIO else "MISSED")
        lines.append(
            f"{name}: worst route ratio {value if value is not None else '-'} (target <= {TARGET_RATIO}) {verdict}"
        )
    return "\n".join(lines)


def _role_cache() -> float:
    from floworch_server.auth import ROLE_CACHE_SECONDS

    return ROLE_CACHE_SECONDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.security", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (same servers, same data)")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    began = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - began:5.1f}s] {msg}", file=sys.stderr, flush=True)

    with clean_environment(), tempfile.TemporaryDirectory(prefix="floworch-bench-security-") as tmp:
        workdir = Path(tmp)
        log("starting the Temporal dev server and a worker")
        base, reason = postgres_or_reason()
        if base is None:
            log(f"PostgreSQL part skipped: {reason}")
        with services(workdir) as settings, ExitStack() as stack:
            servers = [bench_server(workdir / "sqlite", settings)]
            urls = None
            if base is not None:
                urls = stack.enter_context(postgres_schemas(base))
                log(f"PostgreSQL: two schemas migrated and seeded ({SEED_RUNS} runs in each of two tenants)")
                servers += [
                    bench_server(workdir / "pg-rls", settings, database=urls["rls"]),
                    bench_server(workdir / "pg-norls", settings, database=urls["no rls"], tenant_setting=False),
                ]
            log(
                f"starting {len(servers)} Jupyter server(s) with the extension: SQLite{', PostgreSQL with and without RLS' if urls else ''}"
            )
            started = stack.enter_context(started_together(*servers))
            auth = run_auth(started[0], counts, log)
            pg = run_postgres(urls, started[1:], counts, log) if urls else {"skipped": reason}
        profile = profile_auth(settings)
    summary = summarize(auth, pg, profile)
    print(table(summary))
    print(f"(took {time.monotonic() - began:.0f} s)")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
