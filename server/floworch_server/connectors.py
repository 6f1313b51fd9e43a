"""Connectors: how action nodes talk to a SaaS provider's REST API.

A `Connector` describes a provider once: its default base URL, how a stored integration
authenticates requests, where its rate-limit headers are, how its list calls page, whether it
accepts an idempotency key and how its error bodies read. `call()` is the one way an action
node calls a provider: it fetches the node's integration by name (the secret never enters the
node config, the plan or Temporal history), sends one logical request - waiting out short rate
limits inside the activity, with heartbeats - and returns the provider's answer or raises a
failure that tells Temporal whether another attempt can help:

- 401/403: not retried; the integration was refused and needs a fresh credential (an integration
  connected through OAuth first refreshes its access token once on a 401, see `oauth`);
- 400/404/422 and other 4xx: not retried; the provider's message says what it disliked;
- 429: waited out in the activity when the provider asks for a short pause, otherwise retried
  by Temporal no sooner than the provider asked;
- 5xx, timeouts, unreachable provider: retried by the node's retry policy.

Before each request the call takes a turn at the deployment's own limit for the provider
(``FLOWORCH_RATE_LIMIT_PROVIDERS``, see `ratelimit`), shared by every worker process.

A new provider is a `Connector`, an operation function that calls `call()`, and a `NodeSpec`
(see `nodes/saas.py`).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json as jsonlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from . import integrations, oauth, ratelimit
from .errors import FloworchError, NotFound
from .secrets import SecretError

# `floworch_server.nodes` and `floworch_server.netguard` are imported inside functions: the
# nodes package imports every node module when it loads, `nodes.saas` among them, and that
# module needs this one's classes to be defined already.

# Pauses adding up to this long are waited out in the activity (one logical call, one attempt,
# well within the node's timeout); longer ones are left to Temporal, which frees the worker slot.
INLINE_WAIT_SECONDS = 10.0
INLINE_WAITS = 3
HEARTBEAT_EVERY_SECONDS = 1.0
ERROR_SNIPPET = 300


# ------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class Auth:
    """How an integration's secret authenticates a request."""

    style: Literal["bearer", "basic", "header"] = "bearer"
    token_field: str = "access_token"  # bearer, header: the secret field holding the token
    header: str = "Authorization"  # header: the header that carries the token as is (e.g. "X-API-Key")
    username_field: str = "username"  # basic
    password_field: str = "password"  # basic

    def secret_fields(self) -> tuple[str, ...]:
        return (self.username_field, self.password_field) if self.style == "basic" else (self.token_field,)

    def headers(self, secret: Mapping[str, Any]) -> dict[str, str]:
        """The headers for ``secret``; raises KeyError naming the first missing field."""
        for name in self.secret_fields():
            if not secret.get(name):
                raise KeyError(name)
        if self.style == "basic":
            pair = f"{secret[self.username_field]}:{secret[self.password_field]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        token = str(secret[self.token_field])
        return {self.header: f"Bearer {token}" if self.style == "bearer" else token}


# Reads: a repeated one changes nothing, so they carry no idempotency key (here and in action.http).
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Idempotency:
    """Where a provider accepts a key that makes a repeated request a no-op (header or query parameter)."""

    header: str | None = None
    param: str | None = None
    max_length: int | None = None  # a longer key is replaced by a UUID derived from it (still stable)

    def key(self, raw: str) -> str:
        if self.max_length is not None and len(raw) > self.max_length:
            return str(uuid.uuid5(uuid.NAMESPACE_URL, raw))
        return raw


@dataclass(frozen=True)
class RateLimit:
    """The headers a provider states its limits in; None: it does not send that header."""

    retry_after: str | None = "Retry-After"
    remaining: str | None = "X-RateLimit-Remaining"
    reset: str | None = "X-RateLimit-Reset"

    def wait_seconds(self, headers: Mapping[str, str], now: float | None = None) -> float | None:
        """How long the provider asks us to wait before the next request; None: it does not say."""
        now = time.time() if now is None else now
        if self.retry_after and (value := headers.get(self.retry_after)):
            value = value.strip()
            try:
                return max(0.0, float(value))
            except ValueError:
                try:  # Retry-After may also be an HTTP date
                    return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
                except (TypeError, ValueError):
                    return None
        if self.reset and (value := headers.get(self.reset)):
            try:
                reset = float(value)
            except ValueError:
                return None
            # Providers disagree on the unit: a number past 2001 in seconds is a Unix time, a smaller one a delay.
            return max(0.0, reset - now) if reset > 1e9 else reset
        return None

    def exhausted(self, headers: Mapping[str, str]) -> bool:
        value = headers.get(self.remaining) if self.remaining else None
        try:
            return value is not None and float(value) <= 0
        except ValueError:
            return False


@dataclass(frozen=True)
class Pagination:
    """How a provider's list calls page.

    - ``cursor``: the body holds the next cursor at ``next`` (a dotted path); it is sent back as
      the query parameter ``param``. The last page has none.
    - ``next_link``: the body holds the next page's URL at ``next``, or, with ``next`` empty, the
      ``Link: <...>; rel="next"`` header does. It is only followed on the provider's own origin.
    - ``offset``: the query parameter ``param`` counts the items already read; a page shorter
      than ``page_size`` is the last one.
    """

    style: Literal["cursor", "next_link", "offset"]
    next: str = ""
    param: str = "cursor"
    limit_param: str | None = "limit"
    page_size: int = 100


def default_error_message(body: Any) -> str | None:
    """The human part of a typical JSON error body."""
    if isinstance(body, dict):
        for key in ("message", "error_description", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"]
    return None


@dataclass(frozen=True)
class Connector:
    provider: str  # the integration provider name, e.g. "slack"
    title: str  # how messages name it, e.g. "Slack"
    base_url: str  # used unless the integration's settings.base_url says otherwise
    auth: Auth = Auth()
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request
    idempotency: Idempotency | None = None
    rate_limit: RateLimit = RateLimit()
    pagination: Pagination | None = None
    # The provider's message from its error body.
    error_message: Callable[[Any], str | None] = default_error_message
    # The status an answer means, for providers whose status code says otherwise (Slack answers
    # errors with 200, Google reports rate limits as 403); None: the status code is the truth.
    status_of: Callable[[int, Any], int] | None = None
    # Provider error codes or messages -> what the user can do about them.
    hints: Mapping[str, str] = field(default_factory=dict)
    # Shown when the integration is missing: the secret to store and where to get it.
    credential_help: str = ""
    timeout_seconds: float = 30.0

    def add_example(self, name: str) -> str:
        """The notebook line that stores an integration for this connector."""
        fields = ", ".join(f"{f}='...'" for f in self.auth.secret_fields())
        return f"fo.integrations.add('{name}', '{self.provider}', {fields})"


@dataclass(frozen=True)
class Account:
    """An integration resolved for a connector. The secret is kept out of repr (and so of logs)."""

    name: str
    settings: Mapping[str, Any]
    base_url: str
    secret: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


# ------------------------------------------------------------------ calling
async def account(connector: Connector, name: str) -> Account:
    """The stored integration ``name``, checked to belong to ``connector``'s provider."""
    from .nodes.spec import NodeError

    needs = f" (needs {connector.credential_help})" if connector.credential_help else ""
    try:
        # The store is synchronous: keep the activity's event loop (and its heartbeats) free.
        record, secret = await asyncio.to_thread(integrations.lookup, name)
    except NotFound:
        raise NodeError(
            f"config.integration: no integration named '{name}' is stored; add it with {connector.add_example(name)}{needs}, "
            f"or name an existing {connector.title} integration",
            retryable=False,
            kind="IntegrationMissing",
            details={"integration": name, "provider": connector.provider},
        ) from None
    except (FloworchError, SecretError) as exc:
        raise NodeError(
            f"config.integration: {exc}", retryable=False, kind="IntegrationInvalid", details={"integration": name}
        ) from None
    if record["provider"] != connector.provider:
        raise NodeError(
            f"config.integration: integration '{name}' is for {record['provider']}, not {connector.provider}; "
            f"name a {connector.title} integration or add one with {connector.add_example('<name>')}{needs}",
            retryable=False,
            kind="IntegrationInvalid",
            details={"integration": name, "provider": connector.provider},
        )
    if oauth.oauth_settings(record) is not None:
        # Connected through OAuth: an access token about to expire is refreshed first (oauth.py).
        record, secret = await _oauth_secret(connector, name)
    settings = dict(record.get("settings") or {})
    base_url = str(settings.get("base_url") or connector.base_url).rstrip("/")
    if urlsplit(base_url).scheme not in ("http", "https"):
        raise NodeError(
            f"integration '{name}': settings.base_url must be an http(s) URL, got {base_url!r}; store it again with settings={{'base_url': 'https://...'}}",
            retryable=False,
            kind="IntegrationInvalid",
        )
    return Account(name=name, settings=settings, base_url=base_url, secret=secret)


async def _oauth_secret(connector: Connector, name: str, **refresh: Any) -> tuple[dict, dict]:
    """(record, secret) of an OAuth integration with a fresh access token; the node's error when
    it cannot have one: reconnecting is for a person (not retried), an unreachable provider is retried."""
    from .nodes.spec import NodeError

    details = {"integration": name, "provider": connector.provider}
    try:
        return await oauth.fresh_secret(name, **refresh)
    except oauth.ReconnectNeeded as exc:
        raise NodeError(str(exc), retryable=False, kind="IntegrationReconnect", details=details) from None
    except oauth.ProviderUnavailable as exc:
        raise NodeError(f"{exc}; retrying", kind="ProviderUnavailable", details=details) from None
    except (FloworchError, SecretError) as exc:
        raise NodeError(
            f"config.integration: {exc}", retryable=False, kind="IntegrationInvalid", details=details
        ) from None


async def call(
    ctx: Any,
    connector: Connector,
    integration: str | Account,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: Mapping[str, Any] | None = None,
    accept: tuple[int, ...] = (),
    idempotency_key: str | None = None,
) -> Reply:
    """One logical request to ``connector``'s API as ``integration``.

    Returns the reply of a 2xx answer, or of an answer whose status is in ``accept`` (for an
    operation that handles it, e.g. a 409 conflict). Anything else raises (see the module doc).
    ``idempotency_key`` defaults to the node's own key; a node that writes twice to a provider
    that takes keys gives each write its own."""
    acct = integration if isinstance(integration, Account) else await account(connector, integration)
    async with _client(connector, acct) as client:
        return await _request(
            ctx,
            connector,
            acct,
            client,
            method,
            path,
            json=json,
            params=dict(params or {}),
            accept=accept,
            idempotency_key=idempotency_key or ctx.idempotency_key,
        )


async def items(
    ctx: Any,
    connector: Connector,
    integration: str | Account,
    path: str,
    *,
    key: str,
    params: Mapping[str, Any] | None = None,
    max_items: int | None = None,
) -> AsyncIterator[Any]:
    """The items of a list call, page after page: ``key`` is the dotted path of a page's items."""
    from .nodes.spec import NodeError

    paging = connector.pagination
    if paging is None:
        raise NodeError(
            f"{connector.title} list calls are not paged by this connector", retryable=False, kind="ConnectorError"
        )
    acct = integration if isinstance(integration, Account) else await account(connector, integration)
    query = dict(params or {})
    if paging.limit_param:
        query.setdefault(paging.limit_param, paging.page_size)
    offset, count, target = 0, 0, path
    async with _client(connector, acct) as client:
        while True:
            reply = await _request(ctx, connector, acct, client, "GET", target, params=query, idempotency_key=None)
            page = _dig(reply.body, key) or []
            for item in page:
                yield item
                count += 1
                if max_items is not None and count >= max_items:
                    return
            if paging.style == "cursor":
                cursor = _dig(reply.body, paging.next)
                if not cursor:
                    return
                query[paging.param] = cursor
            elif paging.style == "offset":
                if len(page) < paging.page_size:
                    return
                offset += len(page)
                query[paging.param] = offset
            else:
                link = _dig(reply.body, paging.next) if paging.next else _link_next(reply.headers.get("link", ""))
                if not link:
                    return
                target, query = _same_origin_link(connector, acct, str(link)), {}
            # The quota is spent: wait for the window to reset rather than earn a 429 on the next page.
            if connector.rate_limit.exhausted(reply.headers):
                wait = connector.rate_limit.wait_seconds(reply.headers)
                if wait is not None and wait <= INLINE_WAIT_SECONDS:
                    await _pause(ctx, wait)


def _client(connector: Connector, acct: Account) -> httpx.AsyncClient:
    from . import netguard

    allow = netguard.allow_list()
    try:
        # A literal internal address is refused with the guard's explanation before any request.
        netguard.check_url(acct.base_url, allow)
    except netguard.AddressRefused as exc:
        raise _refused(acct, exc) from None
    timeout = httpx.Timeout(connector.timeout_seconds, connect=min(connector.timeout_seconds, 10.0))
    # No redirects: the bearer token is meant for the provider's API host only.
    return httpx.AsyncClient(
        base_url=acct.base_url + "/",
        transport=netguard.guarded_transport(allow),
        timeout=timeout,
        follow_redirects=False,
    )


async def _request(
    ctx: Any,
    connector: Connector,
    acct: Account,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, Any],
    accept: tuple[int, ...] = (),
    idempotency_key: str | None,
) -> Reply:
    from . import netguard
    from .nodes.spec import NodeError

    try:
        headers = {"Accept": "application/json", **connector.headers, **connector.auth.headers(acct.secret)}
    except KeyError as missing:
        raise NodeError(
            f"integration '{acct.name}' has no '{missing.args[0]}' in its secret; store it again with {connector.add_example(acct.name)}",
            retryable=False,
            kind="IntegrationInvalid",
        ) from None
    method = method.upper()
    # Only writes carry the key: a provider replays the first answer to a key, whatever the request.
    if idempotency_key and connector.idempotency and method not in SAFE_METHODS:
        key = connector.idempotency.key(idempotency_key)
        if connector.idempotency.header:
            headers[connector.idempotency.header] = key
        if connector.idempotency.param:
            params[connector.idempotency.param] = key
    # Relative to the base URL, whose own path (e.g. Slack's /api) is kept.
    target = path if path.startswith(("http://", "https://")) else path.lstrip("/")
    shown = f"{method} {urlsplit(str(client.base_url.join(target))).path}"
    waits, waited = 0, 0.0
    reauthorized = False
    while True:
        # The deployment's own limit for this provider, shared by every worker (ratelimit.py).
        await ratelimit.provider_turn(ctx, connector.provider, f"{connector.title} {shown}")
        try:
            response = await client.request(method, target, headers=headers, params=params or None, json=json)
        except netguard.AddressRefused as exc:
            raise _refused(acct, exc) from None
        except httpx.TimeoutException as exc:
            raise NodeError(
                f"{connector.title} did not answer {shown} in time ({type(exc).__name__}); retrying",
                kind="ProviderTimeout",
            ) from None
        except httpx.HTTPError as exc:
            raise NodeError(
                f"could not reach {connector.title} at {acct.base_url} for {shown}: {exc}; retrying",
                kind="ProviderUnreachable",
            ) from None
        body = _body(response)
        status = connector.status_of(response.status_code, body) if connector.status_of else response.status_code
        ctx.log("info", f"{connector.title} {shown} -> {response.status_code}")
        if 200 <= status < 300 or status in accept:
            return Reply(status, body, response.headers)
        if status == 429:
            wait = connector.rate_limit.wait_seconds(response.headers)
            if wait is not None and waited + wait <= INLINE_WAIT_SECONDS and waits < INLINE_WAITS:
                waits, waited = waits + 1, waited + wait
                ctx.log("warning", f"rate limited by {connector.title} on {shown}; waiting {wait:g}s as it asked")
                await _pause(ctx, wait)
                continue
            raise _rate_limited(ctx, connector, acct, shown, body, wait)
        if status == 401 and not reauthorized and oauth.oauth_settings({"settings": acct.settings}) is not None:
            # The provider dropped the access token before its expiry (revoked, rotated): refresh once.
            reauthorized = True
            ctx.log(
                "warning",
                f"{connector.title} refused the access token of integration '{acct.name}' on {shown}; refreshing it once",
            )
            _, fresh = await _oauth_secret(connector, acct.name, force=True, rejected=acct.secret.get("access_token"))
            acct = replace(acct, secret=fresh)
            headers.update(connector.auth.headers(acct.secret))
            continue
        raise _failure(connector, acct, shown, response, status, body)


def _refused(acct: Account, exc: Exception) -> Exception:
    from .nodes.spec import NodeError

    return NodeError(
        f"integration '{acct.name}' (settings.base_url {acct.base_url}): {exc}",
        retryable=False,
        kind="AddressRefused",
        details=getattr(exc, "details", None),
    )


def _failure(
    connector: Connector, acct: Account, shown: str, response: httpx.Response, status: int, body: Any
) -> Exception:
    from .nodes.spec import NodeError

    message = str(connector.error_message(body) or _snippet(body) or response.reason_phrase)[:ERROR_SNIPPET]
    # A provider that reports errors in a 2xx body is named as such, not as "HTTP 200 OK".
    http = f"HTTP {response.status_code}" + (
        " with an error body" if status != response.status_code else f" {response.reason_phrase}"
    )
    # Codes may sit beside the message (HubSpot's "category"), so the whole body is searched.
    searched = f"{message} {_snippet(body)}"
    hint = next((h for code, h in connector.hints.items() if code in searched), "")
    details = {
        "provider": connector.provider,
        "integration": acct.name,
        "status": response.status_code,
        "message": message,
        "request": shown,
    }
    if status in (401, 403):
        return NodeError(
            f"integration '{acct.name}' was refused by {connector.title}: {message} ({http} on {shown}). "
            + (hint or f"Check its scopes and store a fresh credential with {connector.add_example(acct.name)}"),
            retryable=False,
            kind="IntegrationRefused",
            details=details,
        )
    retryable = status >= 500 or status in (408, 425)
    text = f"{connector.title} {'failed on' if retryable else 'rejected'} {shown} ({http}): {message}"
    if hint:
        text += f" - {hint}"
    if retryable:
        text += "; retrying"
    elif 300 <= status < 400:
        text += f"; redirects are not followed (check the integration's settings.base_url, now {acct.base_url})"
    kind = "ProviderUnavailable" if retryable else "ProviderRejected"
    return NodeError(text, retryable=retryable, kind=kind, details=details)


def _rate_limited(
    ctx: Any, connector: Connector, acct: Account, shown: str, body: Any, wait: float | None
) -> Exception:
    from .nodes.spec import NodeError

    message = connector.error_message(body) or "too many requests"
    details = {
        "provider": connector.provider,
        "integration": acct.name,
        "status": 429,
        "message": message,
        "request": shown,
    }
    if wait is None:
        return NodeError(
            f"rate limited by {connector.title} on {shown}: {message}; retrying", kind="RateLimited", details=details
        )
    text = f"rate limited by {connector.title} on {shown}: {message}; next attempt in {wait:g}s, as it asked"
    # The next attempt waits for the provider's window, not the node's backoff.
    return NodeError(text, kind="RateLimited", details=details, retry_after=wait)


async def _pause(ctx: Any, seconds: float) -> None:
    """Sleep in short steps with heartbeats, so a heartbeat timeout or cancellation still works."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, HEARTBEAT_EVERY_SECONDS))
        ctx.heartbeat()


def _snippet(body: Any) -> str:
    """An error body with no recognisable message, shown as it came."""
    if body is None or body == "":
        return ""
    return body if isinstance(body, str) else jsonlib.dumps(body)


def _body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def _dig(value: Any, path: str) -> Any:
    for part in path.split(".") if path else ():
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _link_next(header: str) -> str | None:
    """The rel="next" URL of an RFC 8288 Link header."""
    for part in header.split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return url.strip().strip("<>")
    return None


def _same_origin_link(connector: Connector, acct: Account, link: str) -> str:
    from .nodes.spec import NodeError

    base, target = urlsplit(acct.base_url), urlsplit(link)
    if target.scheme and (target.scheme, target.netloc) != (base.scheme, base.netloc):
        # The integration's token goes to the provider's own host, never to one a response names.
        raise NodeError(
            f"{connector.title} pointed the next page to {target.scheme}://{target.netloc}, not to {acct.base_url}; not followed",
            retryable=False,
            kind="ProviderRejected",
        )
    # A relative link is resolved against the base URL, as a browser would.
    return urljoin(acct.base_url + "/", link)
