"""Teams on a real Jupyter server: who may call which route, and what an attacker's tokens get.

Ada signs in through Jupyter (the server's identity provider) and is the admin of the
deployment's tenant. She adds members with roles and issues them logins; they call the API with
access tokens (``Authorization: Bearer``), as scripts and kernels outside JupyterLab do.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from floworch_ext.handlers import API_PREFIX, ROUTES
from support.rest import api, create, run_until, runtime, server_config  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]

FLOW: list[dict] = [
    {"id": "start", "type": "trigger.manual"},
    {"id": "shape", "type": "transform", "config": {"output": "{{ input }}"}},
]
EDGES = [("start", "shape")]


@pytest.fixture
def jp_server_config(tmp_path):
    # A store of its own per test: members and roles of one test never leak into the next.
    return server_config(database_url=f"sqlite:///{tmp_path / 'store.db'}")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def team(api, runtime):
    """Members of the deployment's tenant with each role, and one former member; their tokens."""
    tokens = {}
    for user, role in [("vera", "viewer"), ("eddie", "editor"), ("alma", "admin"), ("nora", "viewer")]:
        assert (await api.put("/members/{user}", {"role": role}, user=user)).code == 200
        issued = await api.post("/auth/tokens", {"user": user})
        assert issued.code == 201, issued.json
        tokens[role if user != "nora" else "former member"] = issued.json["access_token"]
    # Nora's token stays valid for its 15 minutes, but she is no longer a member.
    assert (await api.delete("/members/{user}", user="nora")).code == 204
    return tokens


@pytest.fixture
async def things(api):
    """A published flow with one finished run."""
    workflow_id = await create(api, FLOW, EDGES)
    started = await api.post("/workflows/{workflow_id}/runs", {"input": {"n": 1}}, workflow_id=workflow_id)
    assert started.code == 201, started.json
    run = await run_until(api, started.json["run_id"], lambda r: r["status"] == "success")
    return {"workflow_id": workflow_id, "run_id": run["run_id"], "node_id": "shape", "version": "1"}


def doc(workflow_id: str | None = None) -> dict:
    from conftest import flow_doc

    document = flow_doc(FLOW, EDGES)
    if workflow_id:
        document["meta"]["id"] = workflow_id
    return document


# Every route and method, with a request that does what the route is for. Read-only answers
# must be 200 for every role allowed; changes may also meet a conflict of their own (a finished
# run cannot be cancelled), but never 401/403.
def matrix(t: dict) -> list[tuple[str, str, dict, object]]:
    w, r = t["workflow_id"], t["run_id"]
    return [
        ("GET", "/workflows", {}, None),
        ("POST", "/workflows", {}, {"document": doc()}),
        ("GET", "/workflows/{workflow_id}", {"workflow_id": w}, None),
        ("PUT", "/workflows/{workflow_id}", {"workflow_id": w}, {"document": doc(w)}),
        ("POST", "/workflows/{workflow_id}/publish", {"workflow_id": w}, {"note": "matrix"}),
        ("GET", "/workflows/{workflow_id}/versions", {"workflow_id": w}, None),
        ("GET", "/workflows/{workflow_id}/versions/{version}", {"workflow_id": w, "version": "1"}, None),
        ("POST", "/workflows/{workflow_id}/runs", {"workflow_id": w}, {"input": {"n": 2}}),
        ("POST", "/workflows/{workflow_id}/unpublish", {"workflow_id": w}, None),
        ("GET", "/workflows/{workflow_id}/webhooks", {"workflow_id": w}, None),
        ("POST", "/workflows/{workflow_id}/schedules/pause", {"workflow_id": w}, None),
        ("POST", "/workflows/{workflow_id}/schedules/resume", {"workflow_id": w}, None),
        ("GET", "/schedules", {}, None),
        ("POST", "/events/{topic}", {"topic": "matrix.topic"}, {"payload": {"n": 3}}),
        ("GET", "/runs", {}, None),
        ("GET", "/runs/{run_id}", {"run_id": r}, None),
        ("POST", "/runs/{run_id}/approvals/{node_id}", {"run_id": r, "node_id": "shape"}, {"decision": "approved"}),
        ("POST", "/runs/{run_id}/cancel", {"run_id": r}, None),
        ("GET", "/runs/{run_id}/nodes/{node_id}", {"run_id": r, "node_id": "shape"}, None),
        ("GET", "/runs/{run_id}/trace", {"run_id": r}, None),
        (
            "POST",
            "/runs/{run_id}/nodes/{node_id}/try",
            {"run_id": r, "node_id": "shape"},
            {"config": {"output": "tried"}},
        ),
        ("GET", "/runs/{run_id}/diff/{other_run_id}", {"run_id": r, "other_run_id": r}, None),
        ("POST", "/validate", {}, {"document": doc()}),
        ("GET", "/dashboard", {}, None),
        ("GET", "/alerts", {}, None),
        ("GET", "/nodes", {}, None),
        ("GET", "/openapi.json", {}, None),
        ("GET", "/me", {}, None),
        ("POST", "/auth/login", {}, None),
        ("POST", "/auth/tokens", {}, {"user": "vera"}),
        ("GET", "/members", {}, None),
        ("PUT", "/members/{user}", {"user": "vera"}, {"role": "viewer"}),
        ("DELETE", "/members/{user}", {"user": "nobody"}, None),
        ("GET", "/audit", {}, None),
        ("GET", "/oauth/providers", {}, None),
        ("POST", "/oauth/connect", {}, {"provider": "nowhere", "integration": "crm"}),
        ("GET", "/oauth/callback", {}, None),
        ("GET", "/integrations", {}, None),
        ("DELETE", "/integrations/{name}", {"name": "no-such-integration"}, None),
        ("GET", "/dead-letters", {}, None),
        # A run that succeeded is not a dead letter: 409 for those allowed, nothing started.
        ("POST", "/dead-letters/retry", {}, {"run_ids": [r], "mode": "start"}),
        ("DELETE", "/workflows/{workflow_id}", {"workflow_id": "made-per-role"}, None),
    ]


SOCKETS = ["/runs/{run_id}/logs", "/runs/{run_id}/status"]
# A GET that stores something: the OAuth provider sends the browser back there with a code.
STORES_ON_GET = {"/oauth/callback"}
# Answered by their own credential, not a role: a refresh token, a webhook's signature.
OWN_CREDENTIAL = {("POST", "/auth/refresh")}
ALLOWED = {
    "viewer": {"read"},
    "editor": {"read", "edit"},
    "admin": {"read", "edit", "admin"},
    "former member": set(),
}


def needed(template: str, method: str) -> str | None:
    handler: Any = dict(ROUTES)[template]
    permissions = handler.permissions
    m = method.lower()
    return permissions.get(m, "read" if m == "get" else "edit")


def test_the_matrix_covers_every_route_and_method_of_the_api():
    listed = {(m, t) for m, t, _, _ in matrix({"workflow_id": "w", "run_id": "r"})} | {("GET", s) for s in SOCKETS}
    served = set()
    for template, handler in ROUTES:
        for method in ("GET", "POST", "PUT", "DELETE"):
            if method.lower() in handler.__dict__ or any(
                method.lower() in vars(base)
                for base in handler.__mro__[1:-1]
                if base.__module__.startswith("floworch_ext")
            ):
                served.add((method, template))
    assert served - OWN_CREDENTIAL - listed == set(), "routes without a row in the role matrix"


async def test_each_role_gets_exactly_the_routes_its_permission_allows(api, team, things):
    for method, template, path, body in matrix(things):
        permission = needed(template, method)
        for who, token in team.items():
            if template == "/workflows/{workflow_id}" and method == "DELETE":
                path = {"workflow_id": (await api.post("/workflows", {"document": doc()})).json["id"]}
            reply = await api(method, template, body, headers=bearer(token), **path)
            what = f"{who} {method} {template}: {reply.code} {reply.json}"
            if permission in ALLOWED[who]:
                assert reply.code not in (401, 403), what
                if method == "GET" and template not in STORES_ON_GET:
                    assert reply.code == 200, what
            else:
                assert reply.code == 403, what
                # The reason, in JSON (or on the page, for the browser's OAuth callback).
                assert (
                    reply.json["error"]
                    if isinstance(reply.json, dict)
                    else " of tenant &#x27;default&#x27;" in reply.json
                ), what
    # Nothing the refused requests asked for happened: the first flow is still there, published.
    assert (await api.get("/workflows/{workflow_id}", workflow_id=things["workflow_id"])).code == 200


async def _socket(jp_http_port, jp_base_url, template: str, headers: dict, **path) -> int | str | None:
    url = f"ws://localhost:{jp_http_port}{jp_base_url.rstrip('/')}{API_PREFIX}{template.format(**path)}"
    try:
        conn = await websocket_connect(HTTPRequest(url, headers=headers))
    except HTTPClientError as exc:
        return exc.code
    try:
        message = await asyncio.wait_for(conn.read_message(), 2)
    except TimeoutError:
        conn.close()
        return "silent"  # open, but nothing of this run to tell
    if message is None:
        return conn.close_code
    first = json.loads(message)
    if first["type"] == "error":
        await conn.read_message()
        return conn.close_code
    conn.close()
    assert first["type"] in ("log", "run", "end"), first
    return 101


async def test_the_run_sockets_let_members_watch_and_refuse_everyone_else(team, things, jp_http_port, jp_base_url):
    for template in SOCKETS:
        for who, token in team.items():
            code = await _socket(jp_http_port, jp_base_url, template, bearer(token), run_id=things["run_id"])
            assert code == (101 if who != "former member" else 403), (who, template, code)


# ---------------------------------------------------------------------- an attacker's tokens
def forge(claims: dict, key: bytes | str, kid: str, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


async def test_expired_forged_unsigned_and_tampered_tokens_are_refused_and_change_nothing(api, team, runtime):
    kid, secret = runtime.tokens.keys.current
    now = int(time.time())
    claims = {
        "iss": "floworch",
        "sub": "alma",
        "ten": "default",
        "iat": now,
        "exp": now + 600,
        "jti": "x",
        "typ": "access",
    }
    real = team["admin"]
    head, _payload, signature = real.split(".")
    tampered_claims = jwt.decode(real, options={"verify_signature": False}) | {"sub": "mallory"}
    tampered = ".".join([head, jwt.utils.base64url_encode(json.dumps(tampered_claims).encode()).decode(), signature])
    cases = {
        "expired": (runtime.tokens.access_token("alma", "default", now=now - 3600), "expired"),
        "signed with another key": (forge(claims, b"k" * 32, kid), "not valid"),
        "alg none": (jwt.encode(claims, None, algorithm="none", headers={"kid": kid}), "algorithm 'none'"),
        "unknown key id": (forge(claims, secret, "k0-000000"), "unknown or retired key"),
        "tampered claims": (tampered, "not valid"),
        "a refresh token's shape": (forge(claims | {"typ": "refresh"}, secret, kid), "not an access token"),
    }
    before = (await api.get("/workflows")).json
    for name, (token, words) in cases.items():
        reply = await api.post("/workflows", {"document": doc()}, headers=bearer(token))
        assert reply.code == 401, (name, reply.json)
        assert words in reply.json["error"], (name, reply.json)
        assert (await api.get("/me", headers=bearer(token))).code == 401, name
    assert (await api.get("/workflows")).json == before


async def test_a_replayed_refresh_token_revokes_the_whole_login(api):
    first = await api.post("/auth/login")
    assert first.code == 201 and first.json["user"] == "ada"
    second = await api.post("/auth/refresh", {"refresh_token": first.json["refresh_token"]})
    assert second.code == 201
    me = await api.get("/me", headers=bearer(second.json["access_token"]))
    assert me.json.get("via") == "token", me.json

    replayed = await api.post("/auth/refresh", {"refresh_token": first.json["refresh_token"]})
    assert replayed.code == 401 and "reuse detected" in replayed.json["error"]
    # The thief's replay also logged out the holder of the newest refresh token.
    after = await api.post("/auth/refresh", {"refresh_token": second.json["refresh_token"]})
    assert after.code == 401 and "revoked" in after.json["error"]
    for junk in ["", "frt1.default.nope", "frt1.../..x", "not-a-token", "frt1.NOT A TENANT.x"]:
        reply = await api.post("/auth/refresh", {"refresh_token": junk})
        assert reply.code in (400, 401), (junk, reply.json)


async def test_signing_keys_rotate_without_logging_anyone_out(api, team, runtime):
    old_kid = runtime.tokens.keys.current[0]
    new_kid = runtime.tokens.keys.rotate()
    assert new_kid != old_kid
    # A token signed with the old key still works for the rest of its life; new ones use the new key.
    assert (await api.get("/me", headers=bearer(team["viewer"]))).json["user"] == "vera"
    fresh = (await api.post("/auth/tokens", {"user": "vera"})).json["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    assert (await api.get("/me", headers=bearer(fresh))).code == 200


async def test_another_tenants_member_sees_nothing_of_this_tenant(api, runtime, things, jp_http_port, jp_base_url):
    store = (await runtime.service()).store.for_tenant("acme")
    store.add_member("zed", "admin", "operator")
    zed = runtime.tokens.login("zed", "acme")["access_token"]
    w, r = things["workflow_id"], things["run_id"]

    assert (await api.get("/workflows", headers=bearer(zed))).json == []
    assert (await api.get("/workflows/{workflow_id}", headers=bearer(zed), workflow_id=w)).code == 404
    assert (await api.get("/runs/{run_id}", headers=bearer(zed), run_id=r)).code == 404
    assert r not in [x["run_id"] for x in (await api.get("/runs", headers=bearer(zed))).json]
    assert (await api.get("/runs/{run_id}/trace", headers=bearer(zed), run_id=r)).code == 404
    assert (await api.post("/runs/{run_id}/cancel", headers=bearer(zed), run_id=r)).code == 404
    assert (await api.post("/workflows/{workflow_id}/runs", {}, headers=bearer(zed), workflow_id=w)).code == 404
    assert (await api.delete("/workflows/{workflow_id}", headers=bearer(zed), workflow_id=w)).code == 404
    assert await _socket(jp_http_port, jp_base_url, "/runs/{run_id}/status", bearer(zed), run_id=r) == 4404
    assert await _socket(jp_http_port, jp_base_url, "/runs/{run_id}/logs", bearer(zed), run_id=r) == "silent"
    # Naming this tenant in the header does not move the token into it.
    spoofed = await api.get("/workflows", headers={**bearer(zed), "X-Floworch-Tenant": "default"})
    assert spoofed.code == 403 and "for tenant 'acme'" in spoofed.json["error"]
    # And a Jupyter user cannot step into a tenant they are not a member of.
    stepped = await api.get("/workflows", headers={"X-Floworch-Tenant": "acme"})
    assert stepped.code == 403 and "not a member of tenant 'acme'" in stepped.json["error"]
    assert (await api.get("/workflows", headers={"X-Floworch-Tenant": "../etc"})).code == 400
    # Zed's own tenant works, and its flows stay there.
    mine = await api.post("/workflows", {"document": doc()}, headers=bearer(zed))
    assert mine.code == 201
    assert mine.json["id"] not in [x["id"] for x in (await api.get("/workflows")).json]
    assert (await api.get("/workflows/{workflow_id}", workflow_id=w)).code == 200


# ---------------------------------------------------------------------- members and the audit log
async def test_admins_manage_members_and_every_change_is_audited(api, team):
    listed = {m["user"]: m["role"] for m in (await api.get("/members")).json}
    assert {u: listed.get(u) for u in ("vera", "eddie", "alma", "nora")} == {
        "vera": "viewer",
        "eddie": "editor",
        "alma": "admin",
        "nora": None,
    }
    # Demoting Eddie takes effect on his next request, with the token he already has.
    assert (await api.post("/workflows", {"document": doc()}, headers=bearer(team["editor"]))).code == 201
    assert (await api.put("/members/{user}", {"role": "viewer"}, user="eddie")).code == 200
    refused = await api.post("/workflows", {"document": doc()}, headers=bearer(team["editor"]))
    assert refused.code == 403 and "is a viewer" in refused.json["error"]

    assert (await api.put("/members/{user}", {"role": "owner"}, user="eddie")).code == 400
    # The last admin member cannot be demoted or removed.
    alma = bearer(team["admin"])
    for other in [m["user"] for m in (await api.get("/members")).json if m["role"] == "admin" and m["user"] != "alma"]:
        assert (await api.put("/members/{user}", {"role": "editor"}, user=other, headers=alma)).code == 200
    assert (await api.put("/members/{user}", {"role": "editor"}, user="alma", headers=alma)).code == 409
    assert (await api.delete("/members/{user}", user="alma", headers=alma)).code == 409

    entries = (await api.get("/audit", params={"action": "member."})).json
    assert [(e["action"], e["target"], e["actor"]) for e in entries][:2] == [
        ("member.update", "eddie", "ada"),
        ("member.remove", "nora", "ada"),
    ]
    assert entries[0]["detail"] == {"role": "viewer", "was": "editor"}
    created = (await api.get("/audit", params={"action": "workflow.create", "actor": "eddie"})).json
    assert len(created) == 1 and created[0]["tenant"] == "default"


async def test_audit_filters_are_values_never_sql(api, team):
    before = (await api.get("/audit")).json
    for hostile in ["' OR '1'='1", "x'; DELETE FROM audit_log; --", "%", "member.%"]:
        reply = await api.get("/audit", params={"actor": hostile})
        assert reply.code == 200 and reply.json == [], hostile
    assert (await api.get("/audit")).json == before
    assert (await api.get("/audit", params={"since": "yesterday"})).code == 400


async def test_integrations_are_listed_without_secrets_and_removed_by_editors(api, team, runtime):
    from floworch_server.integrations import Integrations

    service = await runtime.service()
    Integrations.from_settings(service.settings, store=service.store).add(
        "crm", "hubspot", {"access_token": "pat-secret-1"}, by="ada"
    )
    listed = await api.get("/integrations", headers=bearer(team["viewer"]))
    assert [(i["name"], i["provider"]) for i in listed.json] == [("crm", "hubspot")]
    assert "pat-secret-1" not in json.dumps(listed.json) and "secret" not in listed.json[0]

    assert (await api.delete("/integrations/{name}", headers=bearer(team["viewer"]), name="crm")).code == 403
    removed = await api.delete("/integrations/{name}", headers=bearer(team["editor"]), name="crm")
    assert removed.code == 200 and removed.json == {"revoked": []}
    assert (await api.get("/integrations")).json == []
    assert (await api.delete("/integrations/{name}", name="crm")).code == 404
    [entry] = (await api.get("/audit", params={"action": "integration.delete"})).json
    assert (entry["actor"], entry["target"]) == ("eddie", "crm")


async def test_the_prometheus_endpoint_is_the_deployments_tenants_for_its_readers(jp_fetch, team, runtime):
    from tornado.httpclient import HTTPClientError

    store = (await runtime.service()).store.for_tenant("acme")
    store.add_member("zed", "admin", "operator")
    zed = runtime.tokens.login("zed", "acme")["access_token"]

    async def scrape(token: str) -> int:
        try:
            return (await jp_fetch("floworch", "metrics", headers=bearer(token))).code
        except HTTPClientError as exc:
            return exc.code

    assert await scrape(team["viewer"]) == 200
    assert await scrape(team["former member"]) == 403
    assert await scrape(zed) == 403
