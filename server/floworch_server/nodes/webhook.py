"""`trigger.webhook`: starts the published version when its URL is called with a signed request.

Publishing gives the node a stable hook id and a signing secret (kept across re-publishes);
`floworch_server.webhooks` checks requests. The run input is the JSON body."""

from __future__ import annotations

import secrets as _random

from .spec import NodeSpec, Port, TriggerContext, register


async def _on_publish(ctx: TriggerContext) -> dict:
    if ctx.previous and ctx.previous.get("kind") == "webhook":
        # Same hook id and secret as before: senders keep working across versions.
        return {
            "kind": "webhook",
            "key": ctx.previous["key"],
            "config": {"max_body_bytes": ctx.config.get("max_body_bytes")},
        }
    from ..secrets import box_for

    settings = ctx.service.settings
    secret = "whsec_" + _random.token_urlsafe(32)
    return {
        "kind": "webhook",
        # The tenant leads the hook id, so a call is looked up in its tenant's records alone.
        "key": f"{settings.tenant}.{_random.token_urlsafe(18)}",
        "secret": box_for(settings).encrypt(secret),
        "config": {"max_body_bytes": ctx.config.get("max_body_bytes")},
    }


WEBHOOK = register(
    NodeSpec(
        type="trigger.webhook",
        category="Triggers",
        title="Webhook",
        description="Starts a run when `POST /floworch/hooks/{hookId}` receives a signed JSON request; the run input is the body.",
        kind="trigger",
        icon="webhook",
        inputs=(),
        outputs=(Port("out", "request"),),
        on_publish=_on_publish,
        config_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "input_schema": {"type": "object", "description": "JSON Schema the body must match (else 400)."},
                "max_body_bytes": {"type": "integer", "minimum": 1, "maximum": 10485760, "default": 1048576},
            },
        },
        docs=(
            "Sign each request: `X-Floworch-Timestamp: <unix seconds>` and "
            '`X-Floworch-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>`; '
            "requests more than 5 minutes off are refused. A repeated `Idempotency-Key` (or the same "
            'signed request again) returns the same run. Answers 202 `{"run_id": ...}`. '
            "The URL and secret: `flow.webhooks()`."
        ),
    )
)
