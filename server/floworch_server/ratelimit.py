"""Rate limits: API requests per user and per tenant, calls to each provider per tenant.

Counting is the `limits` library's moving window: a limit of N per period is never exceeded
in any span of that period, and a refusal says exactly when the oldest counted hit leaves the
window (the wait a Retry-After header or a node's next retry delay carries).

Where the counts live: in Redis when ``FLOWORCH_REDIS_URL`` is set, so that every Jupyter
server and every worker process of a deployment shares them; otherwise in this process's
memory (``make run``: one server, one worker per queue). Every key starts with
``<rate_limit_prefix>:<tenant>:``, so tenants never share, or see, each other's counters.

Limits are written in the `limits` notation: ``600/minute``, ``10 per second``, ``1/5 seconds``,
several at once as ``10/second;500/hour``. Provider limits are ``name=limit`` pairs separated
by commas (``openai=60/minute,slack=1/second``); the name is the integration provider of a SaaS
node (``slack``, ``hubspot``, ...), the ``provider`` of an ``ai.llm`` node (``openai``,
``anthropic``, ``custom``) or, for ``action.http``, the host name it calls.

Before a node calls a provider it takes a turn here (`provider_turn`). Refused before its first
call of an attempt, the attempt ends with a retryable ``RateLimited`` error whose wait becomes
Temporal's next retry delay: the worker slot is freed and the node shows ``retrying`` until its
turn. Refused later in an attempt (the next page of a list, a request after a 429), it waits
inline, a few seconds at most: ending the attempt then would redo, and pay again for, the
calls already made.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from limits import RateLimitItem, parse_many
from limits.errors import ConfigurationError, StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .errors import FloworchError
from .settings import ENV_PREFIX, Settings

# A Redis that does not answer must not hang a request or a node for long.
REDIS_TIMEOUT_SECONDS = 2.0
# Refusals later in an attempt are waited out inline up to this long in all (see the module doc).
INLINE_WAIT_SECONDS = 10.0
HEARTBEAT_EVERY_SECONDS = 1.0
# The least wait reported: a window that frees "now" is still refused now.
MIN_WAIT_SECONDS = 0.01


class RateLimitConfigError(ValueError):
    """A limit setting that cannot be read; the message names the setting and shows the notation."""


class RateLimitUnavailable(FloworchError):
    """The counters' store (Redis) did not answer; nothing was counted."""

    status = 503


@dataclass(frozen=True)
class Refusal:
    """Why a hit was refused: which limit, and how long until it allows one."""

    scope: str  # "user", "tenant" or "provider"
    name: str  # the user, tenant or provider name
    limit: str  # e.g. "600 per 1 minute"
    wait: float  # seconds

    @property
    def setting(self) -> str:
        return f"{ENV_PREFIX}RATE_LIMIT_{'PROVIDERS' if self.scope == 'provider' else self.scope.upper()}"

    def message(self) -> str:
        """For an API client: which limit, and when to come back."""
        return (
            f"too many requests: the rate limit of {self.scope} '{self.name}' ({self.limit}, set by {self.setting}) "
            f"is used up; retry in {retry_after_header(self.wait)}s (Retry-After)"
        )


def parse_limit(value: str, setting: str) -> tuple[RateLimitItem, ...]:
    """The limits of one setting value; empty: no limit."""
    if not value.strip():
        return ()
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items:
        raise RateLimitConfigError(
            f"{ENV_PREFIX}{setting.upper()}: {value!r} is not a rate limit; write it as '<count>/<period>', "
            "e.g. '600/minute', '10 per second', '1/5 seconds', or several as '10/second;500/hour'"
        )
    # Shortest window first: a hit refused by a longer window then only over-counts the short
    # one, whose count soon expires (see _hit).
    return tuple(sorted(items, key=lambda item: item.get_expiry()))


def parse_providers(value: str, setting: str = "rate_limit_providers") -> dict[str, tuple[RateLimitItem, ...]]:
    """``"openai=60/minute,slack=1/second"`` -> limits by provider name."""
    out: dict[str, tuple[RateLimitItem, ...]] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        name, sep, limit = entry.partition("=")
        name = name.strip()
        if not sep or not name or not limit.strip():
            raise RateLimitConfigError(
                f"{ENV_PREFIX}{setting.upper()}: {entry!r} is not 'provider=limit'; write comma-separated pairs, "
                "e.g. 'openai=60/minute,slack=1/second'"
            )
        if name in out:
            raise RateLimitConfigError(
                f"{ENV_PREFIX}{setting.upper()}: provider {name!r} is given twice; keep one limit for it"
            )
        try:
            out[name] = parse_limit(limit, setting)
        except RateLimitConfigError as exc:
            raise RateLimitConfigError(f"{exc} (for provider {name!r})") from None
    return out


def _part(value: str) -> str:
    # Names are escaped so that no tenant, user or provider name can spell another's key
    # (a tenant called "a:user" must not reach tenant "a"'s counters).
    return quote(str(value), safe="")


def _shown(url: str) -> str:
    """A storage URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RateLimits:
    """The limits of one deployment, counted in one storage (Redis or this process's memory)."""

    def __init__(
        self,
        *,
        storage_url: str = "memory://",
        user: str = "",
        tenant: str = "",
        providers: str = "",
        prefix: str = "floworch",
    ) -> None:
        self.user_limits = parse_limit(user, "rate_limit_user")
        self.tenant_limits = parse_limit(tenant, "rate_limit_tenant")
        self.provider_limits = parse_providers(providers)
        self.prefix = prefix
        self.storage_url = storage_url
        options: dict[str, Any] = {"wrap_exceptions": True}
        if storage_url.startswith(("redis", "rediss", "valkey")):
            # The key prefix is the deployment's; the tenant follows in each limit's namespace.
            options.update(
                key_prefix=prefix, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
            )
        try:
            self.storage = storage_from_string(storage_url, **options)
        except ConfigurationError as exc:
            raise RateLimitConfigError(
                f"{ENV_PREFIX}REDIS_URL: cannot use {_shown(storage_url)!r} for rate limits: {exc}"
            ) from None
        self._limiter = MovingWindowRateLimiter(self.storage)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        """The limits of these settings; made once per distinct configuration (so per process,
        one Redis connection pool, and one in-memory count that every caller shares)."""
        return _limits(
            settings.redis_url,
            settings.rate_limit_user,
            settings.rate_limit_tenant,
            settings.rate_limit_providers,
            settings.rate_limit_prefix,
        )

    @property
    def backend(self) -> str:
        return "memory" if self.storage_url.startswith("memory") else "redis"

    # -- the checks ---------------------------------------------------------------------
    def check_request(self, tenant: str, user: str) -> float | None:
        """Count one API request of ``user`` in ``tenant``: None when allowed, else the seconds
        until it would be (for Retry-After). The user's limit is checked first, so a user's
        refused requests do not use up the tenant's."""
        refusal = self.refuse_request(tenant, user)
        return None if refusal is None else refusal.wait

    def refuse_request(self, tenant: str, user: str) -> Refusal | None:
        """As `check_request`, telling which limit refused."""
        return self._hit(tenant, "user", user, self.user_limits) or self._hit(
            tenant, "tenant", tenant, self.tenant_limits, ident=""
        )

    def acquire_provider(self, tenant: str, provider: str) -> float | None:
        """Take one call to ``provider`` for ``tenant``: None when allowed, else seconds to wait."""
        refusal = self.refuse_provider(tenant, provider)
        return None if refusal is None else refusal.wait

    def refuse_provider(self, tenant: str, provider: str) -> Refusal | None:
        """As `acquire_provider`, telling which limit refused."""
        return self._hit(tenant, "provider", provider, self.provider_limits.get(provider, ()))

    def limits_provider(self, provider: str) -> bool:
        return bool(self.provider_limits.get(provider))

    def namespace(self, tenant: str) -> str:
        """The key prefix of everything counted for ``tenant`` (in Redis: ``<prefix>:<tenant>:``)."""
        return f"{self.prefix}:{_part(tenant)}:"

    def clear(self) -> None:
        """Forget every count (tests, and an operator resetting limits)."""
        self.storage.reset()

    # -- counting ----------------------------------------------------------------------
    def _hit(
        self, tenant: str, scope: str, name: str, items: tuple[RateLimitItem, ...], ident: str | None = None
    ) -> Refusal | None:
        ident = _part(name) if ident is None else ident
        for item in items:
            # The namespace carries the tenant, so the Redis key is "<prefix>:<tenant>:<scope>/<name>/<limit>"
            # (limits puts "<prefix>:" in front); in memory the same key without the prefix.
            scoped = type(item)(item.amount, item.multiples, namespace=f"{_part(tenant)}:{scope}")
            ids = (ident,) if ident else ()
            try:
                if self._limiter.hit(scoped, *ids):
                    continue
                reset = self._limiter.get_window_stats(scoped, *ids).reset_time
            except StorageError as exc:
                raise RateLimitUnavailable(
                    f"rate limits: the Redis at {_shown(self.storage_url)} ({ENV_PREFIX}REDIS_URL) did not answer: {exc.storage_error}"
                ) from None
            return Refusal(scope, name, str(item), max(MIN_WAIT_SECONDS, reset - time.time()))
        return None


@lru_cache(maxsize=16)
def _limits(redis_url: str, user: str, tenant: str, providers: str, prefix: str) -> RateLimits:
    return RateLimits(
        storage_url=redis_url or "memory://", user=user, tenant=tenant, providers=providers, prefix=prefix
    )


def retry_after_header(wait: float) -> str:
    """The Retry-After value for a wait: whole seconds, rounded up (never 0: that means "now")."""
    return str(max(1, math.ceil(wait)))


# ------------------------------------------------------------------ nodes
def http_provider(url: str) -> str:
    """The provider name of an action.http call: the host it goes to."""
    return (urlsplit(url).hostname or "").lower()


async def provider_turn(ctx: Any, provider: str, what: str, *, settings: Settings | None = None) -> None:
    """Wait for, or end the attempt on, ``provider``'s limit before a node calls it (module doc).

    ``what`` names the call in messages (``Slack POST /api/chat.postMessage``). The tenant is the
    run's (``ctx.call.tenant``) when the call carries one, else the worker's setting. Settings are
    read at call time, as the integration lookup does: a worker follows its environment."""
    from .nodes.spec import NodeError

    settings = settings or Settings.from_env()
    try:
        limits = RateLimits.from_settings(settings)
    except RateLimitConfigError as exc:
        raise NodeError(
            f"{what}: {exc}; fix the worker's setting and restart it", retryable=False, kind="RateLimitConfig"
        ) from None
    if not limits.limits_provider(provider):
        return
    tenant = getattr(getattr(ctx, "call", None), "tenant", None) or settings.tenant
    waited = 0.0
    while True:
        try:
            # The Redis client is synchronous: keep the activity's event loop (and its heartbeats) free.
            refusal = await asyncio.to_thread(limits.refuse_provider, tenant, provider)
        except RateLimitUnavailable as exc:
            raise NodeError(f"{what}: {exc}; retrying", kind="RateLimitUnavailable") from None
        if refusal is None:
            ctx.provider_calls = getattr(ctx, "provider_calls", 0) + 1
            return
        wait = refusal.wait
        setting = refusal.setting
        if getattr(ctx, "provider_calls", 0) and waited + wait <= INLINE_WAIT_SECONDS:
            ctx.log(
                "info",
                f"{what}: {provider} rate limit ({refusal.limit}, {setting}) reached; waiting {wait:.2f}s",
                wait_seconds=wait,
            )
            await _pause(ctx, wait)
            waited += wait
            continue
        details = {"provider": provider, "tenant": tenant, "limit": refusal.limit, "wait_seconds": round(wait, 3)}
        raise NodeError(
            f"{what}: the {provider} rate limit ({refusal.limit}, set by {setting}) is used up; next attempt in {wait:.2f}s",
            kind="RateLimited",
            details=details,
            retry_after=wait,
        )


async def _pause(ctx: Any, seconds: float) -> None:
    """Sleep in short steps with heartbeats, so a heartbeat timeout or cancellation still works."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, HEARTBEAT_EVERY_SECONDS))
        ctx.heartbeat()
