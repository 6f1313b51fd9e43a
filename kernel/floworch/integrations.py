"""Stored credentials of external providers, from a notebook::

    fo.integrations.add("openai-main", "openai", api_key="sk-...")
    fo.integrations.list()
    fo.integrations.remove("openai-main")

OAuth 2.0 providers (authorization code with PKCE): an admin registers the provider once, then
anyone connects an integration through it in the browser::

    fo.integrations.register_oauth_provider("hubspot", authorize_url=..., token_url=...,
        revocation_url=..., client_id=..., client_secret=..., scopes=["crm.objects.contacts.write"])
    fo.integrations.connect("hubspot", "hubspot-sales")   # shows the link to open; .wait() for the callback
    fo.integrations.remove("hubspot-sales")               # revokes its tokens at the provider first

Nodes name an integration in their config; the secret itself is encrypted in the store and
only decrypted by the activity that uses it (OAuth access tokens are refreshed there)."""

from __future__ import annotations

import builtins
import html
import time
from typing import Any

import pandas as pd

from floworch_server.integrations import Integrations
from floworch_server.oauth import OAuth, callback_url, oauth_settings

from ._loop import run_sync
from ._service import service, user


def _integrations() -> Integrations:
    svc = service()
    return Integrations.from_settings(svc.settings, store=svc.store)


def add(name: str, provider: str, *, settings: dict | None = None, **secret: Any) -> dict:
    """Store (or replace) an integration; keyword arguments are its secret fields."""
    record = _integrations().add(name, provider, secret, by=user(), settings=settings)
    return {k: record[k] for k in ("name", "provider", "settings")}


def list() -> pd.DataFrame:  # fo.integrations.list() reads naturally
    rows = _integrations().list()
    return pd.DataFrame(rows, columns=["name", "provider", "settings", "created_by", "updated_at"])


def remove(name: str, *, revoke: bool = True) -> None:
    """Delete an integration. One connected through OAuth has its tokens revoked at the provider
    first (when the provider has a revocation URL); ``revoke=False`` skips that."""
    run_sync(_oauth().remove(name, by=user(), revoke=revoke))


# ---------------------------------------------------------------------- OAuth 2.0
def _oauth() -> OAuth:
    svc = service()
    return OAuth.from_settings(svc.settings, store=svc.store)


def register_oauth_provider(
    name: str,
    *,
    authorize_url: str,
    token_url: str,
    client_id: str,
    client_secret: str,
    scopes: builtins.list[str] | tuple[str, ...] | str = (),  # (`list` is a function here)
    revocation_url: str | None = None,
    redirect_uri: str | None = None,
) -> dict:
    """Register (or replace) an OAuth 2.0 provider; ``name`` is also the provider of the
    integrations connected through it (``"hubspot"`` for the HubSpot nodes). ``redirect_uri``:
    the callback URL registered at the provider, when it is not this Jupyter server's own
    ``<server URL>/floworch/api/oauth/callback``."""
    record = _oauth().register_provider(
        name, authorize_url=authorize_url, token_url=token_url, client_id=client_id, client_secret=client_secret,
        scopes=scopes, revocation_url=revocation_url, redirect_uri=redirect_uri, by=user(),
    )  # fmt: skip
    return {
        k: record[k]
        for k in ("name", "authorize_url", "token_url", "revocation_url", "redirect_uri", "client_id", "scopes")
    }


def oauth_providers() -> pd.DataFrame:
    rows = _oauth().providers()
    return pd.DataFrame(
        rows,
        columns=[
            "name",
            "authorize_url",
            "token_url",
            "revocation_url",
            "redirect_uri",
            "client_id",
            "scopes",
            "updated_at",
        ],
    )


class Connection:
    """A connection under way: shows as a link to the provider's consent page; `wait` blocks
    until the provider called back and the tokens are stored."""

    def __init__(self, started: dict, oauth: OAuth):
        self.url: str = started["authorization_url"]
        self.provider: str = started["provider"]
        self.integration: str = started["integration"]
        self.expires_at = started["expires_at"]
        self._id = started["connection"]
        self._oauth = oauth

    @property
    def connected(self) -> bool:
        record = self._oauth.store.get_integration(self.integration, tenant=self._oauth.tenant, with_secret=False)
        meta = oauth_settings(record) if record else None
        return bool(meta and meta.get("connection") == self._id)

    def wait(self, timeout: float = 600, interval: float = 0.5) -> dict:
        """Wait for the callback; returns the integration's public record."""
        deadline = time.monotonic() + timeout
        while not self.connected:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"integration '{self.integration}' was not connected within {timeout:g}s: open {self.url} and allow access "
                    f"(the link is valid until {self.expires_at:%H:%M:%S} UTC), or connect again"
                )
            time.sleep(interval)
        record = self._oauth.store.get_integration(self.integration, tenant=self._oauth.tenant, with_secret=False)
        if record is None:
            raise LookupError(f"integration '{self.integration}' was removed while it was being connected")
        return {k: record[k] for k in ("name", "provider", "settings")}

    def __repr__(self) -> str:
        return f"Open this URL to connect integration '{self.integration}' to {self.provider}:\n{self.url}"

    def _repr_html_(self) -> str:
        return (
            f"Connect integration <b>{html.escape(self.integration)}</b> to {html.escape(self.provider)}: "
            f'<a href="{html.escape(self.url)}" target="_blank" rel="noopener">open the consent page</a>'
        )


def connect(
    provider: str, name: str, *, settings: dict | None = None, wait: bool = False, timeout: float = 600
) -> Connection:
    """Connect integration ``name`` through OAuth provider ``provider``: returns a `Connection`
    that shows the link to open (valid 10 minutes, for you only). With ``wait=True`` the link
    is shown at once and the call returns when the callback has stored the tokens.

    The provider calls back this kernel's Jupyter server (FLOWORCH_JUPYTER_URL, or the running
    server found as for rooms), unless the provider was registered with its own redirect_uri."""
    from .collab import find_server

    oauth = _oauth()
    server = find_server()
    redirect = callback_url(server.url) if server is not None else None
    connection = Connection(oauth.start(provider, name, by=user(), redirect_uri=redirect, settings=settings), oauth)
    if wait:
        _show(connection)
        connection.wait(timeout)
    return connection


def _show(connection: Connection) -> None:
    try:
        from IPython.display import display

        display(connection)
    except ImportError:
        print(repr(connection))
