"""OAuth 2.0 "Connect": the REST routes that start an authorization-code flow and receive the
provider's callback (thin handlers over :class:`floworch_server.oauth.OAuth`).

- ``POST /oauth/connect`` ``{"provider", "integration", "settings"?}`` -> 201 with the
  ``authorization_url`` to open in the browser. The callback URL it hands the provider is this
  server's own callback route, as the request reached it (a provider registered with a fixed
  ``redirect_uri`` uses that instead).
- ``GET /oauth/callback?state&code`` (or ``&error``): the provider sends the browser here. It
  needs the same signed-in user who started; the answer is a small HTML page for that browser
  tab, saying what was connected or what went wrong.
- ``GET /oauth/providers``: the tenant's registered providers (no client secrets).
"""

from __future__ import annotations

import asyncio
import html
from typing import Any, ClassVar

from jupyter_server.utils import url_path_join
from tornado import web

from floworch_server.errors import FloworchError
from floworch_server.oauth import CALLBACK_ROUTE, OAuth

from .handlers import FlowOrchHandler, optional, required
from .replies import error_status


class OAuthHandler(FlowOrchHandler):
    async def oauth(self) -> OAuth:
        service = await self.service()
        return OAuth.from_settings(service.settings, store=service.store, tenant=service.tenant)


class ConnectHandler(OAuthHandler):
    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        provider = required(body, "provider", (str,), 'the name of a registered OAuth provider, e.g. "hubspot"')
        integration = required(body, "integration", (str,), "the name the connected integration gets")
        settings = optional(body, "settings", (dict,), 'an object of public settings, e.g. {"base_url": "https://..."}')
        callback = f"{self.request.protocol}://{self.request.host}{url_path_join(self.base_url, CALLBACK_ROUTE)}"
        oauth = await self.oauth()
        started = await asyncio.to_thread(
            oauth.start, provider, integration, by=self.user_name, redirect_uri=callback, settings=settings
        )
        self.reply(started, 201)


class CallbackHandler(OAuthHandler):
    # Finishing a connection stores a credential: the same right as starting one.
    permissions: ClassVar[dict[str, str | None]] = {"get": "edit"}

    @web.authenticated
    async def get(self) -> None:
        args = {name: self.get_query_argument(name, None) for name in ("state", "code", "error", "error_description")}
        oauth = await self.oauth()
        record = await oauth.complete(by=self.user_name, **args)
        name, provider = record["name"], record["provider"]
        self.page(
            200,
            f"Connected {name}",
            f"Integration <b>{html.escape(name)}</b> is connected to <b>{html.escape(provider)}</b>; its tokens are stored encrypted. "
            "You can close this tab and go back to JupyterLab.",
        )

    def page(self, status: int, title: str, body_html: str) -> None:
        self.set_status(status)
        # The page shows where a connection stands; it must not be cached or framed.
        self.set_header("Cache-Control", "no-store")
        self.set_header(
            "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
        )
        self.finish(
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)} - FlowOrchestrator</title>"
            "<style>body{font:15px system-ui,sans-serif;max-width:40em;margin:4em auto;line-height:1.5}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><p>{body_html}</p></body></html>",
            set_content_type="text/html; charset=utf-8",  # APIHandler's finish would say JSON
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, FloworchError) and error_status(exc) is not None:
            self.page(status_code, "Not connected", html.escape(str(exc)))
        else:
            super().write_error(status_code, **kwargs)


class IntegrationsHandler(OAuthHandler):
    """The tenant's integrations: names, providers and public settings, never their secrets."""

    @web.authenticated
    async def get(self) -> None:
        oauth = await self.oauth()
        self.reply(await asyncio.to_thread(oauth.integrations.list))


class IntegrationHandler(OAuthHandler):
    @web.authenticated
    async def delete(self, name: str) -> None:
        # One connected through OAuth has its tokens revoked at the provider first.
        revoke = self.get_query_argument("revoke", "true") != "false"
        oauth = await self.oauth()
        self.reply(await oauth.remove(name, by=self.user_name, revoke=revoke))


class ProvidersHandler(OAuthHandler):
    @web.authenticated
    async def get(self) -> None:
        oauth = await self.oauth()
        self.reply(await asyncio.to_thread(oauth.providers))


OAUTH_ROUTES: list[tuple[str, type]] = [
    ("/oauth/connect", ConnectHandler),
    ("/oauth/callback", CallbackHandler),
    ("/oauth/providers", ProvidersHandler),
    ("/integrations", IntegrationsHandler),
    ("/integrations/{name}", IntegrationHandler),
]
