"""`action.http`: one HTTP request with httpx; the response becomes the node's output."""

from __future__ import annotations

from typing import Any

import httpx

from .spec import NodeError, NodeSpec, Port, register

# Statuses worth another attempt: the server may answer differently next time.
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


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
    timeout = config.get("timeout_seconds", 30)
    method = config.get("method", "GET").upper()
    url = config["url"]
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=config.get("follow_redirects", True)) as client:
            response = await client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise NodeError(f"{method} {url} timed out after {timeout}s ({type(exc).__name__})", kind="HttpTimeout") from None
    except httpx.HTTPError as exc:
        raise NodeError(f"{method} {url} failed: {exc}", kind="HttpError") from None
    ctx.log("info", f"{method} {url} -> {response.status_code}")
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    result = {"status": response.status_code, "headers": dict(response.headers), "body": body}
    if response.status_code >= 400 and config.get("fail_on_error_status", True):
        snippet = response.text[:300]
        raise NodeError(
            f"{method} {url} answered {response.status_code} {response.reason_phrase}: {snippet}",
            retryable=response.status_code in RETRYABLE_STATUS,
            kind=f"HttpStatus{response.status_code}",
            details=result,
        )
    return result


HTTP = register(
    NodeSpec(
        type="action.http",
        category="Actions",
        title="HTTP request",
        description="Sends an HTTP request; the output is the status, headers and body (parsed when JSON).",
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
                "timeout_seconds": {"type": "number", "exclusiveMinimum": 0, "default": 30},
                "follow_redirects": {"type": "boolean", "default": True},
                "fail_on_error_status": {"type": "boolean", "default": True, "description": "Fail the node on 4xx/5xx."},
            },
        },
        docs="Sends `Idempotency-Key: <run>:<node>` (the same on every attempt) and `X-Floworch-Attempt`. 408/425/429/5xx are retried; other 4xx fail at once.",
    )
)
