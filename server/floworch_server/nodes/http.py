"""`action.http`: one HTTP request with httpx; the response becomes the node's output.

Every connection goes through the outbound-address guard (`floworch_server.netguard`), which
refuses private and internal addresses unless FLOWORCH_HTTP_ALLOW lets them through. Redirects
are followed here, one hop at a time, so that each hop's URL is checked before it is requested
and the number of hops is the node's own `max_redirects`. Each hop first takes a turn at the
deployment's limit for its host, if FLOWORCH_RATE_LIMIT_PROVIDERS sets one (`ratelimit`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx

# A module import, not names: netguard imports nodes.spec, which imports this package.
from .. import netguard, ratelimit
from ..connectors import SAFE_METHODS
from .spec import NodeError, NodeSpec, Port, register

# Statuses worth another attempt: the server may answer differently next time.
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0  # a server that takes longer to accept is down, not slow
DEFAULT_MAX_REDIRECTS = 10
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Floworch-Attempt"


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float
    total: float

    @classmethod
    def from_config(cls, value: Any) -> Timeouts:
        """A number bounds the whole exchange (and so each phase); an object sets phases apart."""
        if isinstance(value, dict):
            total = float(value.get("total", DEFAULT_TIMEOUT))
            return cls(
                float(value.get("connect", min(total, DEFAULT_CONNECT_TIMEOUT))), float(value.get("read", total)), total
            )
        total = float(DEFAULT_TIMEOUT if value is None else value)
        return cls(min(total, DEFAULT_CONNECT_TIMEOUT), total, total)

    def for_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.read, pool=self.connect)


async def _execute(ctx: Any, config: dict, inputs: dict) -> Any:
    method = config.get("method", "GET").upper()
    headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
    given = {name.lower() for name in headers}
    # Activities run at least once: the same key on every attempt of the node in this run lets
    # the receiver apply a write once. Reads need none; a key the flow sets itself is kept.
    if method not in SAFE_METHODS and IDEMPOTENCY_HEADER.lower() not in given:
        headers[IDEMPOTENCY_HEADER] = ctx.idempotency_key
    if ATTEMPT_HEADER.lower() not in given:
        headers[ATTEMPT_HEADER] = str(ctx.attempt)
    kwargs: dict[str, Any] = {"headers": headers, "params": config.get("query") or None}
    if "json" in config:
        kwargs["json"] = config["json"]
    elif "body" in config:
        kwargs["content"] = config["body"] if isinstance(config["body"], str) else str(config["body"])
    timeouts = Timeouts.from_config(config.get("timeout_seconds"))
    url = config["url"]
    allow = netguard.allow_list()
    try:
        netguard.check_url(url, allow)
        async with asyncio.timeout(timeouts.total):
            transport = netguard.guarded_transport(allow)
            hooks = {"response": [_location_check(allow)]} if config.get("follow_redirects", True) else {}
            async with httpx.AsyncClient(
                transport=transport, timeout=timeouts.for_httpx(), follow_redirects=False, event_hooks=hooks
            ) as client:
                request = client.build_request(method, url, **kwargs)
                response = await _send(ctx, client, request, config, first_url=url)
    except netguard.AddressRefused as exc:
        # The hop that was refused is already in the message when it was a redirect.
        raise NodeError(f"{method} {url}: {exc}", retryable=False, kind=exc.kind, details=exc.details) from None
    except TimeoutError:
        raise NodeError(
            f"{method} {url} timed out: no complete answer within {timeouts.total:g}s (timeout_seconds)",
            kind="HttpTimeout",
        ) from None
    except httpx.TimeoutException as exc:
        phase = (
            "connect"
            if isinstance(exc, httpx.ConnectTimeout)
            else "read"
            if isinstance(exc, httpx.ReadTimeout)
            else "write/pool"
        )
        limit = timeouts.connect if phase == "connect" else timeouts.read
        raise NodeError(
            f"{method} {url} timed out: {phase} took longer than {limit:g}s ({type(exc).__name__})", kind="HttpTimeout"
        ) from None
    except httpx.InvalidURL as exc:
        raise NodeError(f"{method} {url}: invalid URL ({exc})", retryable=False, kind="HttpInvalidUrl") from None
    except httpx.HTTPError as exc:
        raise NodeError(f"{method} {url} failed: {exc}", kind="HttpError") from None
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    result = {"status": response.status_code, "headers": dict(response.headers), "body": body, "url": str(response.url)}
    if response.status_code >= 400 and config.get("fail_on_error_status", True):
        snippet = response.text[:300]
        raise NodeError(
            f"{method} {url} answered {response.status_code} {response.reason_phrase}: {snippet}",
            retryable=response.status_code in RETRYABLE_STATUS,
            kind=f"HttpStatus{response.status_code}",
            details=result,
        )
    return result


async def _send(
    ctx: Any, client: httpx.AsyncClient, request: httpx.Request, config: dict, *, first_url: str
) -> httpx.Response:
    """Send ``request``, following redirects up to ``max_redirects``; returns the read response.

    httpx builds each redirect's request (``response.next_request``: method, body and headers as
    browsers change them, Authorization dropped for another origin, cookies from the jar); this
    loop decides whether to send it, and the guarded transport checks where it goes."""
    follow = config.get("follow_redirects", True)
    limit = config.get("max_redirects", DEFAULT_MAX_REDIRECTS)
    shown = first_url  # the configured URL, without the query parameters (they may hold secrets)
    previous: str | None = None
    hops = 0
    while True:
        # The deployment's own limit for the host, shared by every worker (ratelimit.py).
        await ratelimit.provider_turn(ctx, ratelimit.http_provider(str(request.url)), f"{request.method} {shown}")
        try:
            response = await client.send(request, stream=True)
        except netguard.AddressRefused as exc:
            raise (exc.on_redirect_from(previous) if previous and not exc.via else exc) from None
        redirect = response.next_request if follow else None
        if redirect is None:
            await response.aread()
            ctx.log("info", f"{request.method} {shown} -> {response.status_code}")
            return response
        await response.aclose()
        target = str(redirect.url)
        ctx.log("info", f"{request.method} {shown} -> {response.status_code}, redirected to {target}")
        if redirect.url.scheme not in ("http", "https"):
            raise NodeError(
                f"{request.method} {shown} redirected to {target}: only http(s) redirects are followed",
                retryable=False,
                kind="HttpRedirectRefused",
            )
        if hops >= limit:
            raise NodeError(
                f"{request.method} {shown}: more than {limit} redirects (max_redirects); the last one pointed to {target}",
                retryable=False,
                kind="HttpTooManyRedirects",
            )
        hops += 1
        previous, shown, request = str(request.url), target, redirect


def _location_check(allow: netguard.AllowList):
    """A response hook: check a redirect's Location as written, before httpx parses it, so that
    spellings of an address httpx rejects (0177.0.0.1) are refused with the reason, not as a
    protocol error that would be retried. Hosts it parses are checked again at connect."""

    async def check(response: httpx.Response) -> None:
        location = response.headers.get("location")
        if response.is_redirect and location:
            try:
                netguard.check_url(urljoin(str(response.request.url), location), allow)
            except netguard.AddressRefused as exc:
                raise exc.on_redirect_from(str(response.request.url)) from None

    return check


_SECONDS = {"type": "number", "exclusiveMinimum": 0}

HTTP = register(
    NodeSpec(
        type="action.http",
        category="Actions",
        title="HTTP request",
        description="Sends an HTTP request; the output is the status, headers, body (parsed when JSON) and final URL.",
        kind="activity",
        icon="globe",
        execute=_execute,
        timeout_seconds=60,
        heartbeat_seconds=None,
        outputs=(Port("out", "response"),),
        config_schema={
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {
                "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], "default": "GET"},
                "url": {
                    "type": "string",
                    "pattern": "^(https?://|\\{\\{)",
                    "description": "http(s) URL; may hold {{ }} references.",
                },
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "query": {"type": "object"},
                "json": {"description": "A JSON body."},
                "body": {"type": "string", "description": "A raw text body (when json is not given)."},
                "timeout_seconds": {
                    "oneOf": [
                        _SECONDS,
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "minProperties": 1,
                            "properties": {"connect": _SECONDS, "read": _SECONDS, "total": _SECONDS},
                        },
                    ],
                    "default": DEFAULT_TIMEOUT,
                    "description": (
                        "Seconds for the whole exchange, redirects and body included (connecting is also capped at 10 s); "
                        "or {connect, read, total} to set each. Keep it below the node's activity timeout."
                    ),
                },
                "follow_redirects": {"type": "boolean", "default": True},
                "max_redirects": {
                    "type": "integer",
                    "minimum": 0,
                    "default": DEFAULT_MAX_REDIRECTS,
                    "description": "Redirects followed before the node fails.",
                },
                "fail_on_error_status": {
                    "type": "boolean",
                    "default": True,
                    "description": "Fail the node on 4xx/5xx.",
                },
            },
        },
        docs=(
            "Activities run at least once (a worker that dies mid-request means the request is sent again), so every "
            "request but GET and HEAD carries `Idempotency-Key: <run id>:<node id>` (`#<index>` added in a loop's iterations), "
            "the same on every attempt of the node in one run and different in the next run: a receiver that applies each key once applies the effect once. "
            "A key set in `headers` (any spelling of the name) is sent instead. Every request carries `X-Floworch-Attempt`. "
            "408/425/429/5xx are retried; other 4xx fail at once. "
            "Private, loopback, link-local, cloud-metadata and other internal addresses are refused, after DNS resolution "
            "and on every redirect hop, unless listed in `FLOWORCH_HTTP_ALLOW` (see docs/configuration.md); "
            "a refusal fails the node without retries. Redirects drop `Authorization` when they leave the origin."
        ),
    )
)
