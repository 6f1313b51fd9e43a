"""The REST API of the Jupyter server extension, on a real Jupyter server and the session's Temporal.

Every reply is checked against openapi.json (``support.rest.Api``): its status must be documented
for the route, and its body must match the documented schema. So these tests also keep the API
description true.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime
from typing import Any

import jsonschema
import pytest
from traitlets.config import Config

from conftest import flow_doc, wait_until
from floworch_ext import FlowOrch, needs_embedded_services
from floworch_ext.handlers import API_PREFIX, ROUTES
from floworch_ext.hooks import HOOK_PATH
from floworch_server.settings import Settings
from support.rest import Reply, api, create, jp_server_config, run_until, runtime, statuses  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.timeout(60)

TRIGGER = {"id": "start", "type": "trigger.manual"}
GREETING = [
    {
        **TRIGGER,
        "config": {
            "input_schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
        },
    },
    {"id": "greet", "type": "transform", "config": {"output": {"message": "Hello, {{ input.name }}!"}}},
]
APPROVAL = [
    TRIGGER,
    {"id": "review", "type": "control.approval", "config": {"title": "Ship it?"}},
    {"id": "ship", "type": "transform", "config": {"output": "shipped"}},
]
DELAY = [TRIGGER, {"id": "wait", "type": "control.delay", "config": {"seconds": 30}}]
WEBHOOK = [
    {"id": "hook", "type": "trigger.webhook"},
    {"id": "echo", "type": "transform", "config": {"output": "{{ input.order }}"}},
]
CRON = [
    {"id": "tick", "type": "trigger.cron", "config": {"cron": "0 9 * * MON-FRI"}},
    {"id": "work", "type": "transform", "config": {"output": "tick"}},
]


def on_event(topic: str, output: str, schema: dict | None = None) -> list[dict]:
    config = {"topic": topic, **({"input_schema": schema} if schema else {})}
    return [
        {"id": "on", "type": "trigger.event", "config": config},
        {"id": "handle", "type": "transform", "config": {"output": output}},
    ]


def new_topic() -> str:
    # Topics are global: each test listens on its own, so flows of other tests never answer.
    return f"rest.{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------- auth
# Routes whose credential is in the request itself, not Jupyter's: spending a refresh token.
OWN_CREDENTIAL = {("post", API_PREFIX + "/auth/refresh")}


async def test_every_route_refuses_requests_without_the_token(api):
    for template, _ in ROUTES:
        for method in api.document["paths"][API_PREFIX + template]:
            if method == "parameters":
                continue
            if (method, API_PREFIX + template) in OWN_CREDENTIAL:
                continue
            path = {name: "x" for name in re.findall(r"\{(\w+)\}", template)}
            reply = await api(method.upper(), template, headers={"Authorization": ""}, **path)
            assert reply.code == 403, f"{method.upper()} {template} answered {reply.code} without a token"


# ---------------------------------------------------------------------- workflows
async def test_workflows_are_created_listed_read_and_saved(api):
    doc = flow_doc(GREETING, [("start", "greet")])
    created = await api.post("/workflows", {"name": "greeter", "document": doc})
    assert created.code == 201
    wid = created.json["id"]
    assert wid == doc["meta"]["id"] and created.json["name"] == "greeter" and created.json["created_by"] == "ada"
    assert created.json["version"] is None and created.json["draft_version"] == 1
    datetime.fromisoformat(created.json["created_at"])

    listed = await api.get("/workflows")
    assert wid in [w["id"] for w in listed.json]
    got = await api.get("/workflows/{workflow_id}", workflow_id=wid)
    assert got.json["document"]["nodes"][1]["config"]["output"] == {"message": "Hello, {{ input.name }}!"}

    doc["nodes"][1] = {**doc["nodes"][1], "config": {"output": "changed"}}
    saved = await api.put("/workflows/{workflow_id}", {"document": doc}, workflow_id=wid)
    assert saved.code == 200 and saved.json["draft_version"] == 2
    assert saved.json["document"]["nodes"][1]["config"]["output"] == "changed"

    assert (await api.post("/workflows", {"document": doc})).code == 409


async def test_workflow_requests_with_bad_bodies_are_400_naming_the_field(api):
    async def field_of(reply: Reply) -> str:
        assert reply.code == 400, reply.json
        return reply.json["field"]

    good = flow_doc(GREETING, [("start", "greet")])
    assert await field_of(await api.post("/workflows", "{not json")) == "body"
    assert await field_of(await api.post("/workflows", "[1, 2]")) == "body"
    assert await field_of(await api.post("/workflows", {})) == "document"
    assert await field_of(await api.post("/workflows", {"document": "a string"})) == "document"
    assert await field_of(await api.post("/workflows", {"document": good, "name": 7})) == "name"

    broken = await api.post("/workflows", {"document": {"version": 1, "nodes": [{"id": "a"}], "edges": []}})
    assert broken.json["field"] == "document" and broken.json["problems"]
    assert all("message" in p and "location" in p for p in broken.json["problems"])

    wid = await create(api, GREETING, [("start", "greet")], publish=False)
    other = {**good, "meta": {"id": "someone-else"}}
    assert (
        await field_of(await api.put("/workflows/{workflow_id}", {"document": other}, workflow_id=wid))
        == "document.meta.id"
    )
    assert await field_of(await api.put("/workflows/{workflow_id}", {"document": []}, workflow_id=wid)) == "document"


async def test_unknown_workflows_are_404(api):
    doc = flow_doc(GREETING, [("start", "greet")])
    for reply in [
        await api.get("/workflows/{workflow_id}", workflow_id="nope"),
        await api.put("/workflows/{workflow_id}", {"document": doc}, workflow_id="nope"),
        await api.post("/workflows/{workflow_id}/publish", workflow_id="nope"),
        await api.get("/workflows/{workflow_id}/versions", workflow_id="nope"),
        await api.post("/workflows/{workflow_id}/runs", {"version": "draft"}, workflow_id="nope"),
    ]:
        assert reply.code == 404 and "nope" in reply.json["error"]


# ---------------------------------------------------------------------- versions
async def test_publishing_pins_a_plan_as_the_next_version(api):
    wid = await create(api, GREETING, [("start", "greet")], publish=False)
    first = await api.post("/workflows/{workflow_id}/publish", {"note": "first"}, workflow_id=wid)
    assert first.code == 201
    assert first.json["version"] == 1 and first.json["note"] == "first" and first.json["created_by"] == "ada"
    assert len(first.json["plan_hash"]) == 64 and set(first.json["plan"]["nodes"]) == {"start", "greet"}
    second = await api.post("/workflows/{workflow_id}/publish", workflow_id=wid)
    assert second.json["version"] == 2 and second.json["plan_hash"] == first.json["plan_hash"]

    versions = await api.get("/workflows/{workflow_id}/versions", workflow_id=wid)
    assert [v["version"] for v in versions.json] == [2, 1]
    assert (await api.get("/workflows/{workflow_id}", workflow_id=wid)).json["version"] == 2

    bad_note = await api.post("/workflows/{workflow_id}/publish", {"note": ["x"]}, workflow_id=wid)
    assert bad_note.code == 400 and bad_note.json["field"] == "note"


async def test_publishing_an_invalid_flow_is_400_with_every_problem(api):
    wid = await create(
        api, [TRIGGER, {"id": "x", "type": "no.such.type"}], [("start", "x"), ("x", "ghost")], publish=False
    )
    reply = await api.post("/workflows/{workflow_id}/publish", workflow_id=wid)
    assert reply.code == 400
    nodes_and_edges = {(p.get("node"), p.get("edge")) for p in reply.json["problems"]}
    assert ("x", None) in nodes_and_edges and (None, "e1") in nodes_and_edges
    assert (await api.get("/workflows/{workflow_id}/versions", workflow_id=wid)).json == []


# ---------------------------------------------------------------------- runs
async def test_a_published_flow_runs_to_success_and_is_listed(api):
    wid = await create(api, GREETING, [("start", "greet")])
    started = await api.post("/workflows/{workflow_id}/runs", {"input": {"name": "Ada"}, "version": 1}, workflow_id=wid)
    assert started.code == 201
    run_id = started.json["run_id"]
    assert started.json["workflow_id"] == wid and started.json["version"] == "1"
    # The reply is the run as the store has it: a two-node run may already be over when the
    # background sync copies it from Temporal before the reply is written.
    assert started.json["status"] in ("running", "success")

    run = await run_until(api, run_id, lambda r: r["status"] == "success")
    assert statuses(run) == {"start": "success", "greet": "success"}
    assert run["result"] == {"outputs": {"greet": {"message": "Hello, Ada!"}}}
    assert datetime.fromisoformat(run["end_time"]) >= datetime.fromisoformat(run["start_time"])

    listed = await api.get("/runs", params={"workflow_id": wid})
    assert [(r["run_id"], r["status"]) for r in listed.json] == [(run_id, "success")]
    assert run_id in [r["run_id"] for r in (await api.get("/runs", params={"status": "success", "limit": "1000"})).json]
    assert (await api.get("/runs", params={"workflow_id": wid, "status": "failed"})).json == []


async def test_runs_start_from_any_version_or_the_draft_and_once_per_idempotency_key(api):
    wid = await create(api, GREETING, [("start", "greet")])
    draft = await api.post(
        "/workflows/{workflow_id}/runs", {"input": {"name": "D"}, "version": "draft"}, workflow_id=wid
    )
    latest = await api.post("/workflows/{workflow_id}/runs", {"input": {"name": "L"}, "version": None}, workflow_id=wid)
    by_text = await api.post("/workflows/{workflow_id}/runs", {"input": {"name": "T"}, "version": "1"}, workflow_id=wid)
    assert [r.json["version"] for r in (draft, latest, by_text)] == ["draft", "1", "1"]

    once = {"input": {"name": "Ada"}, "idempotency_key": "order-42"}
    first = await api.post("/workflows/{workflow_id}/runs", once, workflow_id=wid)
    again = await api.post("/workflows/{workflow_id}/runs", once, workflow_id=wid)
    assert first.code == again.code == 201 and first.json["run_id"] == again.json["run_id"]


async def test_starting_a_run_with_bad_requests_is_400_naming_the_field(api):
    unpublished = await create(api, GREETING, [("start", "greet")], publish=False)
    wid = await create(api, GREETING, [("start", "greet")])

    async def field_of(workflow_id: str, body: Any) -> str:
        reply = await api.post("/workflows/{workflow_id}/runs", body, workflow_id=workflow_id)
        assert reply.code == 400, reply.json
        return reply.json["field"]

    assert await field_of(unpublished, {"input": {"name": "Ada"}}) == "version"
    assert await field_of(wid, {"input": {}}) == "input"
    assert await field_of(wid, {"input": {"name": 5}}) == "input.name"
    assert await field_of(wid, {"input": {"name": "Ada"}, "version": True}) == "version"
    assert await field_of(wid, {"input": {"name": "Ada"}, "version": "latest"}) == "version"
    assert await field_of(wid, {"input": {"name": "Ada"}, "idempotency_key": 42}) == "idempotency_key"
    assert await field_of(wid, "{") == "body"
    missing = await api.post("/workflows/{workflow_id}/runs", {"input": {"name": "Ada"}, "version": 9}, workflow_id=wid)
    assert missing.code == 404


async def test_listing_runs_checks_its_query_and_unknown_runs_are_404(api):
    for params, field in [({"status": "bogus"}, "status"), ({"limit": "0"}, "limit"), ({"limit": "many"}, "limit")]:
        reply = await api.get("/runs", params=params)
        assert reply.code == 400 and reply.json["field"] == field
    assert (await api.get("/runs/{run_id}", run_id="run-nope")).code == 404
    assert (await api.post("/runs/{run_id}/cancel", run_id="run-nope")).code == 404
    assert (
        await api.post(
            "/runs/{run_id}/approvals/{node_id}", {"decision": "approved"}, run_id="run-nope", node_id="review"
        )
    ).code == 404


async def test_an_approval_given_through_the_api_lets_the_run_finish(api):
    wid = await create(api, APPROVAL, [("start", "review"), ("review", "approved", "ship")])
    run_id = (await api.post("/workflows/{workflow_id}/runs", workflow_id=wid)).json["run_id"]
    waiting = await run_until(api, run_id, lambda r: statuses(r)["review"] == "waiting")
    assert statuses(waiting) == {"start": "success", "review": "waiting", "ship": "idle"}

    decide = lambda body, node="review": api.post(  # noqa: E731
        "/runs/{run_id}/approvals/{node_id}", body, run_id=run_id, node_id=node
    )
    assert (await decide({})).json["field"] == "decision"
    assert (await decide({"decision": "maybe"})).json["field"] == "decision"
    assert (await decide({"decision": "approved", "comment": 1})).json["field"] == "comment"
    not_waiting = await decide({"decision": "approved"}, node="ship")
    assert not_waiting.code == 409 and "not waiting" in not_waiting.json["error"]

    approved = await decide({"decision": "approved", "comment": "looks good"})
    assert approved.code == 200
    assert (
        approved.json["decision"] == "approved"
        and approved.json["by"] == "ada"
        and approved.json["comment"] == "looks good"
    )
    done = await run_until(api, run_id, lambda r: r["status"] != "running")
    assert done["status"] == "success" and statuses(done) == {
        "start": "success",
        "review": "success",
        "ship": "success",
    }
    assert (await decide({"decision": "rejected"})).code == 409


async def test_a_running_run_is_cancelled_through_the_api(api):
    wid = await create(api, DELAY, [("start", "wait")])
    run_id = (await api.post("/workflows/{workflow_id}/runs", workflow_id=wid)).json["run_id"]
    await run_until(api, run_id, lambda r: statuses(r)["wait"] in ("running", "waiting"))

    cancelled = await api.post("/runs/{run_id}/cancel", run_id=run_id)
    assert cancelled.code == 202 and cancelled.json == {"run_id": run_id, "cancel_requested": True}
    run = await run_until(api, run_id, lambda r: r["status"] != "running", timeout=10)
    assert run["status"] == "cancelled"
    again = await api.post("/runs/{run_id}/cancel", run_id=run_id)
    assert again.code == 409 and "already finished" in again.json["error"]


async def test_run_records_follow_temporal_without_any_request(api, runtime, service):
    # A run started outside the server (here: another FlowService, as a kernel would) finishes;
    # the extension's periodic sync copies its final status into the store on its own.
    await api.get("/nodes")  # the first request connects the extension and starts its sync task
    wid = await create(api, GREETING, [("start", "greet")])
    run_id = (await service.start_run(wid, input={"name": "K"}, by="kernel"))["run_id"]

    async def recorded_final():
        record = (await runtime.service()).store.get_run(run_id)
        return record if record["status"] == "success" else None

    await wait_until(recorded_final, timeout=10, interval=0.2)


# ---------------------------------------------------------------------- triggers
async def test_the_trigger_routes_refuse_requests_without_the_token(api):
    routes = dict(ROUTES)
    for method, template in [
        ("POST", "/events/{topic}"),
        ("POST", "/workflows/{workflow_id}/unpublish"),
        ("DELETE", "/workflows/{workflow_id}"),
        ("GET", "/schedules"),
        ("POST", "/workflows/{workflow_id}/schedules/pause"),
        ("POST", "/workflows/{workflow_id}/schedules/resume"),
        ("GET", "/workflows/{workflow_id}/webhooks"),
    ]:
        assert template in routes and method.lower() in api.document["paths"][API_PREFIX + template]
        path = {name: "x" for name in re.findall(r"\{(\w+)\}", template)}
        reply = await api(
            method, template, {"payload": 1} if method == "POST" else None, headers={"Authorization": ""}, **path
        )
        assert reply.code == 403, f"{method} {template} answered {reply.code} without a token"


async def test_an_event_starts_every_subscribed_flow_once_per_event_id(api):
    topic = new_topic()
    counter = await create(api, on_event(topic, "got {{ input.n }}"), [("on", "handle")])
    strict = await create(api, on_event(topic, "x", schema={"type": "object", "required": ["sku"]}), [("on", "handle")])

    first = await api.post("/events/{topic}", {"payload": {"n": 7}, "event_id": "evt-1"}, topic=topic)
    assert first.code == 202
    delivered = {d["workflow_id"]: d for d in first.json}
    assert set(delivered) == {counter, strict}
    assert delivered[strict]["field"] == "input" and "'sku' is a required property" in delivered[strict]["error"]
    run_id = delivered[counter]["run_id"]

    again = await api.post("/events/{topic}", {"payload": {"n": 7}, "event_id": "evt-1"}, topic=topic)
    assert again.code == 202 and [d.get("run_id") for d in again.json if d["workflow_id"] == counter] == [run_id]
    run = await run_until(api, run_id, lambda r: r["status"] == "success")
    assert (run["trigger"], run["input"], run["result"]["outputs"]) == ("event", {"n": 7}, {"handle": "got 7"})

    other = await api.post("/events/{topic}", {"payload": {"n": 8}, "event_id": "evt-2"}, topic=topic)
    assert [d["run_id"] for d in other.json if d["workflow_id"] == counter] != [run_id]
    nobody = await api.post("/events/{topic}", {"payload": None}, topic=new_topic())
    assert nobody.code == 202 and nobody.json == []


async def test_publishing_an_event_with_a_bad_body_or_topic_is_400_naming_the_field(api):
    async def field_of(body: Any, topic: str = "orders.new") -> str:
        reply = await api.post("/events/{topic}", body, topic=topic)
        assert reply.code == 400, reply.json
        return reply.json["field"]

    assert await field_of("{not json") == "body"
    assert await field_of("[1, 2]") == "body"
    assert await field_of({}) == "payload"
    assert await field_of({"data": {"n": 1}}) == "payload"
    assert await field_of({"payload": 1, "event_id": 5}) == "event_id"
    assert await field_of({"payload": 1}, topic="no spaces!") == "topic"


async def test_unpublishing_takes_the_triggers_down_and_deleting_removes_the_workflow(api):
    topic = new_topic()
    wid = await create(api, on_event(topic, "x"), [("on", "handle")])
    unpublished = await api.post("/workflows/{workflow_id}/unpublish", workflow_id=wid)
    assert unpublished.code == 200 and unpublished.json["id"] == wid and unpublished.json["version"] is None
    assert (await api.post("/events/{topic}", {"payload": {}}, topic=topic)).json == []
    assert [v["version"] for v in (await api.get("/workflows/{workflow_id}/versions", workflow_id=wid)).json] == [1]

    deleted = await api.delete("/workflows/{workflow_id}", workflow_id=wid)
    assert deleted.code == 204 and deleted.json is None
    assert (await api.get("/workflows/{workflow_id}", workflow_id=wid)).code == 404
    assert (await api.delete("/workflows/{workflow_id}", workflow_id=wid)).code == 404


async def test_schedules_are_listed_paused_and_resumed_through_the_api(api):
    wid = await create(api, CRON, [("tick", "work")])
    sid = f"floworch-{wid}-tick"

    async def listed() -> dict:
        reply = await api.get("/schedules")
        assert reply.code == 200
        return {s["schedule_id"]: s for s in reply.json}

    schedule = (await listed())[sid]
    assert (schedule["workflow_id"], schedule["node_id"], schedule["version"]) == (wid, "tick", 1)
    assert (schedule["cron"], schedule["timezone"], schedule["paused"]) == ("0 9 * * MON-FRI", "UTC", False)
    assert len(schedule["next_runs"]) == 3

    paused = await api.post("/workflows/{workflow_id}/schedules/pause", workflow_id=wid)
    assert paused.code == 200 and paused.json == {"schedules": [sid]}
    assert (await listed())[sid]["paused"] is True
    resumed = await api.post("/workflows/{workflow_id}/schedules/resume", workflow_id=wid)
    assert resumed.code == 200 and resumed.json == {"schedules": [sid]}
    assert (await listed())[sid]["paused"] is False

    unscheduled = await create(api, GREETING, [("start", "greet")])
    none = await api.post("/workflows/{workflow_id}/schedules/pause", workflow_id=unscheduled)
    assert none.code == 404 and "trigger.cron" in none.json["error"]

    assert (await api.delete("/workflows/{workflow_id}", workflow_id=wid)).code == 204
    assert sid not in await listed()


async def test_a_workflow_lists_its_webhook_paths_and_signing_secrets(api, jp_base_url):
    wid = await create(api, WEBHOOK, [("hook", "echo")])
    reply = await api.get("/workflows/{workflow_id}/webhooks", workflow_id=wid)
    assert reply.code == 200 and len(reply.json) == 1
    hook = reply.json[0]
    assert hook["node_id"] == "hook" and hook["secret"].startswith("whsec_")
    assert hook["path"] == f"{jp_base_url}floworch/hooks/{hook['hook_id']}"

    assert (await api.post("/workflows/{workflow_id}/publish", workflow_id=wid)).code == 201
    assert (await api.get("/workflows/{workflow_id}/webhooks", workflow_id=wid)).json == [hook]
    await api.post("/workflows/{workflow_id}/unpublish", workflow_id=wid)
    assert (await api.get("/workflows/{workflow_id}/webhooks", workflow_id=wid)).json == []
    plain = await create(api, GREETING, [("start", "greet")])
    assert (await api.get("/workflows/{workflow_id}/webhooks", workflow_id=plain)).json == []


async def test_unknown_workflows_are_404_on_the_trigger_routes(api):
    for reply in [
        await api.post("/workflows/{workflow_id}/unpublish", workflow_id="nope"),
        await api.delete("/workflows/{workflow_id}", workflow_id="nope"),
        await api.post("/workflows/{workflow_id}/schedules/pause", workflow_id="nope"),
        await api.post("/workflows/{workflow_id}/schedules/resume", workflow_id="nope"),
        await api.get("/workflows/{workflow_id}/webhooks", workflow_id="nope"),
    ]:
        assert reply.code == 404 and "nope" in reply.json["error"]


# ---------------------------------------------------------------------- catalogue and description
async def test_the_node_catalogue_lists_every_node_type(api):
    reply = await api.get("/nodes")
    types = {n["type"]: n for n in reply.json}
    for expected in [
        "trigger.manual",
        "transform",
        "action.http",
        "control.if",
        "control.parallel",
        "control.delay",
        "control.approval",
        "test.fail",
    ]:
        assert expected in types
    assert [p["name"] for p in types["control.approval"]["outputs"]] == ["approved", "rejected", "timeout"]


async def test_openapi_describes_exactly_the_registered_routes(api, jp_serverapp, jp_base_url):
    reply = await api.get("/openapi.json")
    document = reply.json
    assert document["openapi"].startswith("3.1") and document["servers"] == [{"url": jp_base_url.rstrip("/")}]
    jsonschema.Draft202012Validator.check_schema(document["components"]["schemas"]["FlowDocument"])

    registered = {
        rule.matcher.regex.pattern
        for rule in _rules(jp_serverapp.web_app)
        if "floworch/api" in rule.matcher.regex.pattern
    }
    documented = set(document["paths"])
    # The webhook receiver lives outside the API prefix and has no Jupyter auth: checked on its own below.
    documented.discard(HOOK_PATH)
    assert len(registered) == len(documented) == len(ROUTES)
    for pattern in registered:
        matches = [
            p
            for p in documented
            if re.fullmatch(pattern.rstrip("$"), jp_base_url.rstrip("/") + p.replace("{", "").replace("}", ""))
        ]
        assert len(matches) == 1, f"{pattern} is described by {matches}"
    for path, item in document["paths"].items():
        if path == HOOK_PATH:
            continue
        for method, operation in item.items():
            if method != "parameters":
                assert {"403", "503"} <= set(operation["responses"]), f"{method} {path}"
                assert any(code.startswith("2") or code == "101" for code in operation["responses"]), f"{method} {path}"


async def test_the_webhook_receiver_is_the_one_route_without_jupyter_auth(api, jp_serverapp, jp_base_url):
    from floworch_ext.hooks import WebhookHandler

    document = (await api.get("/openapi.json")).json
    from floworch_ext.prometheus import MetricsHandler

    ours = [rule for rule in _rules(jp_serverapp.web_app) if "floworch/" in rule.matcher.regex.pattern]
    outside_api = [rule for rule in ours if "floworch/api" not in rule.matcher.regex.pattern]
    # Besides the API: the hook receiver (signed by its sender) and the Prometheus endpoint (Jupyter auth).
    assert [rule.target for rule in outside_api] == [WebhookHandler, MetricsHandler]
    pattern = outside_api[0].matcher.regex.pattern.rstrip("$")
    assert re.fullmatch(pattern, jp_base_url.rstrip("/") + "/floworch/hooks/Ab_9-x")
    assert re.fullmatch(pattern, jp_base_url.rstrip("/") + "/floworch/hooks/acme.Ab_9-x")  # tenant.hook
    assert not re.fullmatch(pattern, jp_base_url.rstrip("/") + "/floworch/hooks/a/b")

    hook = document["paths"][HOOK_PATH]
    assert set(hook) == {"parameters", "post"}
    assert hook["post"]["security"] == [] and "403" not in hook["post"]["responses"]
    assert {"202", "400", "401", "404", "413", "415", "503"} == set(hook["post"]["responses"])
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path != HOOK_PATH and method != "parameters" and (method, path) not in OWN_CREDENTIAL:
                assert "security" not in operation, f"{method} {path} must keep the token requirement"


def _rules(app):
    for rule in app.default_router.rules:
        yield from getattr(rule.target, "rules", [rule])


# ---------------------------------------------------------------------- services and settings
async def test_the_extension_uses_the_running_services_and_starts_no_second_temporal(api, runtime):
    settings = Settings.from_env()
    before = settings.runtime_file.read_text()
    assert not needs_embedded_services(settings)
    assert (await api.get("/nodes")).code == 200
    assert runtime.supervisor is None
    assert settings.runtime_file.read_text() == before
    assert json.loads(before)["pid"] == os.getpid()  # the test session's supervisor


async def test_requests_are_503_while_the_services_cannot_be_reached(api, jp_serverapp, monkeypatch):
    class Unreachable:
        async def service(self):
            raise TimeoutError("Temporal at 127.0.0.1:1 not healthy after 30 s")

    monkeypatch.setitem(jp_serverapp.web_app.settings, "floworch", Unreachable())
    reply = await api.get("/workflows")
    assert reply.code == 503 and "Temporal at 127.0.0.1:1 not healthy" in reply.json["error"]


def test_embedded_services_are_needed_only_without_a_live_runtime_file(tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    assert needs_embedded_services(settings)  # no runtime.json
    live = json.loads(Settings.from_env().runtime_file.read_text())
    settings.runtime_file.write_text(json.dumps({**live, "pid": 2**22 + 1}))
    assert needs_embedded_services(settings)  # its supervisor is gone
    settings.runtime_file.write_text(json.dumps({**live, "temporal_address": "127.0.0.1:1"}))
    assert needs_embedded_services(settings)  # nothing answers on its port
    settings.runtime_file.write_text(json.dumps(live))
    assert not needs_embedded_services(settings)
    assert not needs_embedded_services(Settings(data_dir=str(tmp_path / "empty"), temporal_address="temporal:7233"))


def test_jupyter_config_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("FLOWORCH_TASK_QUEUE", "from-env")
    monkeypatch.setenv("FLOWORCH_DATABASE_URL", "sqlite:///env.db")
    assert FlowOrch().settings().task_queue == "from-env"
    settings = FlowOrch(
        config=Config({"FlowOrch": {"task_queue": "from-config", "temporal_address": "t:7233"}})
    ).settings()
    assert (settings.task_queue, settings.temporal_address, settings.database_url) == (
        "from-config",
        "t:7233",
        "sqlite:///env.db",
    )
