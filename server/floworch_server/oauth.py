"""OAuth 2.0 integrations: connect an integration through a provider's authorization-code flow
(PKCE S256 and state), keep its tokens fresh, and revoke them when it is removed.

- A **provider** (`register_provider`) is an authorization server and this deployment's client
  registration there: authorize, token and (optional) revocation URLs, client id, client secret
  (encrypted like every secret) and scopes. It is stored per tenant; its name is also the
  provider of the integrations connected through it, so ``"hubspot"`` integrations work with the
  HubSpot nodes.
- **Connecting** (`start`, then `complete` from the callback route) keeps the state's hash, the
  PKCE verifier, the user who started and an expiry (10 minutes) in the store, so a kernel can
  start what the Jupyter server's callback finishes. A state is used once, by its own user; the
  tokens (access, refresh, scope, expiry) go into the integration's encrypted secret. The audit
  log names the provider and the secret's field names, never a token.
- **Using** (`fresh_token`, `with_oauth_retry`, and `connectors.call` for the SaaS nodes): the
  access token is refreshed 60 s before it expires and once more when the provider answers 401;
  a rotated refresh token is stored back. A refresh token the provider refuses raises
  `ReconnectNeeded`, which names the integration and how to reconnect it.
- **Removing** (`remove`) revokes the refresh and access tokens at the provider (RFC 7009) when it
  has a revocation URL, then deletes the integration.

Every request to a provider goes through the outbound-address guard (`netguard`), as nodes' do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import re
import secrets as pysecrets
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuth2Client

from .errors import BadRequest, FloworchError, NotFound
from .integrations import Integrations
from .secrets import SecretBox
from .settings import Settings
from .store import Store

_http: types.ModuleType
try:  # Authlib's httpx client is built on httpx2 where it is installed, else on httpx
    import httpx2 as _http
except ImportError:  # pragma: no cover - depends on the environment
    _http = httpx

log = logging.getLogger(__name__)
R = TypeVar("R")
# A provider that cannot be reached: the client's errors, and the guard's own when a name does not resolve.
NETWORK_ERRORS: tuple[type[Exception], ...] = tuple({httpx.HTTPError, _http.HTTPError, httpcore.ConnectError})

# Refresh an access token this long before the provider says it expires: a request sent with a
# token that has a few seconds left could arrive after it expired.
REFRESH_MARGIN_SECONDS = 60
# How long a started authorization waits for its callback (a person signs in and consents).
AUTHORIZATION_SECONDS = 600
CALLBACK_ROUTE = "floworch/api/oauth/callback"
PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 3.3 scope-token
TOKEN_FIELDS = ("access_token", "refresh_token", "token_type", "scope", "expires_at")
TIMEOUT = _http.Timeout(30.0, connect=10.0)


class ConsentRefused(FloworchError):
    status = 403


class NotYours(FloworchError):
    status = 403


class ProviderUnavailable(FloworchError):
    """The provider's token or revocation endpoint could not be reached or failed (5xx): try again."""

    status = 502


class ReconnectNeeded(FloworchError):
    """The integration's tokens can no longer be refreshed; only its owner can fix it, by connecting again."""

    status = 409

    def __init__(self, integration: str, provider: str, why: str):
        super().__init__(
            f"integration '{integration}' must be reconnected: {why}. Reconnect it with "
            f"fo.integrations.connect('{provider}', '{integration}') (or Connect in JupyterLab), then run again"
        )
        self.integration = integration
        self.provider = provider


@dataclass(frozen=True)
class Provider:
    name: str
    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...] = ()
    revocation_url: str | None = None
    redirect_uri: str | None = None


def oauth_settings(record: dict) -> dict | None:
    """The ``settings.oauth`` of an integration connected through OAuth, else None."""
    meta = (record.get("settings") or {}).get("oauth")
    return meta if isinstance(meta, dict) and meta.get("provider") else None


def callback_url(server_url: str) -> str:
    """The callback route of the Jupyter server at ``server_url`` (its base URL included)."""
    return server_url.rstrip("/") + "/" + CALLBACK_ROUTE


class OAuth:
    def __init__(self, store: Store, box: SecretBox, tenant: str = "default"):
        self.store = store
        self.box = box
        self.tenant = tenant
        self.integrations = Integrations(store, box, tenant)
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None, tenant: str | None = None) -> OAuth:
        # The same store and key as the integrations of these settings.
        found = Integrations.from_settings(settings, store=store)
        return cls(found.store, found.box, tenant or found.tenant)

    # ------------------------------------------------------------------ providers
    def register_provider(
        self,
        name: str,
        *,
        authorize_url: str,
        token_url: str,
        client_id: str,
        client_secret: str,
        scopes: list[str] | tuple[str, ...] | str = (),
        revocation_url: str | None = None,
        redirect_uri: str | None = None,
        by: str,
    ) -> dict:
        """Create or replace a provider of this tenant; returns its public record (no client secret)."""
        if not isinstance(name, str) or not PROVIDER_NAME.fullmatch(name):
            raise BadRequest(f"must be 1 to 64 characters of a-z, 0-9, '_', '.' and '-', got {name!r}", field="name")
        for field_name, url in (
            ("authorize_url", authorize_url),
            ("token_url", token_url),
            ("revocation_url", revocation_url),
            ("redirect_uri", redirect_uri),
        ):
            if url is not None or field_name in ("authorize_url", "token_url"):
                _require_url(field_name, url)
        for field_name, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(
                    "is required: a non-empty string from the provider's app registration", field=field_name
                )
        scope_list = scopes.split() if isinstance(scopes, str) else list(scopes)
        bad = [s for s in scope_list if not isinstance(s, str) or not SCOPE.fullmatch(s)]
        if bad:
            raise BadRequest(f"each scope must be one word of printable characters, got {bad[0]!r}", field="scopes")
        record = self.store.put_oauth_provider(
            name=name, authorize_url=authorize_url, token_url=token_url, revocation_url=revocation_url, redirect_uri=redirect_uri,
            client_id=client_id, client_secret=self.box.encrypt({"client_secret": client_secret}), scopes=scope_list,
            created_by=by, tenant=self.tenant,
        )  # fmt: skip
        self.store.audit(
            by, "oauth.provider.put", name, {"fields": ["client_id", "client_secret"], "scopes": scope_list}
        )
        return record

    def providers(self) -> list[dict]:
        return self.store.list_oauth_providers(self.tenant)

    def provider(self, name: str) -> Provider:
        record = self.store.get_oauth_provider(name, tenant=self.tenant)
        if record is None:
            known = ", ".join(p["name"] for p in self.providers()) or "none"
            raise NotFound(
                "OAuth provider", name, f"known: {known}; register one with fo.integrations.register_oauth_provider"
            )
        secret = self.box.decrypt(record["client_secret"], f"client secret of OAuth provider '{name}'")
        return Provider(
            name=record["name"], authorize_url=record["authorize_url"], token_url=record["token_url"], client_id=record["client_id"],
            client_secret=secret["client_secret"], scopes=tuple(record["scopes"] or ()), revocation_url=record["revocation_url"],
            redirect_uri=record["redirect_uri"],
        )  # fmt: skip

    def remove_provider(self, name: str, *, by: str) -> None:
        try:
            self.store.delete_oauth_provider(name, tenant=self.tenant)
        except KeyError:
            raise NotFound("OAuth provider", name) from None
        self.store.audit(by, "oauth.provider.delete", name, None)

    # ------------------------------------------------------------------ connecting
    def start(
        self, provider: str, integration: str, *, by: str, redirect_uri: str | None = None, settings: dict | None = None
    ) -> dict:
        """Begin connecting ``integration`` through ``provider``: returns the authorization URL to
        open in a browser, the redirect URI the provider will call back and when this expires.

        ``redirect_uri`` is the callback route as the browser reaches it; the provider's own
        ``redirect_uri``, when registered, wins (it must match the provider's app exactly)."""
        if not isinstance(integration, str) or not integration.strip() or len(integration) > 255:
            raise BadRequest("must be a non-empty name of at most 255 characters", field="integration")
        if settings is not None and not isinstance(settings, dict):
            raise BadRequest('must be an object of public settings, e.g. {"base_url": "https://..."}', field="settings")
        prov = self.provider(provider)
        existing = self.store.get_integration(integration, tenant=self.tenant, with_secret=False)
        if existing is not None and existing["provider"] != prov.name:
            raise BadRequest(
                f"integration '{integration}' exists for provider {existing['provider']}, not {prov.name}; choose another name or remove it first",
                field="integration",
            )
        callback = prov.redirect_uri or redirect_uri
        if not callback:
            raise BadRequest(
                f"no callback URL: register provider '{prov.name}' with redirect_uri=<Jupyter server URL>/{CALLBACK_ROUTE}, or start from a Jupyter server",
                field="redirect_uri",
            )
        _require_url("redirect_uri", callback)
        state, verifier = pysecrets.token_urlsafe(32), pysecrets.token_urlsafe(64)
        with OAuth2Client(
            client_id=prov.client_id,
            scope=" ".join(prov.scopes) or None,
            redirect_uri=callback,
            code_challenge_method="S256",
        ) as client:
            url, _ = client.create_authorization_url(prov.authorize_url, state=state, code_verifier=verifier)
        expires = datetime.now(UTC) + timedelta(seconds=AUTHORIZATION_SECONDS)
        self.store.add_oauth_authorization(
            {
                "state_hash": _digest(state), "tenant": self.tenant, "provider": prov.name, "integration": integration,
                "started_by": by, "redirect_uri": callback, "code_verifier": self.box.encrypt(verifier),
                "settings": settings or {}, "expires_at": expires,
            }
        )  # fmt: skip
        return {
            "authorization_url": url, "provider": prov.name, "integration": integration, "redirect_uri": callback,
            "expires_at": expires, "connection": _connection(state),
        }  # fmt: skip

    async def complete(
        self,
        *,
        state: str | None,
        by: str,
        code: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> dict:
        """Finish the authorization the callback's ``state`` names: exchange ``code`` for tokens
        and store them in the integration. Returns its public record.

        The state is spent by the first callback that brings it, whatever happens next; a refused
        consent, an unknown, reused or expired state, or another user's state store nothing."""
        if not state:
            raise BadRequest(
                "is missing from the callback: open the authorization URL the connect step gave", field="state"
            )
        row = await asyncio.to_thread(self.store.take_oauth_authorization, _digest(state), tenant=self.tenant)
        if row is None:
            raise BadRequest(
                "is unknown or was already used: start connecting again (fo.integrations.connect or Connect in JupyterLab)",
                field="state",
            )
        again = f"fo.integrations.connect('{row['provider']}', '{row['integration']}')"
        if row["expires_at"] < datetime.now(UTC):
            raise BadRequest(
                f"expired: the authorization was started more than {AUTHORIZATION_SECONDS // 60} minutes ago; start again with {again}",
                field="state",
            )
        if row["started_by"] != by:
            raise NotYours(
                f"state: this authorization was started by another user, not by '{by}'; start your own with {again}"
            )
        if error:
            described = f" ({error_description})" if error_description else ""
            if error == "access_denied":
                raise ConsentRefused(
                    f"{row['provider']} access was not granted{described}: nothing was stored; to connect, run {again} and allow access"
                )
            raise BadRequest(
                f"{row['provider']} answered {error}{described}: nothing was stored; check the provider's app registration, then {again}",
                field="error",
            )
        if not code:
            raise BadRequest(
                f"is missing from the callback: nothing was stored; start again with {again}", field="code"
            )
        from . import netguard

        prov = await asyncio.to_thread(self.provider, row["provider"])
        verifier = self.box.decrypt(row["code_verifier"], "PKCE verifier")
        try:
            async with self._client(prov, redirect_uri=row["redirect_uri"]) as client:
                token = await client.fetch_token(
                    prov.token_url, grant_type="authorization_code", code=code, code_verifier=verifier
                )
        except OAuthError as exc:
            raise BadRequest(
                f"{prov.name} refused the authorization code ({_described(exc)}): nothing was stored; start again with {again}",
                field="code",
            ) from None
        except NETWORK_ERRORS as exc:
            raise ProviderUnavailable(
                f"could not exchange the authorization code at {prov.name}'s token URL {prov.token_url}: {_http_error(exc)}; start again with {again}"
            ) from None
        except netguard.AddressRefused as exc:
            raise BadRequest(f"OAuth provider '{prov.name}': {exc}", field="token_url") from None
        secret = _token_secret(token)
        if not secret.get("access_token"):
            raise BadRequest(f"{prov.name}'s token answer has no access_token: nothing was stored", field="code")
        existing = await asyncio.to_thread(
            self.store.get_integration, row["integration"], tenant=self.tenant, with_secret=False
        )
        settings = {**((existing or {}).get("settings") or {}), **(row["settings"] or {})}
        settings["oauth"] = {"provider": prov.name, "scope": secret.get("scope"), "expires_at": _iso(secret.get("expires_at")),
                             "connected_by": by, "connection": row["state_hash"][:16]}  # fmt: skip
        record = await asyncio.to_thread(
            self.store.put_integration,
            name=row["integration"],
            provider=prov.name,
            secret=self.box.encrypt(secret),
            settings=settings,
            created_by=by,
            tenant=self.tenant,
        )
        # Names what was stored, never a token.
        await asyncio.to_thread(
            self.store.audit,
            by,
            "integration.oauth.connect",
            row["integration"],
            {"provider": prov.name, "fields": sorted(secret)},
        )
        return record

    # ------------------------------------------------------------------ using
    async def fresh_secret(self, name: str, *, force: bool = False, rejected: str | None = None) -> tuple[dict, dict]:
        """(public record, secret) of integration ``name`` with an access token that is not about
        to expire: refreshed (and the rotated refresh token stored) when it is.

        ``force``: refresh even if it looks valid (the provider answered 401 to ``rejected``, the
        access token sent); skipped when the stored token is no longer ``rejected`` (another
        request refreshed it meanwhile). Integrations not connected through OAuth come back as is."""
        record, secret = await asyncio.to_thread(self.integrations.get, name)
        if oauth_settings(record) is None or not self._needs_refresh(secret, force, rejected):
            return record, secret
        async with self._lock(name):
            record, secret = await asyncio.to_thread(self.integrations.get, name)  # another request may have refreshed
            if not self._needs_refresh(secret, force, rejected):
                return record, secret
            return await self._refresh(name, record, secret)

    async def fresh_token(self, name: str) -> str:
        """A valid access token of integration ``name`` (see `fresh_secret`)."""
        _, secret = await self.fresh_secret(name)
        return str(secret["access_token"])

    async def with_oauth_retry(
        self, name: str, call: Callable[[str], Awaitable[R]], *, unauthorized: Callable[[R], bool] | None = None
    ) -> R:
        """``await call(access_token)``; when its answer is a 401 (``unauthorized`` decides; default:
        an ``httpx.Response`` with status 401) the token is refreshed and ``call`` made once more."""
        refused = unauthorized or (lambda answer: getattr(answer, "status_code", None) == 401)
        token = await self.fresh_token(name)
        answer = await call(token)
        if not refused(answer):
            return answer
        _, secret = await self.fresh_secret(name, force=True, rejected=token)
        return await call(str(secret["access_token"]))

    @staticmethod
    def _needs_refresh(secret: dict, force: bool, rejected: str | None) -> bool:
        if force:
            return rejected is None or secret.get("access_token") == rejected
        expires_at = secret.get("expires_at")
        return isinstance(expires_at, (int, float)) and expires_at - REFRESH_MARGIN_SECONDS <= time.time()

    async def _refresh(self, name: str, record: dict, secret: dict) -> tuple[dict, dict]:
        from . import netguard

        meta = oauth_settings(record) or {}
        try:
            prov = await asyncio.to_thread(self.provider, meta["provider"])
        except NotFound:
            raise ReconnectNeeded(
                name,
                meta["provider"],
                f"its OAuth provider '{meta['provider']}' is no longer registered; register it again",
            ) from None
        refresh_token = secret.get("refresh_token")
        if not refresh_token:
            raise ReconnectNeeded(name, prov.name, f"its access token expired and {prov.name} gave no refresh token")
        try:
            async with self._client(prov) as client:
                token = await client.refresh_token(prov.token_url, refresh_token=refresh_token)
        except OAuthError as exc:
            # Another process may have spent (and rotated) this refresh token a moment ago.
            record, current = await asyncio.to_thread(self.integrations.get, name)
            if current.get("refresh_token") != refresh_token:
                return record, current
            log.warning("OAuth refresh of integration %r refused by %s: %s", name, prov.name, exc.error)
            raise ReconnectNeeded(
                name, prov.name, f"{prov.name} refused its refresh token ({_described(exc)}); it expired or was revoked"
            ) from None
        except NETWORK_ERRORS as exc:
            raise ProviderUnavailable(
                f"could not refresh integration '{name}' at {prov.name}'s token URL {prov.token_url}: {_http_error(exc)}"
            ) from None
        except netguard.AddressRefused as exc:
            raise BadRequest(
                f"OAuth provider '{prov.name}' of integration '{name}': {exc}", field="token_url"
            ) from None
        fresh = _token_secret(token, previous=secret)
        settings = dict(record.get("settings") or {})
        settings["oauth"] = {**meta, "scope": fresh.get("scope"), "expires_at": _iso(fresh.get("expires_at"))}
        saved = await asyncio.to_thread(
            self.store.put_integration,
            name=name,
            provider=record["provider"],
            secret=self.box.encrypt(fresh),
            settings=settings,
            created_by=record["created_by"],
            tenant=self.tenant,
        )
        log.info("refreshed the OAuth tokens of integration %r at %s", name, prov.name)
        return saved, fresh

    def _lock(self, name: str) -> asyncio.Lock:
        # One refresh at a time per integration in this process (a lock belongs to one event loop).
        key = (id(asyncio.get_running_loop()), name)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    # ------------------------------------------------------------------ removing
    async def remove(self, name: str, *, by: str, revoke: bool = True) -> dict:
        """Revoke an OAuth integration's tokens at its provider (when it has a revocation URL),
        then delete it. Returns ``{"revoked": [token types]}``. A revocation that fails keeps the
        integration; ``revoke=False`` deletes without asking the provider."""
        record = await asyncio.to_thread(self.store.get_integration, name, tenant=self.tenant, with_secret=False)
        meta = oauth_settings(record) if record else None
        revoked: list[str] = []
        if meta and revoke:
            _, secret = await asyncio.to_thread(self.integrations.get, name)
            try:
                prov = await asyncio.to_thread(self.provider, meta["provider"])
            except NotFound:
                prov = None
            if prov is not None and prov.revocation_url:
                revoked = await self._revoke(name, prov, secret)
                await asyncio.to_thread(
                    self.store.audit, by, "integration.oauth.revoke", name, {"provider": prov.name, "fields": revoked}
                )
        await asyncio.to_thread(self.integrations.remove, name, by=by)
        return {"revoked": revoked}

    async def _revoke(self, name: str, prov: Provider, secret: dict) -> list[str]:
        from . import netguard

        done = []
        keep = f"integration '{name}' is kept; try again later, or remove it without revoking (revoke=False) and revoke access at {prov.name}"
        async with self._client(prov) as client:
            # The refresh token first: revoking it ends the grant, and with it the access tokens.
            for hint in ("refresh_token", "access_token"):
                if not secret.get(hint):
                    continue
                try:
                    answer = await client.revoke_token(prov.revocation_url, token=secret[hint], token_type_hint=hint)
                except NETWORK_ERRORS as exc:
                    raise ProviderUnavailable(
                        f"could not revoke the {hint} at {prov.name} ({prov.revocation_url}): {_http_error(exc)}; {keep}"
                    ) from None
                except netguard.AddressRefused as exc:
                    raise BadRequest(f"OAuth provider '{prov.name}': {exc}; {keep}", field="revocation_url") from None
                # RFC 7009 2.2: 200 for a revoked or already invalid token.
                if answer.status_code != 200:
                    raise ProviderUnavailable(
                        f"{prov.name} answered HTTP {answer.status_code} to revoking the {hint}: {answer.text[:200]}; {keep}"
                    )
                done.append(hint)
        return done

    # ------------------------------------------------------------------ helpers
    def _client(self, prov: Provider, *, redirect_uri: str | None = None) -> AsyncOAuth2Client:
        from . import netguard

        allow = netguard.allow_list()
        for field_name, url in (("token_url", prov.token_url), ("revocation_url", prov.revocation_url)):
            try:
                if url:
                    netguard.check_url(url, allow)
            except netguard.AddressRefused as exc:
                raise BadRequest(f"OAuth provider '{prov.name}': {exc}", field=field_name) from None
        # No redirects: the client secret and tokens go to the provider's own endpoints only.
        return AsyncOAuth2Client(
            client_id=prov.client_id,
            client_secret=prov.client_secret,
            redirect_uri=redirect_uri,
            transport=_guarded_transport(allow),
            timeout=TIMEOUT,
            follow_redirects=False,
        )


def _guarded_transport(allow: Any) -> Any:
    """A transport for Authlib's client whose every connection goes through the outbound-address
    guard: `netguard.guarded_transport` for httpx; for httpx2, the same `netguard.GuardedBackend`
    in front of httpcore2's own network backend."""
    from . import netguard

    if _http is httpx:
        return netguard.guarded_transport(allow)
    import httpcore2

    transport = _http.AsyncHTTPTransport()
    pool = transport._pool
    if not isinstance(pool, httpcore2.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx2/httpcore2 version cannot be guarded: its connection pool changed")
    # httpcore2 is httpcore under another name: the guard's httpcore types fit it, though mypy cannot tell.
    pool._network_backend = netguard.GuardedBackend(allow, inner=httpcore2.AnyIOBackend())  # type: ignore[assignment,arg-type]
    return transport


# ---------------------------------------------------------------------- for activities
_worker: dict[str, OAuth] = {}


def worker_oauth() -> OAuth:
    """The `OAuth` of this process's settings (one store per settings, as `integrations.lookup`)."""
    settings = Settings.from_env()
    key = json.dumps(dataclasses.asdict(settings), sort_keys=True, default=str)
    if key not in _worker:
        _worker[key] = OAuth.from_settings(settings)
    return _worker[key]


async def fresh_token(integration: str) -> str:
    """For activities: a valid access token of ``integration``, refreshed when about to expire.
    Raises `ReconnectNeeded` when the provider no longer accepts its refresh token."""
    return await worker_oauth().fresh_token(integration)


async def fresh_secret(integration: str, *, force: bool = False, rejected: str | None = None) -> tuple[dict, dict]:
    return await worker_oauth().fresh_secret(integration, force=force, rejected=rejected)


async def with_oauth_retry(
    integration: str, call: Callable[[str], Awaitable[R]], *, unauthorized: Callable[[R], bool] | None = None
) -> R:
    """For connectors: ``call(access_token)``, refreshed and made once more on a 401."""
    return await worker_oauth().with_oauth_retry(integration, call, unauthorized=unauthorized)


# ---------------------------------------------------------------------- small helpers
def _digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _connection(state: str) -> str:
    """A public id of one connect attempt (the start of its state's hash): what a waiting
    `fo.integrations.connect` looks for in the integration's settings."""
    return _digest(state)[:16]


def _require_url(field_name: str, url: Any) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(f"must be an http(s) URL, got {url!r}", field=field_name)


def _token_secret(token: dict, previous: dict | None = None) -> dict:
    """The fields of a token answer kept in the secret. A refresh answer without a new refresh
    token (no rotation) keeps the previous one; one without a scope keeps the granted scope."""
    secret = {k: token[k] for k in TOKEN_FIELDS if token.get(k) is not None}
    for keep in ("refresh_token", "scope"):
        if keep not in secret and previous and previous.get(keep):
            secret[keep] = previous[keep]
    if "expires_at" not in secret and token.get("expires_in"):
        secret["expires_at"] = int(time.time()) + int(token["expires_in"])
    return secret


def _iso(epoch: Any) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat() if isinstance(epoch, (int, float)) else None


def _described(exc: OAuthError) -> str:
    return f"{exc.error}: {exc.description}" if exc.description else str(exc.error)


def _http_error(exc: Exception) -> str:
    if isinstance(exc, (httpx.HTTPStatusError, _http.HTTPStatusError)):
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"
