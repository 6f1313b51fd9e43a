"""The REST API's rate limits on a real Jupyter server: a burst of 1,000 requests by one user is
answered with 429s that say when to come back (Retry-After), and the server goes on answering
everyone else normally. Counted in the server's memory, and in the real Redis at 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from floworch_ext.handlers import API_PREFIX
from support.redis import redis_service  # noqa: F401  (pytest fixture)
from support.rest import Reply, api, runtime, server_config  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(120)

USER_LIMIT = 50  # per hour: the burst is over long before any of it expires
BURST = 1000
AT_ONCE = 50  # requests in flight at a time


@pytest.fixture(params=["memory", "redis"])
def backend(request, monkeypatch) -> str:
    """The server's rate-limit settings, in its environment before it starts."""
    monkeypatch.setenv("FLOWORCH_RATE_LIMIT_USER", f"{USER_LIMIT}/hour")
    monkeypatch.setenv("FLOWORCH_RATE_LIMIT_TENANT", "")  # no tenant limit: only the user's is tested here
    if request.param == "redis":
        redis = request.getfixturevalue("redis_service")
        monkeypatch.setenv("FLOWORCH_REDIS_URL", redis.url)
        monkeypatch.setenv("FLOWORCH_RATE_LIMIT_PREFIX", redis.prefix)
    else:
        monkeypatch.setenv("FLOWORCH_REDIS_URL", "")
        monkeypatch.setenv("FLOWORCH_RATE_LIMIT_PREFIX", f"api-{uuid.uuid4().hex}")
    return request.param


@pytest.fixture
def jp_server_config(backend):
    return server_config()


async def test_a_burst_of_a_thousand_requests_gets_429s_with_retry_after_and_the_server_still_answers(
    api, jp_fetch, backend, request
):
    # Before the burst, Ada (the Jupyter user, admin) adds Vera and gets her a token: 2 requests.
    assert (await api.put("/members/{user}", {"role": "viewer"}, user="vera")).code == 200
    issued = await api.post("/auth/tokens", {"user": "vera"})
    assert issued.code == 201, issued.json
    vera = {"Authorization": f"Bearer {issued.json['access_token']}"}

    async def one():
        response = await jp_fetch(API_PREFIX + "/workflows", raise_error=False)
        return response.code, response.headers.get("Retry-After"), json.loads(response.body)

    replies = []
    for _ in range(BURST // AT_ONCE):
        replies += await asyncio.gather(*(one() for _ in range(AT_ONCE)))

    codes = [code for code, _, _ in replies]
    assert codes.count(200) == USER_LIMIT - 2 and codes.count(429) == BURST - USER_LIMIT + 2
    refused = [(after, body) for code, after, body in replies if code == 429]
    for after, body in refused:
        assert after is not None and after.isdigit() and 1 <= int(after) <= 3600
        assert body == {
            "error": f"too many requests: the rate limit of user 'ada' (50 per 1 hour, set by FLOWORCH_RATE_LIMIT_USER) is used up; retry in {after}s (Retry-After)",
            "field": None,
            "problems": [],
        }
    api.check("GET", "/workflows", Reply(429, refused[0][1]))  # as openapi.json describes it

    # The server still answers: Vera, another user, is served as usual; Ada is still told to wait.
    assert (await api.get("/workflows", headers=vera)).code == 200
    again = await jp_fetch(API_PREFIX + "/workflows", raise_error=False)
    assert again.code == 429 and again.headers["Retry-After"].isdigit()
    if backend == "redis":  # counted where every server of the deployment sees it, under the tenant
        redis = request.getfixturevalue("redis_service")
        assert f"{redis.prefix}:default:user/ada/{USER_LIMIT}/1/hour" in redis.stored_keys()
