"""The node reference page, generated from the specs: ``python -m floworch_server.nodes.docs``.

docs/nodes.md is this module's output; a test keeps the two equal."""

from __future__ import annotations

import json

from . import all_specs
from .spec import CATEGORIES


def render() -> str:
    out = [
        "# Node reference",
        "",
        "Generated from the node specs by `python -m floworch_server.nodes.docs`; do not edit.",
        "",
    ]
    for category in CATEGORIES:
        specs = [s for s in all_specs() if s.category == category]
        if not specs:
            continue
        out += [f"## {category}", ""]
        for spec in specs:
            out += [f"### `{spec.type}` — {spec.title}", "", spec.description, ""]
            if spec.docs:
                out += [spec.docs, ""]
            ins = ", ".join(f"`{p.name}`" for p in spec.inputs) or "none"
            outs = ", ".join(f"`{p.name}`" for p in spec.outputs) or "none"
            out += [f"- runs: {_where(spec.kind)}", f"- input ports: {ins}; output ports: {outs}"]
            if spec.kind == "activity":
                r = spec.retry
                out.append(
                    f"- defaults: timeout {spec.timeout_seconds:g} s, {r.max_attempts or 'unlimited'} attempts "
                    f"(first retry after {r.initial_interval_seconds:g} s, backoff {r.backoff:g})"
                    + (f", heartbeat {spec.heartbeat_seconds:g} s" if spec.heartbeat_seconds else "")
                )
            props = spec.config_schema.get("properties", {})
            required = set(spec.config_schema.get("required", []))
            if props:
                out += ["", "| config | type | required | description |", "|---|---|---|---|"]
                for name, prop in props.items():
                    kind = prop.get("type") or (
                        "one of " + ", ".join(map(json.dumps, prop["enum"])) if "enum" in prop else "any"
                    )
                    desc = str(prop.get("description", "")).replace("|", "\\|")
                    out.append(f"| `{name}` | {kind} | {'yes' if name in required else ''} | {desc} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def _where(kind: str) -> str:
    return {
        "trigger": "starts a run (its output is the run input)",
        "activity": "as a Temporal activity in a worker (retried by its policy)",
        "control": "inside the interpreter workflow (deterministic, durable)",
    }[kind]


if __name__ == "__main__":
    print(render(), end="")
