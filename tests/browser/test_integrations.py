"""OAuth 2.0 "Connect" in the Team panel's Integrations tab, in real Chromium, against a real local
authorization server built from Authlib's server components (tests/support/oauth_server.py).

Alice (an admin by default, as the Jupyter user of a fresh lab) picks a provider and a name and
clicks Connect: a new tab goes to the provider's consent page (it consents at once, or refuses,
as the test says), the provider sends that tab back to the lab's callback route, and the panel,
which polled meanwhile, lists the integration as connected. Removing it revokes its tokens at
the provider. The provider is registered in the lab's store with the engine, as an admin's
``fo.integrations.register_oauth_provider`` in a notebook does.
"""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.async_api import Locator, Page, expect

from floworch_server.oauth import OAuth
from floworch_server.settings import Settings
from support.oauth_server import LocalAuthorizationServer

from .harness import Lab, identity, shot, user_of
from .test_teams import open_team, tenant

CALLBACK = "floworch/api/oauth/callback"


@pytest.fixture
def provider():
    with LocalAuthorizationServer() as server:
        yield server


@pytest.fixture
def lab_oauth(lab: Lab) -> OAuth:
    """The OAuth engine on the lab's own store and key (the session's data dir), in its tenant."""
    return OAuth.from_settings(Settings.from_env(), tenant=tenant(lab))


def register(oauth: OAuth, server: LocalAuthorizationServer, lab: Lab) -> str:
    """Register the local server as a provider of a name of its own; its client may call back the lab."""
    name = f"authlib-{secrets.token_hex(3)}"
    client = server.client(lab.url)
    oauth.register_provider(
        name, authorize_url=server.authorize_url, token_url=server.token_url, revocation_url=server.revocation_url,
        client_id=client.client_id, client_secret=client.client_secret, scopes=[server.scope], by="admin",
    )  # fmt: skip
    return name


async def open_integrations(page: Page) -> Locator:
    team = await open_team(page)
    await team.get_by_test_id("team-tab-integrations").click()
    tab = team.get_by_test_id("team-integrations")
    await expect(tab).to_be_visible()
    return tab


def row(tab: Locator, name: str) -> Locator:
    return tab.locator(f'[data-testid="integration-row"][data-name="{name}"]')


async def click_connect(page: Page, tab: Locator, provider: str, integration: str) -> Page:
    """Fill the Connect form and click Connect; returns the browser tab it opened."""
    await tab.get_by_test_id("integration-provider").select_option(provider)
    await tab.get_by_test_id("integration-name").fill(integration)
    async with page.context.expect_page() as opened:
        await tab.get_by_test_id("integration-connect").click()
    return await opened.value


async def shot_of(page: Page, consent_tab: Page, step: str) -> None:
    """A screenshot of the consent tab, numbered among the test's steps."""
    await consent_tab.screenshot(path=user_of(page).artifacts.next_path(step))


async def test_connect_in_the_team_panel_then_remove_revokes_the_tokens_against_a_local_authlib_authorization_server(
    lab, page, users, provider, lab_oauth
):
    alice = page
    alice_name = (await identity(alice))["username"]
    # A tenant without providers (others' tests register their own) sees how to register one.
    for known in lab_oauth.providers():
        lab_oauth.remove_provider(known["name"], by="admin")
    tab = await open_integrations(alice)
    empty = tab.get_by_test_id("oauth-no-providers")
    await expect(empty).to_contain_text("No OAuth provider is registered")
    await expect(empty).to_contain_text("fo.integrations.register_oauth_provider(")
    await expect(empty).to_contain_text(lab.url + CALLBACK)
    await expect(tab.get_by_test_id("integration-connect")).to_have_count(0)
    await shot(alice, "no-provider-yet")

    name = register(lab_oauth, provider, lab)
    await empty.get_by_test_id("oauth-providers-reload").click()
    integration = f"crm-{secrets.token_hex(3)}"
    consent_tab = await click_connect(alice, tab, name, integration)
    await expect(tab.get_by_test_id("integration-waiting")).to_contain_text(f"Waiting for {name}")
    await shot(alice, "waiting-for-the-provider")

    # The provider consents and sends the tab back to the lab's callback route.
    await consent_tab.wait_for_url(re.compile(re.escape(lab.url + CALLBACK) + r"\?"))
    await expect(consent_tab.locator("h1")).to_have_text(f"Connected {integration}")
    await expect(consent_tab.locator("p")).to_contain_text(f"is connected to {name}")
    await shot_of(alice, consent_tab, "callback-connected")
    asked = provider.authorization_requests[-1]
    assert asked["code_challenge_method"] == "S256" and asked["code_challenge"] and asked["state"], asked
    assert asked["redirect_uri"] == lab.url + CALLBACK
    assert provider.token_requests == ["authorization_code"]

    # The panel stopped waiting and lists it, connected through the provider, by Alice.
    connected = row(tab, integration)
    await expect(tab.get_by_test_id("integration-done")).to_have_text(f"Connected {integration} to {name}.")
    await expect(tab.get_by_test_id("integration-waiting")).to_have_count(0)
    await expect(connected).to_have_attribute("data-oauth", "true")
    await expect(connected).to_have_attribute("data-provider", name)
    await expect(connected.get_by_test_id("integration-by")).to_have_text(alice_name)
    await expect(connected.get_by_test_id("integration-scope")).to_have_text(provider.scope)
    await expect(connected.get_by_test_id("integration-expiry")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d"))
    shown = await tab.inner_text()
    (token,) = provider.tokens
    assert token.access_token not in shown and token.refresh_token not in shown
    await shot(alice, "listed-as-connected")

    # Bob, a viewer, reads the list and is offered nothing to change.
    bob = await users.open("bob")
    bob_name = (await identity(bob))["username"]
    made = lab.api("PUT", f"floworch/api/members/{bob_name}", json={"role": "viewer"})
    assert made.status_code == 200, made.text
    bobs = await open_integrations(bob)
    await expect(row(bobs, integration)).to_have_attribute("data-oauth", "true")
    await expect(bobs.get_by_test_id("integrations-read-only")).to_contain_text("you are a viewer")
    for control in ("integration-remove", "integration-connect-form", "oauth-no-providers"):
        await expect(bobs.get_by_test_id(control)).to_have_count(0)
    await shot(bob, "viewer-reads-only")

    # Removing it (after confirming) revokes both tokens at the provider first.
    asked_to_confirm: list[str] = []

    async def accept(dialog) -> None:
        asked_to_confirm.append(dialog.message)
        await dialog.accept()

    alice.once("dialog", accept)
    await connected.get_by_test_id("integration-remove").click()
    await expect(connected).to_have_count(0)
    await expect(tab.get_by_test_id("integration-done")).to_have_text(
        f"Removed {integration}; refresh_token and access_token revoked at {name}."
    )
    assert asked_to_confirm == [
        f"Remove {integration}? Its tokens are revoked at {name} first; flows that use it fail until it is connected again."
    ]
    assert provider.revoked == ["refresh_token", "access_token"]
    assert provider.live_tokens() == []
    assert integration not in [i["name"] for i in lab.api("GET", "floworch/api/integrations").json()]
    await shot(alice, "removed-and-revoked")


async def test_a_refused_consent_shows_the_providers_answer_and_lists_nothing_against_a_local_authlib_authorization_server(
    lab, page, provider, lab_oauth
):
    name = register(lab_oauth, provider, lab)
    provider.consent = False  # the person clicks "Deny" at the provider
    tab = await open_integrations(page)
    integration = f"denied-{secrets.token_hex(3)}"
    consent_tab = await click_connect(page, tab, name, integration)

    await consent_tab.wait_for_url(re.compile(re.escape(lab.url + CALLBACK) + r"\?.*error=access_denied"))
    await expect(consent_tab.locator("h1")).to_have_text("Not connected")
    await expect(consent_tab.locator("p")).to_contain_text(f"{name} access was not granted")
    await shot_of(page, consent_tab, "callback-refused")

    error = tab.get_by_test_id("integration-error")
    await expect(error).to_contain_text(f"{integration} was not connected: {name} access was not granted")
    await expect(error).to_contain_text("nothing was stored")
    await expect(tab.get_by_test_id("integration-waiting")).to_have_count(0)
    await expect(row(tab, integration)).to_have_count(0)
    assert integration not in [i["name"] for i in lab.api("GET", "floworch/api/integrations").json()]
    assert provider.token_requests == []  # no code was issued, none exchanged
    await shot(page, "refused-consent")


async def test_closing_the_consent_tab_stops_waiting_with_a_message_against_a_local_authlib_authorization_server(
    lab, page, provider, lab_oauth
):
    # The provider's page at this address does not answer the authorization: the person is still
    # reading it when they close the tab.
    name = f"authlib-{secrets.token_hex(3)}"
    client = provider.client(lab.url)
    lab_oauth.register_provider(
        name, authorize_url=provider.url + "/consent-pending", token_url=provider.token_url, client_id=client.client_id,
        client_secret=client.client_secret, scopes=[provider.scope], by="admin",
    )  # fmt: skip
    tab = await open_integrations(page)
    integration = f"closed-{secrets.token_hex(3)}"
    consent_tab = await click_connect(page, tab, name, integration)
    await consent_tab.wait_for_url(re.compile(re.escape(provider.url + "/consent-pending") + r"\?"))
    await expect(tab.get_by_test_id("integration-waiting")).to_contain_text(f"Waiting for {name}")
    await consent_tab.close()

    error = tab.get_by_test_id("integration-error")
    await expect(error).to_have_text(
        f"The {name} tab was closed before it called back: {integration} was not connected. Connect again to retry."
    )
    await expect(tab.get_by_test_id("integration-waiting")).to_have_count(0)
    await expect(tab.get_by_test_id("integration-connect")).to_be_enabled()
    await expect(row(tab, integration)).to_have_count(0)
    await shot(page, "consent-tab-closed")
