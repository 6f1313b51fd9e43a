"""The local Redis, with a key prefix of its own per test.

Tests run against the real Redis at 127.0.0.1:6379. Each caller gets a uniquely named key
prefix, so tests and parallel test runs never see each other's keys, and every key under it is
deleted after the test. When the server is not there the test is skipped - unless
FLOWORCH_REQUIRE_SERVICES=1 (CI), where a missing service is a failure.

Other test modules use the fixture by importing it::

    from support.redis import redis_service  # noqa: F401  (pytest fixture)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .services import missing

HOST = "127.0.0.1"
PORT = 6379
URL = f"redis://{HOST}:{PORT}/0"
CONNECT_TIMEOUT_S = 3

_unreachable_reason: str | None = None
_checked = False


def _client():
    import redis

    return redis.Redis.from_url(URL, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S)


def require_redis() -> None:
    """Skip (or, with FLOWORCH_REQUIRE_SERVICES=1, fail) when Redis does not answer; checked once."""
    global _checked, _unreachable_reason
    if not _checked:
        _checked = True
        try:
            with _client() as client:
                client.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable", with the reason
            _unreachable_reason = " ".join(str(exc).split()) or type(exc).__name__
    if _unreachable_reason is not None:
        message = f"Redis not reachable at {HOST}:{PORT}: {_unreachable_reason}"
        missing("Redis", message)


@dataclass
class RedisService:
    url: str
    prefix: str  # every key this test makes starts with it; deleted afterwards
    client: Any  # a redis.Redis on the same server, to look at the keys

    def stored_keys(self) -> list[str]:
        return sorted(k.decode() for k in self.client.scan_iter(match=f"{self.prefix}:*"))


@pytest.fixture
def redis_service() -> Iterator[RedisService]:
    """The local Redis, a fresh key prefix, and a client; the prefix's keys are deleted after the test."""
    require_redis()
    prefix = f"floworch_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    client = _client()
    try:
        yield RedisService(URL, prefix, client)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
