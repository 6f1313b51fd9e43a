"""Webhook triggers, end to end: signed HTTP requests to a real Jupyter server start runs on the session's Temporal.

`POST <base_url>/floworch/hooks/{hook_id}` is the one route without Jupyter authentication, so these
requests carry no token and no XSRF cookie: only the HMAC signature of the hook's secret. Every answer
is checked against the route's description in openapi.json.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from traitlets.config import Config

from conftest import finished
from floworch_ext.handlers import openapi_document
from floworch_ext.hooks import HOOK_PATH
from floworch_server.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(90)

ORDER = {"order": "A-1", "items": [{"sku": "tea", "qty": 2}]}


def webhook_flow(**config: Any) -> tuple[list[dict], list]:
    return (
        [
            {"id": "hook", "type": "trigger.webhook", "config": config},
            {"id": "echo", "type": "transform", "config": {"output": {"order": "{{ input.order }}"}}},
        ],
        [("hook", "echo")],
    )


def body_of(value: Any) -> bytes:
    return json.dumps(value).encode()


# ---------------------------------------------------------------------- server and client
@pytest.fixture
def jp_server_config():
    return Config({"ServerApp": {"jpserver_extensions": {"floworch_ext": True}}})


class Hooks:
    """Posts to the hook route as an outside system would, and checks each answer against openapi.json."""

    def __init__(self, client: httpx.AsyncClient, base_url: str) -> None:
        self.client = client
        self.base_url = base_url
        document = openapi_document(base_url)
        self.responses = document["paths"][HOOK_PATH]["post"]["responses"]
        self.registry = Registry().with_resource(
            "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
        )

    def url(self, hook_id: str) -> str:
        return f"{self.base_url}floworch/hooks/{hook_id}"

    async def post(self, hook_id: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.check(await self.client.post(self.url(hook_id), content=body, headers=headers or {}))

    def check(self, response: httpx.Response) -> httpx.Response:
        code = str(response.status_code)
        assert code in self.responses, f"the hook answered {code}, which openapi.json does not list: {response.text}"
        content = self.responses[code].get("content")
        if content is None:
            assert response.content == b"", f"{code} must be bare, got {response.content!r}"
            return response
        assert response.headers["Content-Type"].startswith("application/json")
        where = (
            f"urn:openapi#/paths/{HOOK_PATH.replace('/', '~1')}/post/responses/{code}/content/application~1json/schema"
        )
        validator = jsonschema.Draft202012Validator({"$ref": where}, registry=self.registry)
        error = jsonschema.exceptions.best_match(validator.iter_errors(response.json()))
        assert error is None, f"{code} does not match openapi.json: {error.message}"
        return response


@pytest.fixture
async def hooks(jp_fetch, jp_http_port, jp_base_url):
    # jp_fetch starts the server (and adds the token to what it sends); the hook calls go through
    # httpx, with no token, no cookie, and as many connections at once as a test opens.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp_http_port}", timeout=30) as client:
        yield Hooks(client, jp_base_url)


@pytest.fixture
def webhook(published, service):
    """``flow, hook = await webhook(**trigger_config)``: a published webhook flow and its hook."""

    async def make(**config: Any) -> tuple[str, dict]:
        flow = await published(*webhook_flow(**config))
        [hook] = service.webhooks(flow)
        return flow, hook

    return make


async def runs_of(service, flow: str) -> list[dict]:
    return await service.list_runs(workflow_id=flow)


# ---------------------------------------------------------------------- a delivery starts a run
async def test_a_signed_json_request_starts_a_run_with_the_body_as_its_input(hooks, published, service, jp_fetch):
    flow = await published(*webhook_flow())
    # The owner reads the hook's path and secret through the authenticated API.
    listed = await jp_fetch("floworch", "api", "workflows", flow, "webhooks")
    [hook] = json.loads(listed.body)
    body = body_of(ORDER)

    response = hooks.check(await hooks.client.post(hook["path"], content=body, headers=sign(hook["secret"], body)))
    assert response.status_code == 202
    run = await finished(service, response.json()["run_id"])
    assert (run["status"], run["trigger"], run["version"], run["workflow_id"]) == ("success", "webhook", "1", flow)
    assert run["input"] == ORDER
    assert run["result"]["outputs"] == {"echo": {"order": "A-1"}}


async def test_a_body_that_is_not_json_or_does_not_match_the_input_schema_is_400(hooks, webhook, service):
    flow, hook = await webhook(
        input_schema={"type": "object", "required": ["order"], "properties": {"order": {"type": "string"}}}
    )
    broken = b'{"order": '
    not_json = await hooks.post(hook["hook_id"], broken, sign(hook["secret"], broken))
    assert not_json.status_code == 400 and not_json.json()["field"] == "body"
    wrong = body_of({"order": 42})
    mismatch = await hooks.post(hook["hook_id"], wrong, sign(hook["secret"], wrong))
    assert mismatch.status_code == 400 and mismatch.json()["field"] == "input.order"
    assert await runs_of(service, flow) == []


# ---------------------------------------------------------------------- only the hook's secret, only now
async def test_requests_not_signed_now_with_the_hooks_secret_are_a_bare_401(hooks, webhook, service):
    flow, hook = await webhook()
    secret, hook_id = hook["secret"], hook["hook_id"]
    body = body_of(ORDER)
    now = int(time.time())
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 0x01

    attempts = {
        "no signature": {"Content-Type": "application/json"},
        "signed with another secret": sign("whsec_not-the-secret", body),
        "a garbled signature": {**sign(secret, body), SIGNATURE_HEADER: "v1=" + "0" * 64},
        "signed over other bytes": sign(secret, bytes(flipped)),
        "signed 6 minutes ago": sign(secret, body, timestamp=now - 360),
        "signed 6 minutes ahead": sign(secret, body, timestamp=now + 360),
        "a timestamp that is not the signed one": {**sign(secret, body, timestamp=now), TIMESTAMP_HEADER: str(now - 1)},
        "a timestamp that is not a number": {**sign(secret, body), TIMESTAMP_HEADER: "yesterday"},
    }
    for what, headers in attempts.items():
        response = await hooks.post(hook_id, body, headers)
        assert (response.status_code, response.content) == (401, b""), what

    tampered = await hooks.post(hook_id, bytes(flipped), sign(secret, body))
    assert (tampered.status_code, tampered.content) == (401, b""), "one flipped byte in the body"
    assert await runs_of(service, flow) == []


async def test_another_hooks_secret_does_not_open_this_hook(hooks, webhook, service):
    flow, hook = await webhook()
    _, other = await webhook()
    body = body_of(ORDER)
    response = await hooks.post(hook["hook_id"], body, sign(other["secret"], body))
    assert (response.status_code, response.content) == (401, b"")
    assert (await hooks.post(other["hook_id"], body, sign(other["secret"], body))).status_code == 202
    assert await runs_of(service, flow) == []


async def test_the_timestamp_may_be_a_little_off(hooks, webhook):
    _, hook = await webhook()
    body = body_of(ORDER)
    for skew in (-240, 240):  # inside the 5 minute tolerance: clocks of senders drift
        response = await hooks.post(
            hook["hook_id"], body, sign(hook["secret"], body, timestamp=int(time.time()) + skew)
        )
        assert response.status_code == 202, skew


# ---------------------------------------------------------------------- one delivery, one run
async def test_a_replayed_request_is_the_same_run_and_starts_no_second(hooks, webhook, service):
    flow, hook = await webhook()
    body = body_of(ORDER)
    headers = sign(hook["secret"], body)
    first = await hooks.post(hook["hook_id"], body, headers)
    await finished(service, first.json()["run_id"])
    again = await hooks.post(hook["hook_id"], body, headers)  # after the run ended, too
    assert first.status_code == again.status_code == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert [r["run_id"] for r in await runs_of(service, flow)] == [first.json()["run_id"]]


async def test_a_repeated_idempotency_key_is_the_same_run_whatever_the_body_and_timestamp(hooks, webhook, service):
    flow, hook = await webhook()
    now = int(time.time())
    first_body, retry_body = body_of(ORDER), body_of({**ORDER, "retry": 1})
    first = await hooks.post(
        hook["hook_id"], first_body, {**sign(hook["secret"], first_body, now), "Idempotency-Key": "delivery-1"}
    )
    retry = await hooks.post(
        hook["hook_id"], retry_body, {**sign(hook["secret"], retry_body, now + 30), "Idempotency-Key": "delivery-1"}
    )
    assert first.status_code == retry.status_code == 202
    assert retry.json()["run_id"] == first.json()["run_id"]
    assert (await finished(service, first.json()["run_id"]))["input"] == ORDER  # the first delivery's

    other = await hooks.post(
        hook["hook_id"], first_body, {**sign(hook["secret"], first_body, now), "Idempotency-Key": "delivery-2"}
    )
    assert other.status_code == 202 and other.json()["run_id"] != first.json()["run_id"]
    await finished(service, other.json()["run_id"])
    assert len(await runs_of(service, flow)) == 2


async def test_a_storm_of_identical_deliveries_starts_exactly_one_run(hooks, webhook, service):
    flow, hook = await webhook()
    body = body_of(ORDER)
    headers = sign(hook["secret"], body)
    responses = await asyncio.gather(*(hooks.post(hook["hook_id"], body, headers) for _ in range(50)))
    assert {r.status_code for r in responses} == {202}
    run_ids = {r.json()["run_id"] for r in responses}
    assert len(run_ids) == 1
    await finished(service, run_ids.pop())
    assert len(await runs_of(service, flow)) == 1


# ---------------------------------------------------------------------- what the hook refuses
async def test_a_signed_request_that_is_not_json_is_415(hooks, webhook, service):
    flow, hook = await webhook()
    body = b"order=A-1"
    response = await hooks.post(hook["hook_id"], body, {**sign(hook["secret"], body), "Content-Type": "text/plain"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert await runs_of(service, flow) == []


async def test_a_body_over_the_hooks_limit_is_413_before_its_signature_is_looked_at(hooks, webhook, service):
    flow, hook = await webhook(max_body_bytes=64)
    body = body_of({"order": "A-1", "note": "x" * 100})
    signed = await hooks.post(hook["hook_id"], body, sign(hook["secret"], body))
    assert signed.status_code == 413
    unsigned = await hooks.post(hook["hook_id"], body, {"Content-Type": "application/json"})
    assert unsigned.status_code == 413

    async def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(10):
            yield b" " * 16

    streamed = hooks.check(
        await hooks.client.post(hooks.url(hook["hook_id"]), content=chunks(), headers=sign(hook["secret"], b""))
    )
    assert streamed.status_code == 413
    assert await runs_of(service, flow) == []

    small = body_of({"order": "A-1"})
    assert (await hooks.post(hook["hook_id"], small, sign(hook["secret"], small))).status_code == 202


async def test_a_declared_oversized_body_is_refused_without_waiting_for_it(
    webhook, jp_fetch, jp_http_port, jp_base_url
):
    _, hook = await webhook(max_body_bytes=1024)
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    try:
        # Headers only: the 10 MB the request announces are never sent.
        writer.write(
            f"POST {jp_base_url}floworch/hooks/{hook['hook_id']} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {10 * 1024 * 1024}\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")


async def test_an_unknown_hook_is_a_bare_404_and_other_methods_are_405(hooks, webhook):
    _, hook = await webhook()
    body = body_of(ORDER)
    unknown = await hooks.post("no-such-hook", body, sign(hook["secret"], body))
    assert (unknown.status_code, unknown.content) == (404, b"")

    fetched = await hooks.client.get(hooks.url(hook["hook_id"]))
    assert (fetched.status_code, fetched.content, fetched.headers["Allow"]) == (405, b"", "POST")
    assert (await hooks.client.put(hooks.url(hook["hook_id"]), content=body)).status_code == 405


# ---------------------------------------------------------------------- publishing and unpublishing
async def test_the_hook_and_its_secret_stay_the_same_across_a_republish(hooks, webhook, service):
    flow, hook = await webhook()
    doc = service.get_workflow(flow)["document"]
    doc["nodes"][1]["config"]["output"] = {"order": "v2 {{ input.order }}"}
    service.save_draft(flow, doc, by="tester")
    await service.publish(flow, by="tester")
    assert service.webhooks(flow) == [hook]

    body = body_of(ORDER)
    response = await hooks.post(hook["hook_id"], body, sign(hook["secret"], body))
    assert response.status_code == 202
    run = await finished(service, response.json()["run_id"])
    assert run["version"] == "2" and run["result"]["outputs"] == {"echo": {"order": "v2 A-1"}}


async def test_after_unpublish_the_hook_answers_404(hooks, webhook, service):
    flow, hook = await webhook()
    body = body_of(ORDER)
    await service.unpublish(flow, by="tester")
    response = await hooks.post(hook["hook_id"], body, sign(hook["secret"], body))
    assert (response.status_code, response.content) == (404, b"")
    assert await runs_of(service, flow) == []


async def test_the_hook_answers_503_while_the_services_cannot_be_reached(hooks, webhook, jp_serverapp, monkeypatch):
    _, hook = await webhook()

    class Unreachable:
        async def service(self):
            raise TimeoutError("Temporal at 127.0.0.1:1 not healthy after 30 s")

    monkeypatch.setitem(jp_serverapp.web_app.settings, "floworch", Unreachable())
    body = body_of(ORDER)
    response = await hooks.post(hook["hook_id"], body, sign(hook["secret"], body))
    assert response.status_code == 503
    assert "Temporal" not in response.text  # the reason is for the server log, not for the caller
