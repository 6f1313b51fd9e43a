"""OAuth 2.0 integrations, against a real local authorization server built from Authlib's server
components (tests/support/oauth_server.py): connecting through the Jupyter server's routes as a
browser would (authorization code + PKCE S256 + state), tokens stored encrypted, refreshed before
expiry and on a 401 with rotation by a node running on the session's Temporal, a clear
"reconnect" error when the refresh token is refused, and revocation when removed.

The provider is registered as "hubspot", so the HubSpot contact node uses the connected
integration; its API is the authorization server's protected API."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from conftest import finished, nodes_by_id
from floworch_ext.handlers import API_PREFIX  # loads the handlers before floworch_ext.oauth
from floworch_server.errors import BadRequest
from floworch_server.oauth import OAuth, ReconnectNeeded, callback_url
from support.oauth_server import LocalAuthorizationServer
from support.rest import api, jp_server_config, runtime  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TRIGGER = {"id": "start", "type": "trigger.manual"}
CALLBACK = "/floworch/api/oauth/callback"


@pytest.fixture
def provider():
    with LocalAuthorizationServer() as server:
        yield server


@pytest.fixture
def oauth(service) -> OAuth:
    return OAuth.from_settings(service.settings, store=service.store)


def register(oauth: OAuth, server: LocalAuthorizationServer, *, redirect_uri: str | None = None) -> None:
    """Register the local server as provider "hubspot", with a client that may call back any local port."""
    client = server.client("http://127.0.0.1:", "http://localhost:")
    oauth.register_provider(
        "hubspot", authorize_url=server.authorize_url, token_url=server.token_url, revocation_url=server.revocation_url,
        client_id=client.client_id, client_secret=client.client_secret, scopes=["crm.objects.contacts.write"],
        redirect_uri=redirect_uri, by="tester",
    )  # fmt: skip


def new_name() -> str:
    return f"hubspot-{uuid.uuid4().hex[:6]}"


async def consent(authorization_url: str) -> dict[str, str]:
    """What the provider sends the browser back with: the query of its redirect (code + state, or error)."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(authorization_url)
    assert answer.status_code == 302, answer.text
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query))


async def connect(oauth: OAuth, provider: LocalAuthorizationServer, name: str, *, by: str = "tester") -> dict:
    """Connect ``name`` through the engine (start, consent, callback); returns the stored secret."""
    started = oauth.start(
        "hubspot", name, by=by, redirect_uri="http://127.0.0.1:1/cb", settings={"base_url": provider.url}
    )
    await oauth.complete(by=by, **await consent(started["authorization_url"]))
    return oauth.integrations.get(name)[1]


async def run_contact_node(service, published, name: str) -> tuple[dict, dict]:
    node = {
        "id": "call",
        "type": "action.hubspot",
        "config": {"integration": name, "email": "ada@example.test", "properties": {"firstname": "Ada"}},
        "policy": {"retry": {"initial_interval_seconds": 0.2, "backoff": 1}},
    }
    flow = await published([TRIGGER, node], [("start", "call")])
    run = await finished(service, (await service.start_run(flow, input=None, by="tester"))["run_id"])
    return run, nodes_by_id(run)["call"]


def raw_secret_column(store_url: str, name: str) -> bytes:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return bytes(
                conn.execute(sa.text("SELECT secret FROM integrations WHERE name = :n"), {"n": name}).scalar_one()
            )
    finally:
        engine.dispose()


class Browser:
    """A browser signed in to the Jupyter server (its login cookie), following redirects."""

    def __init__(self, server_url: str, token: str):
        self.server_url = server_url
        self.token = token
        self.client = httpx.AsyncClient(follow_redirects=True)

    async def __aenter__(self) -> Browser:
        signed_in = await self.client.get(f"{self.server_url}/api/status", params={"token": self.token})
        assert signed_in.status_code == 200 and self.client.cookies, signed_in.text
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.aclose()

    async def open(self, url: str) -> httpx.Response:
        return await self.client.get(url)


@pytest.fixture
def server_url(jp_http_port, jp_base_url) -> str:
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url.rstrip('/')}"


@pytest.fixture
def jupyter_token(jp_serverapp) -> str:
    return jp_serverapp.identity_provider.token


def check_page(api, reply: httpx.Response) -> None:
    """The callback's answer is one openapi.json lists for it, as an HTML page."""
    responses = api.document["paths"][API_PREFIX + "/oauth/callback"]["get"]["responses"]
    assert str(reply.status_code) in responses, reply.text
    assert reply.headers["content-type"].startswith("text/html")


# ---------------------------------------------------------------------- connecting
async def test_connect_through_the_rest_routes_stores_encrypted_tokens_against_a_local_authlib_authorization_server(
    api, oauth, provider, service, server_url, jupyter_token
):
    register(oauth, provider)
    assert [p["name"] for p in (await api.get("/oauth/providers")).json if p["name"] == "hubspot"] == ["hubspot"]
    name = new_name()
    started = await api.post(
        "/oauth/connect", {"provider": "hubspot", "integration": name, "settings": {"base_url": provider.url}}
    )
    assert started.code == 201, started.json
    assert started.json["redirect_uri"].endswith(CALLBACK)

    async with Browser(server_url, jupyter_token) as browser:
        page = await browser.open(started.json["authorization_url"])
    check_page(api, page)
    assert page.status_code == 200 and f"Integration <b>{name}</b> is connected to <b>hubspot</b>" in page.text

    # The provider saw PKCE with S256 and a state; the code went back with the verifier.
    asked = provider.authorization_requests[-1]
    assert asked["code_challenge_method"] == "S256" and asked["code_challenge"] and asked["state"]
    assert provider.token_requests == ["authorization_code"]
    issued = provider.tokens[-1]

    record, secret = oauth.integrations.get(name)
    assert record["provider"] == "hubspot" and record["settings"]["base_url"] == provider.url
    assert record["settings"]["oauth"]["provider"] == "hubspot" and record["settings"]["oauth"]["connected_by"] == "ada"
    assert (secret["access_token"], secret["refresh_token"], secret["scope"]) == (
        issued.access_token,
        issued.refresh_token,
        "crm.objects.contacts.write",
    )
    assert isinstance(secret["expires_at"], int)

    # At rest the tokens are ciphertext: neither is in the database column nor anywhere in the file.
    raw = raw_secret_column(service.settings.store_url, name)
    assert issued.access_token.encode() not in raw and issued.refresh_token.encode() not in raw
    db_file = Path(sa.make_url(service.settings.store_url).database)
    for path in (db_file, db_file.with_name(db_file.name + "-wal")):
        if path.exists():
            assert issued.access_token.encode() not in path.read_bytes(), path
    # The audit log names the provider and the fields, never a token.
    [entry] = oauth.store.list_audit(action="integration.oauth.connect", target=name)
    assert entry["detail"] == {
        "provider": "hubspot",
        "fields": ["access_token", "expires_at", "refresh_token", "scope", "token_type"],
    }
    assert issued.access_token not in str(entry) and issued.refresh_token not in str(entry)


async def test_refused_consent_stores_nothing_against_a_local_authlib_authorization_server(
    api, oauth, provider, server_url, jupyter_token
):
    register(oauth, provider)
    provider.consent = False  # the person clicks "Deny"
    name = new_name()
    started = await api.post("/oauth/connect", {"provider": "hubspot", "integration": name})
    async with Browser(server_url, jupyter_token) as browser:
        page = await browser.open(started.json["authorization_url"])
    check_page(api, page)
    assert (
        page.status_code == 403 and "hubspot access was not granted" in page.text and "nothing was stored" in page.text
    )
    assert name not in [i["name"] for i in oauth.integrations.list()]
    assert provider.token_requests == []


async def test_a_forged_state_is_refused_and_stores_nothing_against_a_local_authlib_authorization_server(
    api, oauth, provider, server_url, jupyter_token
):
    register(oauth, provider)
    name = new_name()
    started = await api.post("/oauth/connect", {"provider": "hubspot", "integration": name})
    answer = await consent(started.json["authorization_url"])  # a real code, with a state an attacker made up
    async with Browser(server_url, jupyter_token) as browser:
        page = await browser.open(f"{server_url}{CALLBACK}?code={answer['code']}&state=forged-{uuid.uuid4().hex}")
        missing = await browser.open(f"{server_url}{CALLBACK}?code={answer['code']}")
    for reply in (page, missing):
        check_page(api, reply)
        assert reply.status_code == 400
    assert "state: is unknown or was already used" in page.text and "state: is missing" in missing.text
    assert name not in [i["name"] for i in oauth.integrations.list()]
    assert provider.token_requests == []


async def test_a_reused_state_is_refused_and_keeps_the_first_tokens_against_a_local_authlib_authorization_server(
    api, oauth, provider, server_url, jupyter_token
):
    register(oauth, provider)
    name = new_name()
    started = await api.post("/oauth/connect", {"provider": "hubspot", "integration": name})
    answer = await consent(started.json["authorization_url"])
    replay = f"{server_url}{CALLBACK}?code={answer['code']}&state={answer['state']}"
    async with Browser(server_url, jupyter_token) as browser:
        first = await browser.open(replay)
        again = await browser.open(replay)
    assert first.status_code == 200
    check_page(api, again)
    assert again.status_code == 400 and "state: is unknown or was already used" in again.text
    assert oauth.integrations.get(name)[1]["access_token"] == provider.tokens[-1].access_token
    assert provider.token_requests == ["authorization_code"]


async def test_a_state_started_by_another_user_is_refused_against_a_local_authlib_authorization_server(oauth, provider):
    register(oauth, provider)
    name = new_name()
    started = oauth.start("hubspot", name, by="ada", redirect_uri="http://127.0.0.1:1/cb")
    answer = await consent(started["authorization_url"])
    with pytest.raises(Exception) as refused:
        await oauth.complete(by="eve", **answer)
    assert getattr(refused.value, "status", None) == 403 and "started by another user, not by 'eve'" in str(
        refused.value
    )
    # Spent by the attempt: Ada starts again rather than finishing what Eve touched.
    with pytest.raises(BadRequest, match="state: is unknown or was already used"):
        await oauth.complete(by="ada", **answer)
    assert name not in [i["name"] for i in oauth.integrations.list()]
    assert provider.token_requests == []


async def test_an_expired_authorization_is_refused_against_a_local_authlib_authorization_server(
    oauth, provider, service
):
    register(oauth, provider)
    name = new_name()
    started = oauth.start("hubspot", name, by="ada", redirect_uri="http://127.0.0.1:1/cb")
    answer = await consent(started["authorization_url"])
    # Ten minutes pass: the row's expiry is moved into the past.
    engine = sa.create_engine(service.settings.store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE oauth_authorizations SET expires_at = '2000-01-01 00:00:00.000000' WHERE integration = :n"),
            {"n": name},
        )
    engine.dispose()
    with pytest.raises(BadRequest, match="state: expired"):
        await oauth.complete(by="ada", **answer)
    assert name not in [i["name"] for i in oauth.integrations.list()]


async def test_fo_integrations_connect_shows_the_link_and_waits_for_the_callback_against_a_local_authlib_authorization_server(
    api, oauth, provider, server_url, jupyter_token, monkeypatch
):
    import floworch as fo
    import floworch._service

    # The kernel acts as the person signed in to JupyterLab (the callback checks it is the same user).
    monkeypatch.setenv("FLOWORCH_USER", "ada")
    monkeypatch.setattr(floworch._service, "_service", None)
    register(oauth, provider, redirect_uri=callback_url(server_url))  # FLOWORCH_JUPYTER_URL is off in tests
    name = new_name()
    connection = await asyncio.to_thread(fo.integrations.connect, "hubspot", name, settings={"base_url": provider.url})
    assert (
        connection.url.startswith(provider.authorize_url)
        and f'href="{connection.url}"'.replace("&", "&amp;") in connection._repr_html_()
    )
    assert not connection.connected
    waiting = asyncio.create_task(asyncio.to_thread(connection.wait, 60))
    async with Browser(server_url, jupyter_token) as browser:
        assert (await browser.open(connection.url)).status_code == 200
    record = await waiting
    assert record["name"] == name and record["provider"] == "hubspot" and connection.connected


# ---------------------------------------------------------------------- using
async def test_a_node_refreshes_a_token_about_to_expire_and_stores_the_rotated_refresh_token_against_a_local_authlib_authorization_server(
    oauth, provider, service, published
):
    register(oauth, provider)
    provider.access_seconds = 30  # inside the 60 s margin: the token is refreshed before it is used
    name = new_name()
    first = await connect(oauth, provider, name)

    run, call = await run_contact_node(service, published, name)
    assert (run["status"], call["status"], call["attempts"]) == ("success", "success", 1), call
    assert provider.token_requests == ["authorization_code", "refresh_token"]
    second = oauth.integrations.get(name)[1]
    # The API saw only the new access token; the rotated refresh token is the one stored.
    assert [r["token"] for r in provider.api_requests] == [second["access_token"]] != [first["access_token"]]
    assert second["refresh_token"] == provider.tokens[-1].refresh_token != first["refresh_token"]
    assert provider.token(first["refresh_token"]).refresh_revoked

    # The next run refreshes with the rotated token, which the provider still accepts.
    run, call = await run_contact_node(service, published, name)
    assert run["status"] == "success", call
    assert (
        oauth.integrations.get(name)[1]["refresh_token"] == provider.tokens[-1].refresh_token != second["refresh_token"]
    )


async def test_a_401_refreshes_once_and_the_node_succeeds_against_a_local_authlib_authorization_server(
    oauth, provider, service, published
):
    register(oauth, provider)
    name = new_name()
    first = await connect(oauth, provider, name)
    provider.invalidate_access_tokens()  # still valid by its expiry, but the provider dropped it

    run, call = await run_contact_node(service, published, name)
    assert (run["status"], call["attempts"]) == ("success", 1), call
    fresh = oauth.integrations.get(name)[1]
    assert [(r["token"], r["status"]) for r in provider.api_requests] == [
        (first["access_token"], 401),
        (fresh["access_token"], 201),
    ]
    assert provider.token_requests == ["authorization_code", "refresh_token"]


async def test_with_oauth_retry_refreshes_once_on_a_401_against_a_local_authlib_authorization_server(oauth, provider):
    register(oauth, provider)
    name = new_name()
    first = await connect(oauth, provider, name)
    provider.invalidate_access_tokens()
    sent = []

    async def call(token: str) -> httpx.Response:
        sent.append(token)
        async with httpx.AsyncClient() as client:
            return await client.post(
                f"{provider.url}/crm/v3/objects/contacts",
                json={"properties": {}},
                headers={"Authorization": f"Bearer {token}"},
            )

    answer = await oauth.with_oauth_retry(name, call)
    assert answer.status_code == 201
    assert sent == [first["access_token"], oauth.integrations.get(name)[1]["access_token"]] and sent[0] != sent[1]


async def test_an_expired_refresh_token_fails_the_node_asking_to_reconnect_against_a_local_authlib_authorization_server(
    oauth, provider, service, published
):
    register(oauth, provider)
    provider.access_seconds = 30
    name = new_name()
    await connect(oauth, provider, name)
    provider.expire_refresh_tokens()

    run, call = await run_contact_node(service, published, name)
    assert (run["status"], call["status"], call["attempts"]) == ("failed", "failed", 1), call
    assert f"integration '{name}' must be reconnected" in call["error"] and "invalid_grant" in call["error"]
    assert f"fo.integrations.connect('hubspot', '{name}')" in call["error"]
    assert provider.api_requests == []  # the provider's API was never called with a stale token
    with pytest.raises(ReconnectNeeded):
        await oauth.fresh_token(name)


# ---------------------------------------------------------------------- removing
async def test_removing_an_integration_revokes_its_tokens_at_the_provider_against_a_local_authlib_authorization_server(
    oauth, provider
):
    register(oauth, provider)
    name = new_name()
    secret = await connect(oauth, provider, name)
    assert provider.live_tokens()

    assert await oauth.remove(name, by="tester") == {"revoked": ["refresh_token", "access_token"]}
    assert provider.revoked == ["refresh_token", "access_token"] and provider.live_tokens() == []
    assert name not in [i["name"] for i in oauth.integrations.list()]
    async with httpx.AsyncClient() as client:
        stale = await client.post(
            f"{provider.url}/crm/v3/objects/contacts",
            json={},
            headers={"Authorization": f"Bearer {secret['access_token']}"},
        )
    assert stale.status_code == 401


async def test_a_failed_revocation_keeps_the_integration_against_a_local_authlib_authorization_server(oauth, provider):
    register(oauth, provider)
    name = new_name()
    await connect(oauth, provider, name)
    provider.__exit__()  # the provider is down
    with pytest.raises(Exception, match=f"could not revoke the refresh_token at hubspot.*integration '{name}' is kept"):
        await oauth.remove(name, by="tester")
    assert name in [i["name"] for i in oauth.integrations.list()]
    assert await oauth.remove(name, by="tester", revoke=False) == {"revoked": []}
    assert name not in [i["name"] for i in oauth.integrations.list()]
