"""The node-spec mechanism: one `NodeSpec` per node type drives validation, the palette,
the properties form, the docs and execution. Adding a node type means registering one spec.

Kinds of node:
- ``trigger``: where a run starts; its output is the run input. Runs nowhere.
- ``activity``: runs as a Temporal activity with the node's retry policy, timeouts and task queue;
  ``execute(ctx, config, inputs)`` is called in a worker with the config already resolved.
- ``control``: runs inside the interpreter workflow, deterministically;
  ``control(wctx, config, inputs)`` returns a `ControlResult` naming the output ports to follow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from ..flowdoc import FlowDocument, Node
    from ..problems import Problem

CATEGORIES = ("Triggers", "AI", "Actions", "Control Flow")
Kind = Literal["trigger", "activity", "control"]


@dataclass(frozen=True)
class Port:
    name: str
    label: str = ""
    # Ports connect when their types are equal or either is "any".
    type: str = "any"
    # An input port that closes a loop (control.for_each's "loop"): its edges are not part of
    # the flow's acyclic graph, so they are not cycles.
    loop_back: bool = False

    def accepts(self, other: Port) -> bool:
        return self.type == "any" or other.type == "any" or self.type == other.type

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label or self.name, "type": self.type, "loop_back": self.loop_back}


@dataclass(frozen=True)
class OutputsFrom:
    """Output ports named by the config: one per item of the list ``field``, named by the item's
    ``key``, then the ports ``then``. A rule rather than code, so that the canvas names the same
    ports as the engine from the catalogue alone (control.switch: a port per case, then default)."""

    field: str
    key: str
    then: tuple[str, ...] = ()

    def ports(self, config: dict[str, Any]) -> tuple[Port, ...]:
        items = config.get(self.field)
        named = (
            [i[self.key] for i in items if isinstance(i, dict) and isinstance(i.get(self.key), str)]
            if isinstance(items, list)
            else []
        )
        return tuple(Port(name) for name in [*named, *self.then])

    def to_dict(self) -> dict:
        return {"field": self.field, "key": self.key, "then": list(self.then)}


@dataclass(frozen=True)
class RetryDefaults:
    max_attempts: int = 3  # 0: unlimited
    initial_interval_seconds: float = 1.0
    backoff: float = 2.0
    max_interval_seconds: float = 30.0
    non_retryable_errors: tuple[str, ...] = ()


@dataclass
class TriggerContext:
    """What a trigger's publish hooks get: the service (Temporal client, store) and the node."""

    service: Any
    workflow_id: str
    version: int
    node_id: str
    config: dict[str, Any]
    plan: dict[str, Any]
    plan_hash: str
    previous: dict | None = None  # this node's registration before this publish, if any


@dataclass(frozen=True)
class ControlResult:
    output: Any
    ports: tuple[str, ...]  # output ports whose edges are followed; the others' branches are skipped


@dataclass(frozen=True)
class NodeSpec:
    type: str
    category: str
    title: str
    description: str
    kind: Kind
    config_schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    inputs: tuple[Port, ...] = (Port("in"),)
    outputs: tuple[Port, ...] = (Port("out"),)
    # activity nodes
    execute: Callable[..., Awaitable[Any]] | None = None
    retry: RetryDefaults = RetryDefaults()
    timeout_seconds: float = 60.0
    heartbeat_seconds: float | None = None
    task_queue: str | None = None  # None: the flow's default queue
    # control nodes
    control: Callable[..., Awaitable[ControlResult]] | None = None
    # config fields holding expressions evaluated by the node itself, not resolved beforehand
    expression_fields: tuple[str, ...] = ()
    # where those expressions are, when nested (e.g. control.switch's cases[i].when)
    expressions: Callable[[dict[str, Any]], Any] | None = None
    # output ports named by the config (control.switch's cases); `outputs` is the default
    dynamic_outputs: OutputsFrom | None = None
    allows_loops: bool = False
    # extra flow-level checks: check(node, doc) -> problems
    check: Callable[[Node, FlowDocument], list[Problem]] | None = None
    # triggers: called when a version with this node is published / when it stops being live.
    # on_publish(tctx) returns the registration to keep ({"kind", "key", "config"?, "secret"?}).
    on_publish: Callable[[TriggerContext], Awaitable[dict | None]] | None = None
    on_unpublish: Callable[[TriggerContext, dict], Awaitable[None]] | None = None
    docs: str = ""
    icon: str = ""

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"node spec {self.type!r}: category must be one of {CATEGORIES}, got {self.category!r}")
        if self.kind == "activity" and self.execute is None:
            raise ValueError(f"node spec {self.type!r}: an activity node needs execute()")
        if self.kind == "control" and self.control is None:
            raise ValueError(f"node spec {self.type!r}: a control node needs control()")

    def input_port(self, name: str | None) -> Port | None:
        return _find_port(self.inputs, name)

    def outputs_for(self, config: dict[str, Any] | None) -> tuple[Port, ...]:
        """Output ports of a node with this config (some node types name them in their config)."""
        if self.dynamic_outputs is not None and isinstance(config, dict):
            return self.dynamic_outputs.ports(config)
        return self.outputs

    def output_port(self, name: str | None, config: dict[str, Any] | None = None) -> Port | None:
        return _find_port(self.outputs_for(config), name)

    def expressions_in(self, config: dict[str, Any]) -> list[tuple[str, str]]:
        """(field path, expression) of every config field the node evaluates itself."""
        if self.expressions is not None:
            return list(self.expressions(config))
        return [(k, v) for k, v in config.items() if k in self.expression_fields and isinstance(v, str)]

    def to_dict(self) -> dict[str, Any]:
        """The catalogue entry: everything a palette, a properties form or the docs need."""
        return {
            "type": self.type,
            "category": self.category,
            "title": self.title,
            "description": self.description,
            "kind": self.kind,
            "icon": self.icon,
            "inputs": [p.to_dict() for p in self.inputs],
            "outputs": [p.to_dict() for p in self.outputs],
            "dynamic_outputs": self.dynamic_outputs.to_dict() if self.dynamic_outputs else None,
            "config_schema": self.config_schema,
            "defaults": {
                "retry": dataclasses.asdict(self.retry),
                "timeout_seconds": self.timeout_seconds,
                "heartbeat_seconds": self.heartbeat_seconds,
                "task_queue": self.task_queue,
            },
            "allows_loops": self.allows_loops,
            "docs": self.docs,
        }


def _find_port(ports: tuple[Port, ...], name: str | None) -> Port | None:
    if name is None:
        # An edge with no handle uses the node's only port of that side (loop-back ports are
        # always named explicitly).
        plain = [p for p in ports if not p.loop_back]
        return plain[0] if len(plain) == 1 else None
    return next((p for p in ports if p.name == name), None)


_REGISTRY: dict[str, NodeSpec] = {}


def register(spec: NodeSpec) -> NodeSpec:
    if spec.type in _REGISTRY and _REGISTRY[spec.type] is not spec:
        raise ValueError(f"node type {spec.type!r} is already registered")
    _REGISTRY[spec.type] = spec
    return spec


def get(node_type: str) -> NodeSpec | None:
    return _REGISTRY.get(node_type)


def require(node_type: str) -> NodeSpec:
    """The spec of a node type that must be registered (one a validated flow or a plan uses)."""
    spec = _REGISTRY.get(node_type)
    if spec is None:
        raise KeyError(f"no node type {node_type!r} is registered")
    return spec


def all_specs() -> list[NodeSpec]:
    return sorted(_REGISTRY.values(), key=lambda s: (CATEGORIES.index(s.category), s.type))


def seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


class NodeError(Exception):
    """A node failed in a way its executor understands. ``retryable=False`` stops Temporal's retries."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        kind: str = "NodeError",
        details: Any = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.retryable = retryable
        self.kind = kind
        self.details = details
        # Seconds the next attempt should wait (a provider's Retry-After), instead of the node's backoff.
        self.retry_after = retry_after
