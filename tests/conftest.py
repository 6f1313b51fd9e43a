"""Fixtures over the session's embedded services (started in the repo-root conftest.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.store import Store
from support.postgres import pg_url  # noqa: F401  (a fixture: a fresh schema on the real PostgreSQL)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path) -> str:
    """A fresh, empty store: a SQLite file, then a schema on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'floworch.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    store = Store(store_url)
    yield store
    store.close()


@pytest.fixture
async def jp_asyncio_loop():
    # Tests with a Jupyter server (pytest-jupyter) run on pytest-asyncio's session loop, with the
    # session's `service`: the server must live on that loop too (pytest-jupyter's own fixture
    # would make, and close, a loop per test).
    yield asyncio.get_running_loop()


@pytest.fixture(scope="session")
def supervisor(request):
    return request.config.floworch["supervisor"]


@pytest.fixture(scope="session")
async def service() -> AsyncIterator[FlowService]:
    svc = await FlowService.connect(Settings.from_env())
    yield svc
    svc.store.close()


def flow_doc(nodes: list[dict], edges: list[Any], name: str | None = None) -> dict:
    """A .flow document; edges may be given as (source, target) or (source, port, target) tuples."""
    out_edges = []
    for i, e in enumerate(edges):
        if isinstance(e, dict):
            out_edges.append(e)
            continue
        source, port, target = (e[0], None, e[1]) if len(e) == 2 else e
        edge = {"id": f"e{i}", "source": source, "target": target}
        if port:
            edge["sourceHandle"] = port
        out_edges.append(edge)
    return {
        "version": 1,
        "meta": {"id": str(uuid.uuid4()), "name": name or f"test-{uuid.uuid4().hex[:6]}"},
        "nodes": [{"position": {"x": 0, "y": 0}, "config": {}, **n} for n in nodes],
        "edges": out_edges,
    }


@pytest.fixture
def published(service: FlowService) -> Callable[..., Awaitable[str]]:
    """Create and publish a flow; ``await published(nodes, edges)`` returns its workflow id."""

    async def make(nodes: list[dict], edges: list[Any], name: str | None = None) -> str:
        doc = flow_doc(nodes, edges, name)
        record = service.create_workflow(doc, by="tester")
        await service.publish(record["id"], note="test", by="tester")
        return record["id"]

    return make


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float = 30, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


async def finished(service: FlowService, run_id: str, timeout: float = 60) -> dict:
    async def check():
        run = await service.get_run(run_id)
        return run if run["status"] in ("success", "failed", "cancelled") else None

    return await wait_until(check, timeout)


def nodes_by_id(run: dict) -> dict[str, dict]:
    return {n["node"]: n for n in run["nodes"]}
