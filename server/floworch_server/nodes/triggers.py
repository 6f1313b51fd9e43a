"""Trigger nodes: where a run starts. Their output is the run input."""

from __future__ import annotations

from .spec import NodeSpec, Port, register

MANUAL = register(
    NodeSpec(
        type="trigger.manual",
        category="Triggers",
        title="Manual trigger",
        description="Starts a run from a notebook, the canvas or the REST API, with a JSON input.",
        kind="trigger",
        icon="play",
        inputs=(),
        outputs=(Port("out", "input"),),
        config_schema={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "input_schema": {
                    "type": "object",
                    "description": "JSON Schema the run input must match; a run with other input is refused before it starts.",
                },
                "example": {"description": "An example input, used to pre-fill the run form."},
            },
        },
        docs="Output: the run input. `{{ input.x }}` reads it from any node.",
    )
)
