"""Flow validation: every problem at once, each naming its node or edge, field and fix.

Nothing invalid reaches Temporal: `compile_plan` refuses a flow with problems."""

from __future__ import annotations

import difflib
from typing import Any

import jsonschema

from . import expr, nodes
from .flowdoc import FlowDocument, format_path, parse_data
from .problems import Problem


def validate_data(data: Any) -> list[Problem]:
    """Validate a decoded `.flow` document (structure first, then meaning)."""
    doc, problems = parse_data(data)
    return problems if doc is None else validate(doc)


def validate(doc: FlowDocument) -> list[Problem]:
    problems: list[Problem] = []
    problems += _duplicate_ids(doc)
    node_ids = {n.id for n in doc.nodes}
    for node in doc.nodes:
        spec = nodes.get(node.type)
        if spec is None:
            problems.append(_unknown_type(node.id, node.type))
            continue
        problems += _config_problems(node, spec)
    problems += _edge_problems(doc, node_ids)
    graph = Graph(doc)
    cycles = graph.cycles()
    for cycle in cycles:
        if not any((m := doc.node(n)) and (s := nodes.get(m.type)) and s.allows_loops for n in cycle):
            shown = " -> ".join([*cycle, cycle[0]])
            problems.append(
                Problem(
                    "cycle",
                    f"the flow has a cycle: {shown}",
                    node=cycle[0],
                    hint="remove one of these edges; use control.for_each for loops",
                )
            )
    problems += _trigger_problems(doc, graph)
    loops: dict[str, dict] = {}
    if not cycles:
        loops, found = loop_problems(doc, graph)
        problems += found
    problems += _compensation_problems(doc, graph, loops)
    # Upstream is only well defined without cycles; syntax is checked regardless.
    problems += _reference_problems(doc, graph, check_upstream=not cycles)
    for node in doc.nodes:
        spec = nodes.get(node.type)
        if spec and spec.check:
            problems += spec.check(node, doc)
    return problems


# ------------------------------------------------------------------ graph
def is_loop_back(doc: FlowDocument, edge) -> bool:
    """An edge into a loop-back port (control.for_each's "loop") closes a loop body."""
    target = doc.node(edge.target)
    spec = nodes.get(target.type) if target else None
    port = spec.input_port(edge.targetHandle) if spec else None
    return bool(port and port.loop_back)


class Graph:
    """The edges of a flow that connect existing nodes, as adjacency lists in document order.
    Loop-back edges are left out: with them out, a valid flow is acyclic."""

    def __init__(self, doc: FlowDocument):
        ids = [n.id for n in doc.nodes]
        known = set(ids)
        self.ids = ids
        self.succ: dict[str, list[str]] = {i: [] for i in ids}
        self.pred: dict[str, list[str]] = {i: [] for i in ids}
        self.loop_edges: list = []
        for e in doc.edges:
            if e.source in known and e.target in known:
                if is_loop_back(doc, e):
                    self.loop_edges.append(e)
                    continue
                self.succ[e.source].append(e.target)
                self.pred[e.target].append(e.source)

    def reachable_from(self, starts: list[str]) -> set[str]:
        seen, stack = set(starts), list(starts)
        while stack:
            for nxt in self.succ[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def ancestors(self, node_id: str) -> set[str]:
        seen, stack = set(), [node_id]
        while stack:
            for prev in self.pred[stack.pop()]:
                if prev not in seen:
                    seen.add(prev)
                    stack.append(prev)
        return seen

    def cycles(self) -> list[list[str]]:
        """Each strongly connected component with a cycle, in a readable order (Tarjan, iterative)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        result: list[list[str]] = []
        counter = 0
        for root in self.ids:
            if root in index:
                continue
            work = [(root, iter(self.succ[root]))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                v, children = work[-1]
                advanced = False
                for w in children:
                    if w not in index:
                        index[w] = low[w] = counter
                        counter += 1
                        stack.append(w)
                        on_stack.add(w)
                        work.append((w, iter(self.succ[w])))
                        advanced = True
                        break
                    if w in on_stack:
                        low[v] = min(low[v], index[w])
                if advanced:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in self.succ[v]:
                        result.append(self._cycle_order(comp))
        return result

    def _cycle_order(self, comp: list[str]) -> list[str]:
        """A real cycle through the component's first node (in document order): the shortest one."""
        members = set(comp)
        start = min(comp, key=self.ids.index)
        parent: dict[str, str | None] = {start: None}
        queue = [start]
        while queue:
            current = queue.pop(0)
            for nxt in self.succ[current]:
                if nxt == start:
                    path = [current]
                    while (up := parent[path[-1]]) is not None:
                        path.append(up)
                    return path[::-1]
                if nxt in members and nxt not in parent:
                    parent[nxt] = current
                    queue.append(nxt)
        return [start]  # pragma: no cover - a component with a cycle always leads back


def loop_problems(doc: FlowDocument, graph: Graph) -> tuple[dict[str, dict], list[Problem]]:
    """The body of every loop node ({"body": [...], "ends": [...]}) and what is wrong with them.

    A body is what the loop's "item" port reaches; it must be closed: entered only from the
    loop node, left only back into the loop's "loop" port."""
    loops: dict[str, dict] = {}
    problems: list[Problem] = []
    loop_nodes = [n for n in doc.nodes if (s := nodes.get(n.type)) and any(p.loop_back for p in s.inputs)]
    for node in loop_nodes:
        starts = [
            e.target for e in doc.edges if e.source == node.id and e.sourceHandle == "item" and not is_loop_back(doc, e)
        ]
        ends = [e.source for e in graph.loop_edges if e.target == node.id]
        reached = graph.reachable_from(starts) if starts else set()
        # The body: what the item port reaches on the way back to the loop port.
        body = {n for n in reached if n in ends or any(n in graph.ancestors(end) for end in ends)}
        for end in ends:
            if end not in reached:
                problems.append(
                    Problem(
                        "loop-not-closed",
                        f"'{end}' connects to the loop port of '{node.id}' but is not inside its body",
                        node=end,
                        hint=f"connect it after the 'item' port of '{node.id}', or to another node",
                    )
                )
        if starts and not ends:
            problems.append(
                Problem(
                    "loop-not-closed",
                    "the loop body never comes back to the 'loop' port",
                    node=node.id,
                    hint="connect the last node of the body to the 'loop' port",
                )
            )
        for member in sorted(body, key=graph.ids.index):
            for prev in graph.pred[member]:
                if prev not in body and prev != node.id:
                    problems.append(
                        Problem(
                            "loop-entered-from-outside",
                            f"'{member}' is inside the loop of '{node.id}' but also receives an edge from '{prev}' outside it",
                            node=member,
                            hint="a loop body is entered only through the loop's 'item' port",
                        )
                    )
            for nxt in graph.succ[member]:
                if nxt not in body:
                    problems.append(
                        Problem(
                            "loop-left-early",
                            f"'{member}' is inside the loop of '{node.id}' but leads to '{nxt}' outside it",
                            node=member,
                            hint=f"end the body at the 'loop' port of '{node.id}'; continue from its 'done' port",
                        )
                    )
        loops[node.id] = {"body": [n for n in graph.ids if n in body], "ends": ends}
    return loops, problems


# ------------------------------------------------------------------ checks
def _duplicate_ids(doc: FlowDocument) -> list[Problem]:
    problems = []
    for kind, ids in (("node", [n.id for n in doc.nodes]), ("edge", [e.id for e in doc.edges])):
        seen: set[str] = set()
        for i, item_id in enumerate(ids):
            if item_id in seen:
                problems.append(
                    Problem(
                        f"duplicate-{kind}-id",
                        f"{kind} id '{item_id}' is used more than once ({kind}s[{i}])",
                        node=item_id if kind == "node" else None,
                        edge=item_id if kind == "edge" else None,
                        field="id",
                        hint=f"give every {kind} a unique id",
                    )
                )
            seen.add(item_id)
    return problems


def _unknown_type(node_id: str, node_type: str) -> Problem:
    known = [s.type for s in nodes.all_specs()]
    close = difflib.get_close_matches(node_type, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "see the node catalogue (fo.nodes()) for the known types"
    return Problem("unknown-node-type", f"unknown node type '{node_type}'", node=node_id, field="type", hint=hint)


def _config_problems(node, spec) -> list[Problem]:
    problems = []
    validator = jsonschema.Draft202012Validator(spec.config_schema)
    for err in sorted(validator.iter_errors(node.config), key=lambda e: list(map(str, e.absolute_path))):
        # A {{ }} reference is checked once resolved, when the node runs.
        if expr.is_template(err.instance):
            continue
        path = format_path(["config", *err.absolute_path])
        message = err.message
        if err.validator == "additionalProperties":
            allowed = ", ".join(sorted(spec.config_schema.get("properties", {})))
            message = err.message.replace("Additional properties are not allowed", "unknown config field(s):")
            hint = f"{spec.type} accepts: {allowed}" if allowed else f"{spec.type} takes no config"
        elif err.validator == "oneOf":
            hint = f"see the {spec.type} docs for the accepted forms"
            message = "config must match exactly one accepted form: " + " or ".join(
                "{" + ", ".join(s.get("required", [])) + "}" for s in err.validator_value
            )
        else:
            hint = f"fix {path} to match the {spec.type} schema"
        problems.append(Problem("invalid-config", message, node=node.id, field=path, hint=hint))
    return problems


def _edge_problems(doc: FlowDocument, node_ids: set[str]) -> list[Problem]:
    problems = []
    by_id = {n.id: n for n in doc.nodes}
    seen_links: set[tuple] = set()
    for edge in doc.edges:
        for end in ("source", "target"):
            ref = getattr(edge, end)
            if ref not in node_ids:
                problems.append(
                    Problem(
                        "edge-missing-node",
                        f"{end} node '{ref}' does not exist",
                        edge=edge.id,
                        field=end,
                        hint="connect the edge to an existing node or delete it",
                    )
                )
        src, dst = by_id.get(edge.source), by_id.get(edge.target)
        src_spec = nodes.get(src.type) if src else None
        dst_spec = nodes.get(dst.type) if dst else None
        out_port = (
            _port_problem(problems, edge, src_spec, "source", edge.sourceHandle, src.config)
            if src and src_spec
            else None
        )
        in_port = _port_problem(problems, edge, dst_spec, "target", edge.targetHandle, None) if dst_spec else None
        if out_port and in_port and not in_port.accepts(out_port):
            problems.append(
                Problem(
                    "incompatible-ports",
                    f"port '{out_port.name}' of '{edge.source}' gives {out_port.type} but port '{in_port.name}' of "
                    f"'{edge.target}' takes {in_port.type}",
                    edge=edge.id,
                    hint="connect ports of the same type",
                )
            )
        # Compare the ports the edge really uses: no handle on a single-port side means that port.
        link = (
            edge.source,
            out_port.name if out_port else edge.sourceHandle,
            edge.target,
            in_port.name if in_port else edge.targetHandle,
        )
        if link in seen_links:
            problems.append(
                Problem(
                    "duplicate-edge",
                    "the same ports are already connected by another edge",
                    edge=edge.id,
                    hint="delete one of them",
                )
            )
        seen_links.add(link)
    return problems


def _port_problem(problems: list[Problem], edge, spec, end: str, handle: str | None, config: dict | None):
    outputs = spec.outputs_for(config)
    own, other = (outputs, spec.inputs) if end == "source" else (spec.inputs, outputs)
    side, other_side = ("output", "input") if end == "source" else ("input", "output")
    node_id = edge.source if end == "source" else edge.target
    field = "sourceHandle" if end == "source" else "targetHandle"
    port = spec.output_port(handle, config) if end == "source" else spec.input_port(handle)
    if port is not None:
        return port
    names = ", ".join(p.name for p in own) or "none"
    if not own:
        msg = f"'{node_id}' ({spec.type}) has no {side} port"
        hint = (
            "a trigger starts a run; nothing can connect into it"
            if end == "target"
            else "this node cannot have outgoing edges"
        )
        problems.append(Problem("missing-port", msg, edge=edge.id, field=field, hint=hint))
    elif handle is None:
        problems.append(
            Problem(
                "missing-port",
                f"'{node_id}' ({spec.type}) has several {side} ports; say which",
                edge=edge.id,
                field=field,
                hint=f"set {field} to one of: {names}",
            )
        )
    elif any(p.name == handle for p in other):
        problems.append(
            Problem(
                "incompatible-ports",
                f"'{handle}' is an {other_side} port of '{node_id}'; an edge's {end} must be an {side} port",
                edge=edge.id,
                field=field,
                hint=f"{side} ports of {spec.type}: {names}",
            )
        )
    else:
        problems.append(
            Problem(
                "missing-port",
                f"'{node_id}' ({spec.type}) has no {side} port '{handle}'",
                edge=edge.id,
                field=field,
                hint=f"{side} ports: {names}",
            )
        )
    return None


def _trigger_problems(doc: FlowDocument, graph: Graph) -> list[Problem]:
    triggers = [n.id for n in doc.nodes if (s := nodes.get(n.type)) and s.kind == "trigger"]
    if not triggers:
        if not doc.nodes:
            return [Problem("no-trigger", "the flow is empty", hint="add a trigger node, e.g. trigger.manual")]
        return [
            Problem(
                "no-trigger",
                "the flow has no trigger node",
                hint="add a trigger (e.g. trigger.manual) and connect it to the first node",
            )
        ]
    reachable = graph.reachable_from(triggers)
    # A compensating node is reached only when a later node fails (see _compensation_problems).
    undoing = compensations(doc)
    return [
        Problem(
            "unreachable-node", "no trigger leads to this node", node=n.id, hint="connect it to the flow or delete it"
        )
        for n in doc.nodes
        if n.id not in reachable and n.id not in undoing
    ]


def compensations(doc: FlowDocument) -> dict[str, str]:
    """Compensating node -> the node it compensates (the first, if several name it), for the
    ``compensate`` fields that name an existing node."""
    ids = {n.id for n in doc.nodes}
    out: dict[str, str] = {}
    for node in doc.nodes:
        if node.compensate and node.compensate in ids and node.compensate != node.id:
            out.setdefault(node.compensate, node.id)
    return out


def _compensation_problems(doc: FlowDocument, graph: Graph, loops: dict[str, dict]) -> list[Problem]:
    """A node's ``compensate`` names the activity that undoes it. That node is not a step of the
    flow: no edge leads to it or from it, and it runs only after a later node failed for good."""
    problems: list[Problem] = []
    by_id = {n.id: n for n in doc.nodes}
    triggers = [n.id for n in doc.nodes if (s := nodes.get(n.type)) and s.kind == "trigger"]
    reachable = graph.reachable_from(triggers)
    in_loop = {member: loop for loop, body in loops.items() for member in body["body"]}
    claimed: dict[str, str] = {}
    for node in doc.nodes:
        target_id = node.compensate
        if not target_id:
            continue
        spec = nodes.get(node.type)

        def refuse(code: str, message: str, hint: str) -> None:
            problems.append(Problem(code, message, node=node.id, field="compensate", hint=hint))  # noqa: B023 - called in this iteration only

        if spec and spec.kind == "trigger":
            refuse(
                "invalid-compensation",
                "a trigger cannot be compensated: it only starts the run",
                "set compensate on the first node that changes something",
            )
            continue
        target = by_id.get(target_id)
        if target is None:
            close = difflib.get_close_matches(target_id, sorted(set(by_id) - {node.id}), n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else f"add an activity node that undoes '{node.id}' and name it here"
            )
            refuse("unknown-compensation", f"compensate names node '{target_id}', which does not exist", hint)
            continue
        if target_id == node.id:
            refuse(
                "invalid-compensation",
                "a node cannot compensate itself",
                f"name another node that undoes what '{node.id}' did",
            )
            continue
        target_spec = nodes.get(target.type)
        if target_spec is None:
            continue  # its unknown type is reported already
        if target_spec.kind != "activity":
            refuse(
                "invalid-compensation",
                f"'{target_id}' is a {target_spec.kind} node ({target.type}); a compensation must be an activity node",
                f"name an activity node (e.g. action.http) that undoes what '{node.id}' did",
            )
            continue
        if target_id in claimed:
            refuse(
                "compensation-shared",
                f"'{target_id}' already compensates '{claimed[target_id]}'",
                "give each node its own compensating node",
            )
            continue
        claimed[target_id] = node.id
        if node.id in in_loop:
            refuse(
                "compensation-in-loop",
                f"'{node.id}' is inside the loop of '{in_loop[node.id]}': a node of a loop body cannot be compensated",
                f"compensate the loop node '{in_loop[node.id]}' itself, or a node after the loop",
            )
        if target.compensate:
            problems.append(
                Problem(
                    "invalid-compensation",
                    f"'{target_id}' compensates '{node.id}' and cannot have a compensation of its own",
                    node=target_id,
                    field="compensate",
                    hint=f"remove compensate from '{target_id}'",
                )
            )
        if target_id in reachable:
            refuse(
                "compensation-reachable",
                f"'{target_id}' compensates '{node.id}' but edges lead to it from the trigger, so it would also run as a normal step",
                f"delete the edges into '{target_id}': a compensation runs only when a later node fails",
            )
            continue
        for edge in doc.edges:
            if target_id in (edge.source, edge.target):
                problems.append(
                    Problem(
                        "compensation-connected",
                        f"'{target_id}' compensates '{node.id}': a compensating node is not a step of the flow and has no edges",
                        edge=edge.id,
                        hint="delete this edge; the compensation runs only when a later node fails",
                    )
                )
    return problems


def _reference_problems(doc: FlowDocument, graph: Graph, check_upstream: bool) -> list[Problem]:
    problems = []
    node_ids = set(graph.ids)
    undoing = compensations(doc)
    for node in doc.nodes:
        spec = nodes.get(node.type)
        if spec is None:
            continue
        upstream = None
        compensated = undoing.get(node.id)
        try:
            found = list(_expressions(node, spec))
        except expr.ExprError as exc:
            field = f"config.{exc.path}" if getattr(exc, "path", None) else "config"
            problems.append(
                Problem("invalid-expression", str(exc), node=node.id, field=field, hint="close every {{ with }}")
            )
            continue
        for field, source in found:
            try:
                refs = expr.Expression(source).references()
            except expr.ExprError as exc:
                problems.append(
                    Problem(
                        "invalid-expression",
                        str(exc),
                        node=node.id,
                        field=f"config.{field}",
                        hint="see the reference language in docs/references.md",
                    )
                )
                continue
            for path in refs:
                if path[0] != "nodes":
                    continue
                if len(path) < 2:
                    continue
                target = path[1]
                if upstream is None:
                    # A compensation has what the node it undoes had, and that node's output.
                    upstream = graph.ancestors(compensated) | {compensated} if compensated else graph.ancestors(node.id)
                if target not in node_ids:
                    problems.append(
                        Problem(
                            "unknown-reference",
                            f"refers to node '{target}', which does not exist",
                            node=node.id,
                            field=f"config.{field}",
                            hint=_suggest(target, node_ids),
                        )
                    )
                elif check_upstream and compensated and target not in upstream:
                    problems.append(
                        Problem(
                            "compensation-reference",
                            f"refers to node '{target}', which does not run before '{compensated}' (the node this compensates): its output may not exist when the compensation runs",
                            node=node.id,
                            field=f"config.{field}",
                            hint=f"a compensation reads the run input and the outputs of '{compensated}' and the nodes before it",
                        )
                    )
                elif check_upstream and target not in upstream:
                    problems.append(
                        Problem(
                            "reference-not-upstream",
                            f"refers to node '{target}', which does not run before '{node.id}'",
                            node=node.id,
                            field=f"config.{field}",
                            hint=f"only nodes upstream of '{node.id}' can be referenced; connect '{target}' before it",
                        )
                    )
                elif len(path) >= 3 and path[2] != "output":
                    problems.append(
                        Problem(
                            "invalid-reference",
                            f"nodes.{target}.{path[2]} is not something a node has",
                            node=node.id,
                            field=f"config.{field}",
                            hint=f"read its result as nodes.{target}.output",
                        )
                    )
    return problems


def _expressions(node, spec):
    yield from spec.expressions_in(node.config)
    for key, value in node.config.items():
        if key not in spec.expression_fields:
            yield from expr.iter_templates(value, key)


def _suggest(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean '{close[0]}'?" if close else "reference an existing upstream node"
