"""`trigger.event`: runs the published version when an event is published on its topic.

Events come from `fo.publish(topic, payload, event_id=...)` or `POST /floworch/api/events/{topic}`.
The run input is the event payload. The same event id never starts a second run of a flow."""

from __future__ import annotations

from .spec import NodeSpec, Port, TriggerContext, register


async def _on_publish(ctx: TriggerContext) -> dict:
    return {"kind": "event", "key": ctx.config["topic"]}


EVENT = register(
    NodeSpec(
        type="trigger.event",
        category="Triggers",
        title="Event",
        description="Starts a run for every event published on a topic; the run input is the event payload.",
        kind="trigger",
        icon="radio",
        inputs=(),
        outputs=(Port("out", "event"),),
        on_publish=_on_publish,
        config_schema={
            "type": "object",
            "required": ["topic"],
            "additionalProperties": False,
            "properties": {
                "topic": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9_.:/-]{1,200}$",
                    "description": "e.g. invoices.received",
                },
                "input_schema": {"type": "object", "description": "JSON Schema the payload must match."},
            },
        },
        docs="Publishing the same event id twice starts one run per subscribed flow.",
    )
)
