"""Receiving webhook calls: size, signature, freshness, content type, idempotency, then a run.

The only unauthenticated entry into FlowOrchestrator, so it says as little as possible to a
caller that cannot sign: any signature problem is a bare 401."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest
from .secrets import box_for

TIMESTAMP_HEADER = "X-Floworch-Timestamp"
SIGNATURE_HEADER = "X-Floworch-Signature"
TOLERANCE_SECONDS = 300
DEFAULT_MAX_BODY = 1024 * 1024


def signature(secret: str, timestamp: str | int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers a sender adds to a request with ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: signature(secret, ts, body), "Content-Type": "application/json"}


@dataclass
class Answer:
    status: int
    body: dict[str, Any] | None = None


class WebhookReceiver:
    def __init__(self, service: Any):
        self.service = service

    def _registration(self, hook_id: str) -> tuple[Any, dict | None]:
        """(the service of the hook's tenant, its registration or None)."""
        tenant, dot, _ = hook_id.partition(".")
        try:
            service = self.service.for_tenant(tenant if dot else "default")
        except ValueError:  # not a tenant id: not a hook either
            return self.service, None
        found = service.store.list_triggers(kind="webhook", key=hook_id)
        return service, (found[0] if found else None)

    def max_body(self, hook_id: str) -> int:
        reg = self._registration(hook_id)[1]
        return (reg and reg["config"].get("max_body_bytes")) or DEFAULT_MAX_BODY

    async def receive(self, hook_id: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> Answer:
        service, reg = self._registration(hook_id)
        if reg is None:
            return Answer(404)
        if len(body) > (reg["config"].get("max_body_bytes") or DEFAULT_MAX_BODY):
            return Answer(413, {"error": "request body too large"})
        settings = service.settings
        secret = box_for(settings).decrypt(reg["secret"], "webhook secret")
        if not _authentic(secret, headers, body, time.time() if now is None else now):
            return Answer(401)
        content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return Answer(415, {"error": "Content-Type must be application/json"})
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return Answer(400, {"error": f"the body is not valid JSON: {exc}", "field": "body"})
        # A repeated delivery (same Idempotency-Key, or the very same signed request) is one run.
        key = headers.get("Idempotency-Key") or headers.get(SIGNATURE_HEADER, "")
        try:
            run = await service.start_run(
                reg["workflow_id"], input=payload, version=reg["version"], by=f"webhook:{hook_id}",
                trigger="webhook", trigger_node=reg["node_id"], idempotency_key=f"webhook:{hook_id}:{key}",
            )  # fmt: skip
        except BadRequest as exc:
            return Answer(400, {"error": str(exc), "field": exc.field})
        return Answer(202, {"run_id": run["run_id"]})


def _authentic(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> bool:
    ts = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not ts.isdigit() or not given:
        return False
    if abs(now - int(ts)) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(signature(secret, ts, body).encode(), given.strip().encode())
