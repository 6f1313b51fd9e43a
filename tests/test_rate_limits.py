"""Rate limits per user, per tenant and per provider (ratelimit.py), counted in the real Redis at
127.0.0.1:6379 - shared by every process of a deployment, namespaced per tenant - or in one
process's memory when no Redis is configured; and a node reaching its provider's limit waits
within its retry policy instead of failing, on the session's Temporal with worker processes of
its own."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import finished, nodes_by_id, wait_until
from floworch_server import nodes
from floworch_server.integrations import Integrations
from floworch_server.nodes.spec import NodeError
from floworch_server.ratelimit import (
    RateLimitConfigError,
    RateLimits,
    RateLimitUnavailable,
    provider_turn,
    retry_after_header,
)
from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.supervisor import Supervisor
from support.redis import redis_service  # noqa: F401  (pytest fixture)
from test_llm_node import ModelServer, custom, openai_reply, run_llm
from test_saas_nodes import FakeContext

TRIGGER = {"id": "start", "type": "trigger.manual"}


def on_redis(redis_service, **limits: str) -> RateLimits:
    """A RateLimits of its own (as one more process would have) on the test's Redis prefix."""
    return RateLimits(storage_url=redis_service.url, prefix=redis_service.prefix, **limits)


class RecordingAPI:
    """An HTTP API on 127.0.0.1 that answers every request with ``answer`` and records its path."""

    def __init__(self, answer: Any) -> None:
        self.paths: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                api.paths.append(self.path)
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingAPI:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


# ------------------------------------------------------------------ counting in Redis
def test_two_processes_share_a_providers_count_through_redis(redis_service):
    one, other = (
        on_redis(redis_service, providers="slack=3/minute"),
        on_redis(redis_service, providers="slack=3/minute"),
    )
    assert [
        one.acquire_provider("acme", "slack"),
        other.acquire_provider("acme", "slack"),
        one.acquire_provider("acme", "slack"),
    ] == [None] * 3
    # The fourth call is refused wherever it is made, with the wait until the first leaves the minute.
    for limits in (other, one):
        wait = limits.acquire_provider("acme", "slack")
        assert wait is not None and 0 < wait <= 60
    assert one.acquire_provider("acme", "openai") is None  # a provider with no limit is never refused


def test_requests_count_against_the_user_then_the_tenant_across_processes(redis_service):
    one, other = (
        on_redis(redis_service, user="2/minute", tenant="3/minute"),
        on_redis(redis_service, user="2/minute", tenant="3/minute"),
    )
    assert [one.check_request("acme", "ann"), other.check_request("acme", "ann")] == [None, None]
    refused = one.refuse_request("acme", "ann")
    assert (refused.scope, refused.name, refused.limit) == ("user", "ann", "2 per 1 minute") and 0 < refused.wait <= 60
    # Ann's refused request did not use the tenant's third request: Bob gets it, then the tenant is full.
    assert other.check_request("acme", "bob") is None
    refused = one.refuse_request("acme", "carl")
    assert (refused.scope, refused.name) == ("tenant", "acme")


def test_one_tenant_using_up_its_limits_does_not_limit_another_and_each_has_its_own_key_prefix(redis_service):
    limits = on_redis(redis_service, user="1/minute", tenant="1/minute", providers="openai=1/minute")
    assert limits.check_request("acme", "ann") is None and limits.acquire_provider("acme", "openai") is None
    assert limits.check_request("acme", "ann") is not None and limits.acquire_provider("acme", "openai") is not None
    # The same user name and provider in another tenant count from zero.
    assert limits.check_request("globex", "ann") is None and limits.acquire_provider("globex", "openai") is None

    keys = redis_service.stored_keys()
    assert keys and all(
        k.startswith((f"{redis_service.prefix}:acme:", f"{redis_service.prefix}:globex:")) for k in keys
    )
    assert {k.split(":")[1] for k in keys} == {"acme", "globex"}
    assert limits.namespace("acme") == f"{redis_service.prefix}:acme:"


def test_a_tenant_named_to_look_like_another_tenants_key_gets_counters_of_its_own(redis_service):
    limits = on_redis(redis_service, user="1/minute", tenant="", providers="openai=1/minute")
    assert limits.check_request("acme", "ann") is None and limits.acquire_provider("acme", "openai") is None
    # Names spelling acme's keys ("acme:user/ann", "acme:provider/openai") reach none of them.
    for tenant, user in [("acme:user", "ann"), ("acme", "ann/1/1/minute"), ("acme:provider/openai", "x")]:
        assert limits.check_request(tenant, user) is None
    assert limits.acquire_provider("acme:provider", "openai") is None
    assert limits.check_request("acme", "ann") is not None and limits.acquire_provider("acme", "openai") is not None
    assert {k.split(":")[1] for k in redis_service.stored_keys()} == {
        "acme",
        "acme%3Auser",
        "acme%3Aprovider",
        "acme%3Aprovider%2Fopenai",
    }


def test_a_redis_that_does_not_answer_is_a_clear_error_that_hides_its_password():
    limits = RateLimits(storage_url="redis://:hunter2@127.0.0.1:1/0", user="10/minute")
    with pytest.raises(RateLimitUnavailable) as failure:
        limits.check_request("acme", "ann")
    assert str(failure.value).startswith(
        "rate limits: the Redis at redis://:***@127.0.0.1:1/0 (FLOWORCH_REDIS_URL) did not answer"
    )
    assert "hunter2" not in str(failure.value) and failure.value.status == 503


# ------------------------------------------------------------------ in memory, settings
def test_without_a_redis_url_the_counts_live_in_the_process_and_every_caller_shares_them(tmp_path):
    settings = Settings(data_dir=str(tmp_path), rate_limit_user="2/minute", rate_limit_prefix=f"mem-{uuid.uuid4().hex}")
    limits = RateLimits.from_settings(settings)
    assert limits.backend == "memory"
    assert RateLimits.from_settings(settings.replace()) is limits  # the same settings: the same counts
    assert [limits.check_request("acme", "ann"), RateLimits.from_settings(settings).check_request("acme", "ann")] == [
        None,
        None,
    ]
    assert limits.check_request("acme", "ann") is not None
    assert limits.check_request("globex", "ann") is None


def test_the_defaults_limit_users_and_tenants_but_no_provider(tmp_path):
    limits = RateLimits.from_settings(Settings(data_dir=str(tmp_path), rate_limit_prefix=f"mem-{uuid.uuid4().hex}"))
    assert [str(i) for i in limits.user_limits] == ["600 per 1 minute"] and [str(i) for i in limits.tenant_limits] == [
        "6000 per 1 minute"
    ]
    assert limits.provider_limits == {}


@pytest.mark.parametrize(
    "variable, value, message",
    [
        (
            "FLOWORCH_RATE_LIMIT_USER",
            "lots",
            "FLOWORCH_RATE_LIMIT_USER: 'lots' is not a rate limit; write it as '<count>/<period>'",
        ),
        (
            "FLOWORCH_RATE_LIMIT_TENANT",
            "100/fortnight",
            "FLOWORCH_RATE_LIMIT_TENANT: '100/fortnight' is not a rate limit",
        ),
        (
            "FLOWORCH_RATE_LIMIT_PROVIDERS",
            "openai",
            "FLOWORCH_RATE_LIMIT_PROVIDERS: 'openai' is not 'provider=limit'; write comma-separated pairs",
        ),
        (
            "FLOWORCH_RATE_LIMIT_PROVIDERS",
            "openai=60/minute,slack=often",
            "FLOWORCH_RATE_LIMIT_PROVIDERS: 'often' is not a rate limit",
        ),
        ("FLOWORCH_RATE_LIMIT_PROVIDERS", "slack=1/second,slack=2/second", "provider 'slack' is given twice"),
    ],
)
def test_a_limit_that_cannot_be_read_is_an_error_naming_the_setting(tmp_path, variable, value, message):
    settings = Settings.from_env({"FLOWORCH_DATA_DIR": str(tmp_path), variable: value})
    with pytest.raises(RateLimitConfigError) as failure:
        RateLimits.from_settings(settings)
    assert message in str(failure.value)


def test_several_limits_per_provider_and_the_retry_after_of_a_wait():
    limits = RateLimits(providers="slack=2/second;3/hour, openai=1/5 seconds")
    assert [str(i) for i in limits.provider_limits["slack"]] == ["2 per 1 second", "3 per 1 hour"]
    assert limits.acquire_provider("t", "openai") is None
    wait = limits.acquire_provider("t", "openai")
    assert 0 < wait <= 5
    assert [retry_after_header(w) for w in (0.01, 1.0, 1.2, 4.999)] == ["1", "1", "2", "5"]


# ------------------------------------------------------------------ nodes taking their turn
def memory_settings(tmp_path, providers: str) -> Settings:
    return Settings(data_dir=str(tmp_path), rate_limit_providers=providers, rate_limit_prefix=f"mem-{uuid.uuid4().hex}")


async def test_a_refusal_before_an_attempts_first_call_ends_it_with_the_wait_as_next_retry_delay(tmp_path):
    settings = memory_settings(tmp_path, "slack=1/minute")
    await provider_turn(FakeContext(), "slack", "Slack POST /api/chat.postMessage", settings=settings)
    with pytest.raises(NodeError) as failure:
        await provider_turn(FakeContext(), "slack", "Slack POST /api/chat.postMessage", settings=settings)
    error = failure.value
    assert error.retryable and error.kind == "RateLimited" and 0 < error.retry_after <= 60
    assert str(error).startswith(
        "Slack POST /api/chat.postMessage: the slack rate limit (1 per 1 minute, set by FLOWORCH_RATE_LIMIT_PROVIDERS) is used up; next attempt in"
    )
    assert error.details["provider"] == "slack" and error.details["tenant"] == "default"


async def test_a_refusal_after_an_attempts_first_call_is_waited_out_with_heartbeats(tmp_path):
    # The next page of a list: ending the attempt would fetch the first page again.
    settings = memory_settings(tmp_path, "hubspot=1/second")
    ctx = FakeContext()
    await provider_turn(ctx, "hubspot", "HubSpot GET /crm/v3/objects/contacts", settings=settings)
    await provider_turn(ctx, "hubspot", "HubSpot GET /crm/v3/objects/contacts", settings=settings)
    assert ctx.provider_calls == 2 and ctx.heartbeats >= 1
    [(level, message)] = ctx.logs
    assert level == "info" and message.startswith(
        "HubSpot GET /crm/v3/objects/contacts: hubspot rate limit (1 per 1 second, FLOWORCH_RATE_LIMIT_PROVIDERS) reached; waiting"
    )


async def test_a_bad_provider_limit_fails_the_node_without_retries_naming_the_setting(tmp_path):
    with pytest.raises(NodeError) as failure:
        await provider_turn(
            FakeContext(), "slack", "Slack POST /api/chat.postMessage", settings=memory_settings(tmp_path, "slack")
        )
    assert not failure.value.retryable and failure.value.kind == "RateLimitConfig"
    assert "FLOWORCH_RATE_LIMIT_PROVIDERS: 'slack' is not 'provider=limit'" in str(failure.value)


async def test_an_http_node_takes_its_turn_at_its_hosts_limit_before_sending(monkeypatch):
    monkeypatch.setenv("FLOWORCH_RATE_LIMIT_PROVIDERS", "127.0.0.1=1/minute")
    monkeypatch.setenv("FLOWORCH_RATE_LIMIT_PREFIX", f"mem-{uuid.uuid4().hex}")
    http = nodes.get("action.http")
    with RecordingAPI({"ok": True}) as api:
        first = await http.execute(FakeContext(), {"url": api.url + "/one"}, {})
        with pytest.raises(NodeError) as failure:
            await http.execute(FakeContext(), {"url": api.url + "/two"}, {})
    assert first["status"] == 200
    assert failure.value.kind == "RateLimited" and str(failure.value).startswith(
        f"GET {api.url}/two: the 127.0.0.1 rate limit (1 per 1 minute"
    )
    assert api.paths == ["/one"]  # the refused request never left the worker


async def test_an_llm_node_takes_its_turn_at_its_providers_limit_against_a_local_openai_protocol_server(monkeypatch):
    monkeypatch.setenv("FLOWORCH_RATE_LIMIT_PROVIDERS", "custom=1/minute")
    monkeypatch.setenv("FLOWORCH_RATE_LIMIT_PREFIX", f"mem-{uuid.uuid4().hex}")
    with ModelServer() as model:
        model.answer(openai_reply("Hello"), openai_reply("Hello again"))
        first = await run_llm(custom(model))
        with pytest.raises(NodeError) as failure:
            await run_llm(custom(model))
    assert first["text"] == "Hello"
    assert failure.value.kind == "RateLimited" and f"custom at {model.url}/v1: the custom rate limit" in str(
        failure.value
    )
    assert len(model.requests) == 1


# ------------------------------------------------------------------ end to end
async def test_a_node_over_its_providers_limit_retries_after_the_wait_and_succeeds_with_two_workers_sharing_redis(
    service, supervisor, redis_service, tmp_path
):
    """Two Slack posts, one per 4 seconds allowed: the second waits (retrying) and the run succeeds.

    The limits reach the worker processes as their settings (FLOWORCH_RATE_LIMIT_PROVIDERS,
    FLOWORCH_REDIS_URL), as they would in a deployment: this test runs two workers of its own,
    on a task queue of its own, on the session's Temporal and store."""
    settings = Settings.from_env(
        data_dir=str(tmp_path / "data"), temporal_address=supervisor.address, database_url=service.settings.store_url,
        task_queue=f"ratelimit-{uuid.uuid4().hex[:8]}", workers=2,
        redis_url=redis_service.url, rate_limit_prefix=redis_service.prefix, rate_limit_providers="slack=1/4 seconds",
    )  # fmt: skip
    own = FlowService(settings, service.client, service.store)
    # Stored with the key of the test's data directory, which its workers read.
    with RecordingAPI({"ok": True, "channel": "C1", "ts": "1503435956.000247"}) as api:
        name = f"slack-{uuid.uuid4().hex[:6]}"
        Integrations.from_settings(settings, store=service.store).add(
            name, "slack", {"access_token": "xoxb-test"}, by="t", settings={"base_url": api.url + "/api"}
        )
        post = {"type": "action.slack", "config": {"integration": name, "channel": "C1", "text": "hi"}}
        doc = {
            "version": 1,
            "meta": {"id": str(uuid.uuid4()), "name": f"ratelimit-{uuid.uuid4().hex[:6]}"},
            "nodes": [
                {"position": {"x": 0, "y": 0}, **n}
                for n in [{**TRIGGER, "config": {}}, {"id": "first", **post}, {"id": "second", **post}]
            ],
            "edges": [
                {"id": "e0", "source": "start", "target": "first"},
                {"id": "e1", "source": "first", "target": "second"},
            ],
        }
        record = own.create_workflow(doc, by="t")
        await own.publish(record["id"], by="t")
        with Supervisor(settings):
            run_id = (await own.start_run(record["id"], by="t"))["run_id"]

            async def second_retrying():
                node = nodes_by_id(await own.get_run(run_id))["second"]
                return node if node["status"] == "retrying" else None

            retrying = await wait_until(second_retrying)
            run = await finished(own, run_id)
        requests = list(api.paths)

    assert (
        "the slack rate limit (1 per 4 second, set by FLOWORCH_RATE_LIMIT_PROVIDERS) is used up; next attempt in"
        in retrying["error"]
    )
    assert retrying["detail"]["next_attempt"]
    assert run["status"] == "success"
    by_id = nodes_by_id(run)
    assert (by_id["first"]["status"], by_id["first"]["attempts"]) == ("success", 1)
    assert (by_id["second"]["status"], by_id["second"]["attempts"]) == ("success", 2)
    # The refused attempt never reached Slack: two posts in all.
    assert requests == ["/api/chat.postMessage"] * 2
    failed = [entry for entry in service.store.list_logs(run_id) if entry["level"] == "error"]
    assert [(entry["node"], entry["attempt"]) for entry in failed] == [("second", 1)]
    assert failed[0]["message"].startswith("Slack POST /api/chat.postMessage: the slack rate limit")
    # Counted in the deployment's Redis, under the run's tenant.
    assert redis_service.stored_keys() == [f"{redis_service.prefix}:default:provider/slack/1/4/second"]
