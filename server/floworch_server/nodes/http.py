"""`action.http`: one HTTP request with httpx; the response becomes the node's output.

Every connection goes through the outbound-address guard (`floworch_server.netguard`), which
refuses private and internal addresses unless FLOWORCH_HTTP_ALLOW lets them through. Redirects
are followed here, not by httpx, so that each hop's URL is checked before it is requested and
the headers carried to another origin are chosen deliberately.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

# A module import, not names: netguard imports nodes.spec, which imports this package.
from .. import netguard
from .spec import NodeError, NodeSpec, Port, register

# Statuses worth another attempt: the server may answer differently next time.
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0  # a server that takes longer to accept is down, not slow
DEFAULT_MAX_REDIRECTS = 10
# Credentials meant for the configured origin: not sent on to another one.
CREDENTIAL_HEADERS = ("authorization", "proxy-authorization")


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float
    total: float

    @classmethod
    def from_config(cls, value: Any) -> "Timeouts":
        """A number bounds the whole exchange (and so each phase); an object sets phases apart."""
        if isinstance(value, dict):
            total = float(value.get("total", DEFAULT_TIMEOUT))
            return cls(float(value.get("connect", min(total, DEFAULT_CONNECT_TIMEOUT))), float(value.get("read", total)), total)
        total = float(DEFAULT_TIMEOUT if value is None else value)
        return cls(min(total, DEFAULT_CONNECT_TIMEOUT), total, total)

    def for_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.read, pool=self.connect)


async def _execute(ctx: Any, config: dict, inputs: dict) -> Any:
    headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
    # The same key on every attempt lets the receiver drop a repeated delivery.
    headers.setdefault("Idempotency-Key", ctx.idempotency_key)
    headers.setdefault("X-Floworch-Attempt", str(ctx.attempt))
    kwargs: dict[str, Any] = {"headers": headers, "params": config.get("query") or None}
    if "json" in config:
        kwargs["json"] = config["json"]
    elif "body" in config:
        kwargs["content"] = config["body"] if isinstance(config["body"], str) else str(config["body"])
    timeouts = Timeouts.from_config(config.get("timeout_seconds"))
    method = config.get("method", "GET").upper()
    url = config["url"]
    allow = netguard.allow_list()
    try:
        netguard.check_url(url, allow)
        async with asyncio.timeout(timeouts.total):
            transport = netguard.guarded_transport(allow)
            async with httpx.AsyncClient(transport=transport, timeout=timeouts.for_httpx(), follow_redirects=False) as client:
                request = client.build_request(method, url, **kwargs)
                response = await _send(ctx, client, request, config, allow, first_url=url)
    except netguard.AddressRefused as exc:
        # The hop that was refused is already in the message when it was a redirect.
        raise NodeError(f"{method} {url}: {exc}", retryable=False, kind=exc.kind, details=exc.details) from None
    except TimeoutError:
        raise NodeError(f"{method} {url} timed out: no complete answer within {timeouts.total:g}s (timeout_seconds)", kind="HttpTimeout") from None
    except httpx.TimeoutException as exc:
        phase = "connect" if isinstance(exc, httpx.ConnectTimeout) else "read" if isinstance(exc, httpx.ReadTimeout) else "write/pool"
        limit = timeouts.connect if phase == "connect" else timeouts.read
        raise NodeError(f"{method} {url} timed out: {phase} took longer than {limit:g}s ({type(exc).__name__})", kind="HttpTimeout") from None
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
            f"{response.request.method} {response.url} answered {response.status_code} {response.reason_phrase}: {snippet}",
            retryable=response.status_code in RETRYABLE_STATUS,
            kind=f"HttpStatus{response.status_code}",
            details=result,
        )
    return result


async def _send(ctx: Any, client: httpx.AsyncClient, request: httpx.Request, config: dict, allow: netguard.AllowList, *, first_url: str) -> httpx.Response:
    """Send ``request``, following redirects up to ``max_redirects``; returns the read response."""
    follow = config.get("follow_redirects", True)
    limit = config.get("max_redirects", DEFAULT_MAX_REDIRECTS)
    shown = first_url  # the configured URL, without the query parameters (they may hold secrets)
    hops = 0
    while True:
        try:
            response = await client.send(request, stream=True)
        except netguard.AddressRefused as exc:
            raise (exc.via_redirect(hops, shown) if hops else exc) from None
        location = response.headers.get("location")
        if not (follow and response.status_code in REDIRECT_STATUS and location):
            await response.aread()
            ctx.log("info", f"{request.method} {shown} -> {response.status_code}")
            return response
        await response.aclose()
        target = urljoin(str(request.url), location)
        ctx.log("info", f"{request.method} {shown} -> {response.status_code}, redirected to {target}")
        if hops >= limit:
            raise NodeError(
                f"{request.method} {shown}: more than {limit} redirects (max_redirects); the last one pointed to {target}",
                retryable=False,
                kind="HttpTooManyRedirects",
            )
        hops += 1
        try:
            request = _redirected(client, request, response.status_code, target, allow)
        except netguard.AddressRefused as exc:
            raise exc.via_redirect(hops, target) from None
        shown = target


def _redirected(client: httpx.AsyncClient, request: httpx.Request, status: int, target: str, allow: netguard.AllowList) -> httpx.Request:
    """The request a redirect asks for, as browsers and httpx make it."""
    if urlsplit(target).scheme.lower() not in ("http", "https"):
        raise NodeError(f"{request.method} {request.url} redirected to {target}: only http(s) redirects are followed", retryable=False, kind="HttpRedirectRefused")
    # Checked as written, before httpx parses it: some spellings of an address it would reject.
    netguard.check_url(target, allow)
    url = httpx.URL(target)
    method = request.method
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
    headers = httpx.Headers(request.headers)
    # Host and Content-Length are rebuilt for the new request; cookies come from the client's jar.
    for name in ("host", "content-length", "cookie"):
        headers.pop(name, None)
    if not _same_origin(request.url, url):
        for name in CREDENTIAL_HEADERS:
            headers.pop(name, None)
    content: bytes | None = request.content if method == request.method else None
    if content is None:
        for name in ("content-type", "transfer-encoding"):
            headers.pop(name, None)
    return client.build_request(method, url, headers=headers, content=content)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    default = {"http": 80, "https": 443}
    if a.host != b.host:
        return False
    if a.scheme == b.scheme:
        return (a.port or default.get(a.scheme)) == (b.port or default.get(b.scheme))
    # An upgrade from http to https on the default ports stays with the same server.
    return a.scheme == "http" and b.scheme == "https" and a.port in (None, 80) and b.port in (None, 443)


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
                "url": {"type": "string", "pattern": "^(https?://|\\{\\{)", "description": "http(s) URL; may hold {{ }} references."},
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
                "max_redirects": {"type": "integer", "minimum": 0, "default": DEFAULT_MAX_REDIRECTS, "description": "Redirects followed before the node fails."},
                "fail_on_error_status": {"type": "boolean", "default": True, "description": "Fail the node on 4xx/5xx."},
            },
        },
        docs=(
            "Sends `Idempotency-Key: <run>:<node>` (the same on every attempt) and `X-Floworch-Attempt`. "
            "408/425/429/5xx are retried; other 4xx fail at once. "
            "Private, loopback, link-local, cloud-metadata and other internal addresses are refused, after DNS resolution "
            "and on every redirect hop, unless listed in `FLOWORCH_HTTP_ALLOW` (see docs/configuration.md); "
            "a refusal fails the node without retries. Redirects drop `Authorization` when they leave the origin."
        ),
    )
)
