"""SaaS actions (Slack, HubSpot, Gmail, QuickBooks) against a local stand-in of each provider's
API: what they send (method, path, bearer token of the integration, body), how the answer
becomes the output, and how provider errors, rate limits and outages end or retry the node.

The worker learns the API's address from the integration's settings.base_url, as it would a
sandbox's. Flows run end to end on the session's Temporal; a few edge cases call the executor
with a stand-in context."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import threading
import uuid
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from temporalio.exceptions import ApplicationError

from conftest import finished, flow_doc, nodes_by_id
from floworch_server import connectors, nodes
from floworch_server.integrations import Integrations
from floworch_server.nodes.saas import HUBSPOT
from floworch_server.nodes.spec import NodeError
from floworch_server.settings import Settings
from floworch_server.validate import validate_data

TRIGGER = {"id": "start", "type": "trigger.manual"}


class FakeAPI:
    """A provider's API on 127.0.0.1: answers from a script (the last answer repeats) and
    records every request it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._script: list[tuple[int, Any, dict[str, str]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                url = urlsplit(self.path)
                api.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": dict(parse_qsl(url.query)),
                        "auth": self.headers.get("Authorization"),
                        "content_type": self.headers.get("Content-Type"),
                        "body": json.loads(raw) if raw else None,
                    }
                )
                status, body, headers = api._script[min(len(api.requests), len(api._script)) - 1]
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, status: int, body: Any, **headers: str) -> FakeAPI:
        self._script.append((status, body, {k.replace("_", "-"): v for k, v in headers.items()}))
        return self

    def __enter__(self) -> FakeAPI:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def api():
    with FakeAPI() as server:
        yield server


@pytest.fixture
def integration(service):
    """Stores an integration whose API is the local server; returns (name, token)."""

    def add(provider: str, base_url: str, **settings: Any) -> tuple[str, str]:
        name, token = f"{provider}-{uuid.uuid4().hex[:6]}", f"tok-{uuid.uuid4().hex[:10]}"
        store = Integrations.from_settings(Settings.from_env(), store=service.store)
        store.add(name, provider, {"access_token": token}, by="t", settings={"base_url": base_url, **settings})
        return name, token

    return add


def action(node_type: str, **config: Any) -> dict:
    # Quick retries keep the 5xx cases short; the node's own defaults are tested by the docs.
    return {
        "id": "call",
        "type": node_type,
        "config": config,
        "policy": {"retry": {"initial_interval_seconds": 0.2, "backoff": 1}},
    }


async def run_node(service, published, node: dict, input: Any = None) -> tuple[dict, dict]:
    flow = await published([TRIGGER, node], [("start", "call")])
    run = await finished(service, (await service.start_run(flow, input=input, by="t"))["run_id"])
    return run, nodes_by_id(run)["call"]


class FakeContext:
    """What an executor gets from the activity, without Temporal."""

    def __init__(self) -> None:
        self.run_id, self.node_id, self.node_type, self.attempt = "run-1", "call", "", 1
        self.idempotency_key = "run-1:call"
        self.provider_calls = 0  # ratelimit.provider_turn counts them
        self.heartbeats = 0
        self.logs: list[tuple[str, str]] = []

    def heartbeat(self, *details: Any) -> None:
        self.heartbeats += 1

    def log(self, level: str, message: str, **extra: Any) -> None:
        self.logs.append((level, message))


async def execute(node_type: str, config: dict) -> tuple[Any, FakeContext]:
    ctx = FakeContext()
    run = nodes.require(node_type).execute
    assert run is not None, f"{node_type} is not an activity"
    return await run(ctx, config, {}), ctx


# ------------------------------------------------------------------ Slack
SLACK_OK = {"ok": True, "channel": "C024BE91L", "ts": "1503435956.000247", "message": {"text": "Build 7 passed"}}


async def test_a_message_is_posted_and_its_channel_and_ts_are_the_output_against_a_local_slack_api(
    service, published, api, integration
):
    api.answer(200, SLACK_OK)
    name, token = integration("slack", api.url + "/api")
    node = action(
        "action.slack",
        integration=name,
        channel="#builds",
        text="Build {{ input.build }} passed",
        thread_ts="1503435900.000100",
    )
    run, _call = await run_node(service, published, node, input={"build": 7})
    assert run["status"] == "success"
    assert run["result"]["outputs"]["call"] == {"ok": True, "channel": "C024BE91L", "ts": "1503435956.000247"}
    [sent] = api.requests
    assert (sent["method"], sent["path"], sent["auth"]) == ("POST", "/api/chat.postMessage", f"Bearer {token}")
    assert sent["content_type"].startswith("application/json")
    assert sent["body"] == {"channel": "#builds", "text": "Build 7 passed", "thread_ts": "1503435900.000100"}
    # The token is read by the activity: it is nowhere in what Temporal or the store keep.
    assert token not in json.dumps(run, default=str)
    assert token not in json.dumps(service.store.list_logs(run["run_id"]), default=str)


async def test_ok_false_fails_the_node_at_once_with_slacks_error_against_a_local_slack_api(
    service, published, api, integration
):
    # Slack answers errors with HTTP 200 and {"ok": false}.
    api.answer(200, {"ok": False, "error": "channel_not_found"})
    name, _ = integration("slack", api.url + "/api")
    run, call = await run_node(
        service, published, action("action.slack", integration=name, channel="C0NOPE", text="hi")
    )
    assert (run["status"], call["status"], call["attempts"]) == ("failed", "failed", 1)
    assert "Slack rejected POST /api/chat.postMessage (HTTP 200 with an error body): channel_not_found" in call["error"]
    assert "check config.channel" in call["error"]
    assert len(api.requests) == 1


async def test_a_revoked_token_is_refused_naming_the_integration_against_a_local_slack_api(api, integration):
    api.answer(200, {"ok": False, "error": "token_revoked"})
    name, _ = integration("slack", api.url + "/api")
    with pytest.raises(NodeError) as failure:
        await execute("action.slack", {"integration": name, "channel": "C1", "text": "hi"})
    assert not failure.value.retryable and failure.value.kind == "IntegrationRefused"
    assert str(failure.value).startswith(f"integration '{name}' was refused by Slack: token_revoked")
    assert f"fo.integrations.add('{name}', 'slack', access_token='...')" in str(failure.value)


async def test_a_429_is_waited_out_within_one_attempt_against_a_local_slack_api(service, published, api, integration):
    api.answer(429, {"ok": False, "error": "ratelimited"}, Retry_After="1").answer(200, SLACK_OK)
    name, _ = integration("slack", api.url + "/api")
    run, call = await run_node(service, published, action("action.slack", integration=name, channel="C1", text="hi"))
    assert (run["status"], call["attempts"]) == ("success", 1)
    assert [r["body"] for r in api.requests] == [{"channel": "C1", "text": "hi"}] * 2
    logs = [(entry["level"], entry["message"]) for entry in service.store.list_logs(run["run_id"])]
    assert ("warning", "rate limited by Slack on POST /api/chat.postMessage; waiting 1s as it asked") in logs


async def test_a_5xx_is_retried_against_a_local_slack_api(service, published, api, integration):
    api.answer(503, {"ok": False, "error": "service_unavailable"}).answer(200, SLACK_OK)
    name, _ = integration("slack", api.url + "/api")
    run, call = await run_node(service, published, action("action.slack", integration=name, channel="C1", text="hi"))
    assert (run["status"], call["attempts"], len(api.requests)) == ("success", 2, 2)


# ------------------------------------------------------------------ HubSpot
def hubspot_contact(contact_id: str, **properties: Any) -> dict:
    return {"id": contact_id, "properties": {"hs_object_id": contact_id, **properties}, "archived": False}


async def test_a_new_contact_is_created_against_a_local_hubspot_api(service, published, api, integration):
    api.answer(201, hubspot_contact("512", email="ada@example.com", firstname="Ada"))
    name, token = integration("hubspot", api.url)
    node = action(
        "action.hubspot",
        integration=name,
        email="{{ input.email }}",
        properties={"firstname": "Ada", "lifecyclestage": "lead"},
    )
    run, _ = await run_node(service, published, node, input={"email": "ada@example.com"})
    assert run["result"]["outputs"]["call"] == {
        "id": "512",
        "created": True,
        "properties": {"hs_object_id": "512", "email": "ada@example.com", "firstname": "Ada"},
    }
    [sent] = api.requests
    assert (sent["method"], sent["path"], sent["auth"]) == ("POST", "/crm/v3/objects/contacts", f"Bearer {token}")
    assert sent["body"] == {"properties": {"firstname": "Ada", "lifecyclestage": "lead", "email": "ada@example.com"}}


async def test_an_existing_email_updates_that_contact_against_a_local_hubspot_api(service, published, api, integration):
    conflict = {"status": "error", "message": "Contact already exists. Existing ID: 512", "category": "CONFLICT"}
    api.answer(409, conflict).answer(200, hubspot_contact("512", email="ada@example.com", firstname="Ada L."))
    name, token = integration("hubspot", api.url)
    node = action("action.hubspot", integration=name, email="ada@example.com", properties={"firstname": "Ada L."})
    run, call = await run_node(service, published, node)
    assert (run["status"], call["attempts"]) == ("success", 1)
    assert run["result"]["outputs"]["call"]["id"] == "512" and run["result"]["outputs"]["call"]["created"] is False
    create, update = api.requests
    assert (create["method"], create["path"]) == ("POST", "/crm/v3/objects/contacts")
    assert (update["method"], update["path"], update["query"], update["auth"]) == (
        "PATCH",
        "/crm/v3/objects/contacts/ada@example.com",
        {"idProperty": "email"},
        f"Bearer {token}",
    )
    assert update["body"] == {"properties": {"firstname": "Ada L.", "email": "ada@example.com"}}


async def test_an_invalid_property_fails_at_once_with_hubspots_message_against_a_local_hubspot_api(
    service, published, api, integration
):
    api.answer(
        400,
        {
            "status": "error",
            "message": "Property values were not valid: lifecyclestage 'sometimes' is not a valid option",
            "category": "VALIDATION_ERROR",
        },
    )
    name, _ = integration("hubspot", api.url)
    run, call = await run_node(
        service,
        published,
        action("action.hubspot", integration=name, email="ada@example.com", properties={"lifecyclestage": "sometimes"}),
    )
    assert (run["status"], call["attempts"]) == ("failed", 1)
    assert (
        "HubSpot rejected POST /crm/v3/objects/contacts (HTTP 400 Bad Request): Property values were not valid"
        in call["error"]
    )


async def test_a_429_is_waited_out_within_one_attempt_against_a_local_hubspot_api(service, published, api, integration):
    api.answer(
        429,
        {"status": "error", "message": "You have reached your secondly limit.", "category": "RATE_LIMITS"},
        Retry_After="1",
    )
    api.answer(201, hubspot_contact("77", email="bo@example.com"))
    name, _ = integration("hubspot", api.url)
    run, call = await run_node(service, published, action("action.hubspot", integration=name, email="bo@example.com"))
    assert (run["status"], call["attempts"], len(api.requests)) == ("success", 1, 2)
    assert run["result"]["outputs"]["call"]["id"] == "77"


async def test_a_long_retry_after_is_left_to_temporal_as_the_next_retry_delay_against_a_local_hubspot_api(
    api, integration
):
    api.answer(
        429,
        {"status": "error", "message": "You have reached your daily limit.", "category": "RATE_LIMITS"},
        Retry_After="120",
    )
    name, _ = integration("hubspot", api.url)
    # Through the node's real activity, which turns the node's error into Temporal's failure.
    from temporalio.testing import ActivityEnvironment

    from floworch_server.activities import activity_functions
    from floworch_server.messages import NodeCall

    [hubspot] = [fn for fn in activity_functions() if fn.__temporal_activity_definition.name == "action.hubspot"]
    call = NodeCall(
        "run-1", "contact", "action.hubspot", {"integration": name, "email": "bo@example.com"}, {}, "run-1:contact"
    )
    with pytest.raises(ApplicationError) as failure:
        await ActivityEnvironment().run(hubspot, call)
    assert (failure.value.type, failure.value.non_retryable, failure.value.next_retry_delay) == (
        "RateLimited",
        False,
        timedelta(seconds=120),
    )
    assert "You have reached your daily limit.; next attempt in 120s" in str(failure.value)
    assert len(api.requests) == 1


async def test_a_5xx_is_retried_against_a_local_hubspot_api(service, published, api, integration):
    api.answer(502, {"status": "error", "message": "Bad gateway"}).answer(
        201, hubspot_contact("9", email="c@example.com")
    )
    name, _ = integration("hubspot", api.url)
    run, call = await run_node(service, published, action("action.hubspot", integration=name, email="c@example.com"))
    assert (run["status"], call["attempts"], len(api.requests)) == ("success", 2, 2)


async def test_a_list_call_follows_the_cursor_against_a_local_hubspot_api(api, integration):
    api.answer(200, {"results": [{"id": "1"}, {"id": "2"}], "paging": {"next": {"after": "2"}}}).answer(
        200, {"results": [{"id": "3"}]}
    )
    name, token = integration("hubspot", api.url)
    found = [
        item["id"]
        async for item in connectors.items(FakeContext(), HUBSPOT, name, "/crm/v3/objects/contacts", key="results")
    ]
    assert found == ["1", "2", "3"]
    assert [(r["method"], r["query"], r["auth"]) for r in api.requests] == [
        ("GET", {"limit": "100"}, f"Bearer {token}"),
        ("GET", {"limit": "100", "after": "2"}, f"Bearer {token}"),
    ]


# ------------------------------------------------------------------ Gmail
def sent_email(request: dict) -> email.message.EmailMessage:
    return email.message_from_bytes(base64.urlsafe_b64decode(request["body"]["raw"]), policy=email.policy.default)


async def test_an_email_is_sent_as_a_base64url_rfc822_message_against_a_local_gmail_api(
    service, published, api, integration
):
    api.answer(200, {"id": "18c0f1", "threadId": "18c0f0", "labelIds": ["SENT"]})
    name, token = integration("gmail", api.url)
    node = action(
        "action.gmail",
        integration=name,
        to=["ada@example.com", "bo@example.com"],
        cc="ops@example.com",
        subject="Invoice {{ input.n }}",
        text="Hello Ada",
        html="<p>Hello <b>Ada</b></p>",
    )
    run, _ = await run_node(service, published, node, input={"n": 42})
    assert run["result"]["outputs"]["call"] == {"id": "18c0f1", "threadId": "18c0f0"}
    [sent] = api.requests
    assert (sent["method"], sent["path"], sent["auth"]) == (
        "POST",
        "/gmail/v1/users/me/messages/send",
        f"Bearer {token}",
    )
    message = sent_email(sent)
    assert (message["To"], message["Cc"], message["Subject"]) == (
        "ada@example.com, bo@example.com",
        "ops@example.com",
        "Invoice 42",
    )
    assert message.get_body(("plain",)).get_content().strip() == "Hello Ada"
    assert message.get_body(("html",)).get_content().strip() == "<p>Hello <b>Ada</b></p>"


async def test_a_bad_recipient_fails_at_once_with_googles_message_against_a_local_gmail_api(
    service, published, api, integration
):
    api.answer(
        400,
        {
            "error": {
                "code": 400,
                "message": "Invalid To header",
                "errors": [{"reason": "invalidArgument"}],
                "status": "INVALID_ARGUMENT",
            }
        },
    )
    name, _ = integration("gmail", api.url)
    run, call = await run_node(
        service, published, action("action.gmail", integration=name, to="not-an-address", subject="s", text="t")
    )
    assert (run["status"], call["attempts"]) == ("failed", 1)
    assert (
        "Gmail rejected POST /gmail/v1/users/me/messages/send (HTTP 400 Bad Request): Invalid To header - check config.to"
        in call["error"]
    )


async def test_a_429_is_waited_out_within_one_attempt_against_a_local_gmail_api(service, published, api, integration):
    api.answer(
        429, {"error": {"code": 429, "message": "Too many concurrent requests for user"}}, Retry_After="1"
    ).answer(200, {"id": "a", "threadId": "b"})
    name, _ = integration("gmail", api.url)
    run, call = await run_node(
        service, published, action("action.gmail", integration=name, to="ada@example.com", subject="s", html="<p>t</p>")
    )
    assert (run["status"], call["attempts"], len(api.requests)) == ("success", 1, 2)
    assert api.requests[0]["body"] == api.requests[1]["body"]


async def test_a_403_rate_limit_is_retried_not_refused_against_a_local_gmail_api(api, integration):
    # Google reports some rate limits as 403: that is a pause, not a refused credential.
    api.answer(
        403,
        {
            "error": {
                "code": 403,
                "message": "User-rate limit exceeded",
                "errors": [{"reason": "userRateLimitExceeded"}],
            }
        },
    )
    name, _ = integration("gmail", api.url)
    with pytest.raises(NodeError) as failure:
        await execute("action.gmail", {"integration": name, "to": "ada@example.com", "subject": "s", "text": "t"})
    assert (failure.value.retryable, failure.value.kind) == (True, "RateLimited")
    assert "User-rate limit exceeded" in str(failure.value)


async def test_a_5xx_is_retried_against_a_local_gmail_api(service, published, api, integration):
    api.answer(500, {"error": {"code": 500, "message": "Backend Error"}}).answer(200, {"id": "a", "threadId": "b"})
    name, _ = integration("gmail", api.url)
    run, call = await run_node(
        service, published, action("action.gmail", integration=name, to="ada@example.com", subject="s", text="t")
    )
    assert (run["status"], call["attempts"], len(api.requests)) == ("success", 2, 2)


# ------------------------------------------------------------------ QuickBooks
QB_INVOICE = {
    "Invoice": {"Id": "130", "DocNumber": "1037", "TotalAmt": 362.07, "CustomerRef": {"value": "58"}},
    "time": "2026-01-01T10:00:00-08:00",
}
QB_LINES = [
    {"amount": 350.0, "item_id": "7", "description": "Rock Fountain", "quantity": 1, "unit_price": 350.0},
    {"amount": 12.07, "item_id": 11},
]


async def test_an_invoice_is_created_in_the_integrations_company_against_a_local_quickbooks_api(
    service, published, api, integration
):
    api.answer(200, QB_INVOICE)
    name, token = integration("quickbooks", api.url, realm_id="9130350")
    run, _ = await run_node(
        service,
        published,
        action("action.quickbooks", integration=name, customer_id="58", lines=QB_LINES, due_date="2026-02-01"),
    )
    assert run["result"]["outputs"]["call"] == {"id": "130", "doc_number": "1037", "total": 362.07}
    [sent] = api.requests
    assert (sent["method"], sent["path"], sent["auth"]) == ("POST", "/v3/company/9130350/invoice", f"Bearer {token}")
    # Intuit's idempotency key: the node's, or a UUID derived from it when longer than 50 characters.
    key = f"{run['run_id']}:call"
    assert sent["query"] == {"requestid": key if len(key) <= 50 else str(uuid.uuid5(uuid.NAMESPACE_URL, key))}
    assert sent["body"] == {
        "CustomerRef": {"value": "58"},
        "DueDate": "2026-02-01",
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": 350.0,
                "Description": "Rock Fountain",
                "SalesItemLineDetail": {"ItemRef": {"value": "7"}, "Qty": 1, "UnitPrice": 350.0},
            },
            {"DetailType": "SalesItemLineDetail", "Amount": 12.07, "SalesItemLineDetail": {"ItemRef": {"value": "11"}}},
        ],
    }


async def test_a_validation_fault_fails_at_once_with_its_message_and_detail_against_a_local_quickbooks_api(
    service, published, api, integration
):
    fault = {
        "Error": [
            {
                "Message": "Invalid Reference Id",
                "Detail": "Invalid Reference Id : Something you're trying to use has been made inactive.",
                "code": "2500",
            }
        ],
        "type": "ValidationFault",
    }
    api.answer(400, {"Fault": fault, "time": "2026-01-01T10:00:00-08:00"})
    name, _ = integration("quickbooks", api.url, realm_id="1")
    run, call = await run_node(
        service, published, action("action.quickbooks", integration=name, customer_id="999", lines=QB_LINES)
    )
    assert (run["status"], call["attempts"]) == ("failed", 1)
    assert (
        "QuickBooks rejected POST /v3/company/1/invoice (HTTP 400 Bad Request): Invalid Reference Id: Invalid Reference Id : Something"
        in call["error"]
    )
    assert "check config.customer_id and each line's item_id" in call["error"]


async def test_an_expired_token_is_refused_naming_the_integration_against_a_local_quickbooks_api(api, integration):
    # Intuit's authentication faults come in lower case.
    api.answer(
        401,
        {
            "fault": {
                "error": [
                    {
                        "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                        "detail": "Token expired",
                        "code": "3200",
                    }
                ],
                "type": "AUTHENTICATION",
            }
        },
    )
    name, _ = integration("quickbooks", api.url, realm_id="1")
    with pytest.raises(NodeError) as failure:
        await execute("action.quickbooks", {"integration": name, "customer_id": 1, "lines": QB_LINES})
    assert not failure.value.retryable
    assert str(failure.value).startswith(
        f"integration '{name}' was refused by QuickBooks: message=AuthenticationFailed; errorCode=003200; statusCode=401: Token expired"
    )


async def test_a_429_is_waited_out_with_the_same_request_id_against_a_local_quickbooks_api(
    service, published, api, integration
):
    api.answer(
        429,
        {"Fault": {"Error": [{"Message": "Too many requests", "code": "003001"}], "type": "ThrottleExceeded"}},
        Retry_After="1",
    ).answer(200, QB_INVOICE)
    name, _ = integration("quickbooks", api.url, realm_id="1")
    run, call = await run_node(
        service, published, action("action.quickbooks", integration=name, customer_id="58", lines=QB_LINES)
    )
    assert (run["status"], call["attempts"], len(api.requests)) == ("success", 1, 2)
    assert api.requests[0]["query"] == api.requests[1]["query"] and api.requests[0]["body"] == api.requests[1]["body"]


async def test_a_5xx_is_retried_with_the_same_request_id_against_a_local_quickbooks_api(
    service, published, api, integration
):
    # The same requestid on every attempt: Intuit answers a repeat with the first invoice, not a second one.
    api.answer(503, {"Fault": {"Error": [{"Message": "Service unavailable"}], "type": "SystemFault"}}).answer(
        200, QB_INVOICE
    )
    name, _ = integration("quickbooks", api.url)
    node = action("action.quickbooks", integration=name, realm_id="4620816365", customer_id="58", lines=QB_LINES)
    run, call = await run_node(service, published, node)
    assert (run["status"], call["attempts"]) == ("success", 2)
    assert [r["path"] for r in api.requests] == ["/v3/company/4620816365/invoice"] * 2
    assert api.requests[0]["query"]["requestid"] == api.requests[1]["query"]["requestid"]


async def test_an_integration_without_a_company_fails_naming_realm_id_against_a_local_quickbooks_api(api, integration):
    name, _ = integration("quickbooks", api.url)
    with pytest.raises(NodeError) as failure:
        await execute("action.quickbooks", {"integration": name, "customer_id": 1, "lines": QB_LINES})
    assert not failure.value.retryable and str(failure.value).startswith("config.realm_id: no QuickBooks company id")
    assert api.requests == []


# ------------------------------------------------------------------ every action
VALID = {
    "action.slack": {"channel": "C1", "text": "hi"},
    "action.hubspot": {"email": "ada@example.com"},
    "action.gmail": {"to": "ada@example.com", "subject": "s", "text": "t"},
    "action.quickbooks": {"realm_id": "1", "customer_id": "58", "lines": QB_LINES},
}
PROVIDERS = {
    "action.slack": "slack",
    "action.hubspot": "hubspot",
    "action.gmail": "gmail",
    "action.quickbooks": "quickbooks",
}


@pytest.mark.parametrize("node_type", list(VALID))
async def test_a_missing_integration_fails_at_once_naming_it_and_how_to_add_one(service, node_type):
    name = f"nowhere-{uuid.uuid4().hex[:6]}"
    with pytest.raises(NodeError) as failure:
        await execute(node_type, {"integration": name, **VALID[node_type]})
    assert (failure.value.retryable, failure.value.kind) == (False, "IntegrationMissing")
    message = str(failure.value)
    assert message.startswith(f"config.integration: no integration named '{name}' is stored")
    assert f"add it with fo.integrations.add('{name}', '{PROVIDERS[node_type]}', access_token='...')" in message


async def test_a_missing_integration_fails_the_run_without_retries(service, published):
    run, call = await run_node(
        service, published, action("action.slack", integration="nowhere", channel="C1", text="hi")
    )
    assert (run["status"], call["attempts"]) == ("failed", 1)
    assert (
        "no integration named 'nowhere'" in call["error"] and "fo.integrations.add('nowhere', 'slack'" in call["error"]
    )


async def test_an_integration_of_another_provider_is_refused(api, integration):
    name, _ = integration("hubspot", api.url)
    with pytest.raises(NodeError) as failure:
        await execute("action.slack", {"integration": name, "channel": "C1", "text": "hi"})
    assert not failure.value.retryable and f"integration '{name}' is for hubspot, not slack" in str(failure.value)
    assert api.requests == []


def config_problems(node_type: str, config: dict) -> list[tuple[str | None, str]]:
    doc = flow_doc([TRIGGER, {"id": "call", "type": node_type, "config": config}], [("start", "call")])
    return [(p.field, p.message) for p in validate_data(doc) if p.node == "call"]


@pytest.mark.parametrize(
    "node_type, config, field",
    [
        ("action.slack", {"integration": "s", "channel": 42, "text": "hi"}, "config.channel"),
        (
            "action.hubspot",
            {"integration": "h", "email": "ada@example.com", "properties": {"address": {"city": "Oslo"}}},
            "config.properties.address",
        ),
        ("action.gmail", {"integration": "g", "to": [], "subject": "s", "text": "t"}, "config.to"),
        (
            "action.quickbooks",
            {"integration": "q", "customer_id": "58", "lines": [{"amount": "ten", "item_id": "7"}]},
            "config.lines[0].amount",
        ),
        (
            "action.quickbooks",
            {"integration": "q", "customer_id": "58", "lines": QB_LINES, "due_date": "1st of May"},
            "config.due_date",
        ),
    ],
)
def test_a_config_breaking_the_schema_is_a_validation_problem_at_its_field(node_type, config, field):
    assert [f for f, _ in config_problems(node_type, config)] == [field]


@pytest.mark.parametrize("node_type", list(VALID))
def test_the_config_names_an_integration_and_takes_no_token(node_type):
    assert config_problems(node_type, VALID[node_type]) == [("config", "'integration' is a required property")]
    [(field, message)] = config_problems(node_type, {"integration": "x", "access_token": "secret", **VALID[node_type]})
    assert field == "config" and "unknown config field(s): ('access_token' was unexpected)" in message


def test_an_email_without_a_body_is_a_validation_problem():
    assert config_problems("action.gmail", {"integration": "g", "to": "ada@example.com", "subject": "s"}) == [
        ("config.text", "the email has no body")
    ]
