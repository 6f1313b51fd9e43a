"""`transform`: builds a value from the run input and upstream outputs with the reference language."""

from __future__ import annotations

from typing import Any

from .spec import NodeSpec, register


async def _execute(ctx: Any, config: dict, inputs: dict) -> Any:
    # References in `output` were resolved in the workflow; what is left is the value itself.
    return config.get("output")


TRANSFORM = register(
    NodeSpec(
        type="transform",
        category="Actions",
        title="Transform",
        description="Builds an output value from the input and upstream outputs with {{ }} references.",
        kind="activity",
        icon="shuffle",
        execute=_execute,
        timeout_seconds=10,
        config_schema={
            "type": "object",
            "required": ["output"],
            "additionalProperties": False,
            "properties": {
                "output": {
                    "description": 'Any JSON value; strings may hold {{ }} references, e.g. {"greeting": "Hello, {{ input.name }}"}.'
                }
            },
        },
        docs="No code is evaluated: only the reference language of the docs.",
    )
)
