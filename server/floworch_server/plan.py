"""The compiler: a valid flow document -> a Plan.

A Plan is what the interpreter workflow runs: immutable, JSON-serialisable and content-hashed.
It holds only what affects execution (node types, config, policies, edges), so moving nodes on
the canvas or renaming labels never changes the hash. A published version stores its plan; a run
carries its plan in the workflow input and records the hash.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import nodes
from .errors import BadRequest
from .flowdoc import FlowDocument
from .problems import FlowInvalid
from .validate import Graph, compensations, is_loop_back, loop_problems, validate

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Plan:
    data: MappingProxyType
    hash: str

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Plan:
        text = canonical_json(data)
        return cls(MappingProxyType(json.loads(text)), hashlib.sha256(text.encode()).hexdigest())

    def to_data(self) -> dict[str, Any]:
        return json.loads(canonical_json(dict(self.data)))

    @property
    def flow_id(self) -> str | None:
        return self.data["flow"].get("id")

    @property
    def triggers(self) -> list[str]:
        return list(self.data["triggers"])


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_freeze_default)


def _freeze_default(obj: Any) -> Any:
    if isinstance(obj, MappingProxyType):
        return dict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def compile_plan(doc: FlowDocument) -> Plan:
    """Validate and compile. Raises FlowInvalid with every problem if the flow is not valid."""
    problems = validate(doc)
    if problems:
        raise FlowInvalid(problems, source=doc.name or doc.id)
    graph = Graph(doc)
    compiled_nodes = {}
    for node in doc.nodes:
        spec = nodes.require(node.type)
        policy = node.policy
        retry = dataclasses.asdict(spec.retry)
        if policy and policy.retry:
            retry.update({k: v for k, v in policy.retry.model_dump(exclude_none=True).items()})
        retry["non_retryable_errors"] = list(retry["non_retryable_errors"])
        compiled_nodes[node.id] = {
            "type": node.type,
            "kind": spec.kind,
            "config": node.config,
            "retry": retry,
            "timeout_seconds": (policy and policy.timeout_seconds) or spec.timeout_seconds,
            "heartbeat_seconds": (policy and policy.heartbeat_seconds) or spec.heartbeat_seconds,
            # The flow's own choice only: the node type's queue is the deployment's, decided when
            # a run starts (run_task_queues), so one published plan runs on any deployment.
            "task_queue": (policy and policy.task_queue) or None,
            "expression_fields": list(spec.expression_fields),
            # Only when set: plans of flows without compensation keep their hash.
            **({"compensate": node.compensate} if node.compensate else {}),
        }
    edges = []
    loops, _ = loop_problems(doc, graph)
    node_of = {n.id: n for n in doc.nodes}
    for edge in doc.edges:
        source, target = node_of[edge.source], node_of[edge.target]
        out_port = nodes.require(source.type).output_port(edge.sourceHandle, source.config)
        in_port = nodes.require(target.type).input_port(edge.targetHandle)
        assert out_port is not None and in_port is not None, "validate() checked every edge's ports"
        edges.append(
            {
                "source": edge.source,
                "port": out_port.name,
                "target": edge.target,
                "target_port": in_port.name,
                **({"loop_back": True} if is_loop_back(doc, edge) else {}),
            }
        )
    data = {
        "format": PLAN_FORMAT,
        "flow": {"id": doc.id, "name": doc.name},
        "triggers": [n.id for n in doc.nodes if compiled_nodes[n.id]["kind"] == "trigger"],
        "nodes": compiled_nodes,
        "edges": edges,
        "order": _order(graph, set(compensations(doc))),
        **({"loops": loops} if loops else {}),
    }
    return Plan.from_data(data)


def run_task_queues(plan: dict[str, Any], rules: list[tuple[str, str]]) -> dict[str, str]:
    """Node type -> task queue for the activity nodes of ``plan`` that name no queue of their own:
    the first of the deployment's ``rules`` (node type glob, queue) that matches, else the node
    type's own queue. Types in neither are absent (they run on the run's task queue). Computed
    when a run starts and carried in its input, so the workflow's choice is fixed in history."""
    queues = {}
    for node in plan["nodes"].values():
        if node["kind"] != "activity" or node.get("task_queue"):
            continue
        kind, spec = node["type"], nodes.get(node["type"])
        queue = next((q for pattern, q in rules if fnmatch.fnmatchcase(kind, pattern)), None) or (
            spec and spec.task_queue
        )
        if queue:
            queues[kind] = queue
    return queues


def _order(graph: Graph, compensating: set[str]) -> list[str]:
    """Topological order, compensating nodes last: they run, if ever, after everything else."""
    order = _topological(graph)
    return [n for n in order if n not in compensating] + [n for n in order if n in compensating]


def check_reuse(plan: dict[str, Any], reuse: Any) -> dict[str, dict]:
    """The RunRequest "reuse" entries for ``plan``, checked: {"<node id>": {"output": <its
    recorded output>, "from_run": "<run id>"}}. Only activity nodes that run as steps of the
    flow (not inside a loop body, not compensations) can take a recorded output."""
    if not isinstance(reuse, dict):
        raise BadRequest("must be an object of node id -> {output, from_run}", field="reuse")
    in_loops = {n for loop in plan.get("loops", {}).values() for n in loop["body"]}
    compensating = {n["compensate"] for n in plan["nodes"].values() if n.get("compensate")}
    out = {}
    for node_id, entry in reuse.items():
        field = f"reuse.{node_id}"
        node = plan["nodes"].get(node_id)
        if node is None:
            raise BadRequest(
                f"no node '{node_id}' in this flow's plan (nodes: {', '.join(plan['order'])})", field=field
            )
        if node["kind"] != "activity":
            raise BadRequest(
                f"'{node_id}' is a {node['kind']} node; only activity nodes can reuse a recorded output", field=field
            )
        if node_id in in_loops:
            raise BadRequest(
                f"'{node_id}' runs inside a loop body, once per item: it has no single output to reuse", field=field
            )
        if node_id in compensating:
            raise BadRequest(
                f"'{node_id}' is a compensation, not a step of the flow: it has nothing to reuse", field=field
            )
        if (
            not isinstance(entry, dict)
            or "output" not in entry
            or not isinstance(entry.get("from_run"), str)
            or not entry["from_run"]
        ):
            raise BadRequest('must be {"output": <the recorded output>, "from_run": "<run id>"}', field=field)
        out[node_id] = {"output": entry["output"], "from_run": entry["from_run"]}
    return out


def _topological(graph: Graph) -> list[str]:
    indegree = {i: len(graph.pred[i]) for i in graph.ids}
    ready = [i for i in graph.ids if indegree[i] == 0]
    order = []
    while ready:
        current = ready.pop(0)
        order.append(current)
        for nxt in graph.succ[current]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return order
