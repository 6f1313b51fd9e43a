/**
 * What the canvas checks while an edge is dragged, so a refusal shows at once with its reason.
 * The server's validation (POST /floworch/api/validate) stays the authority: these checks
 * mirror its port, cycle and compensation rules for the one edge (or compensation link) being drawn.
 */
import type { NodeSpec, Port } from './api';
import type { FlowEdgeData, FlowNodeData } from './sharedflow';

export function outputPorts(spec: NodeSpec | undefined, node: FlowNodeData): Port[] {
  if (!spec) {
    return [];
  }
  const rule = spec.dynamic_outputs;
  if (rule) {
    // The catalogue's rule, the one the engine applies (control.switch: a port per case, then default).
    const items = Array.isArray(node.config[rule.field]) ? (node.config[rule.field] as any[]) : [];
    const named = items
      .map(i => (i && typeof i === 'object' && typeof i[rule.key] === 'string' ? (i[rule.key] as string) : null))
      .filter((p): p is string => !!p);
    return [...named, ...rule.then].map(name => ({ name, label: name, type: 'any', loop_back: false }));
  }
  return spec.outputs;
}

function portNamed(ports: Port[], name: string | null | undefined): Port | undefined {
  if (!name) {
    return ports.length === 1 ? ports[0] : ports.find(p => p.name === 'out' || p.name === 'in');
  }
  return ports.find(p => p.name === name);
}

export interface Candidate {
  source: string;
  target: string;
  sourceHandle?: string | null;
  targetHandle?: string | null;
}

/**
 * The handles an edge stores: a port name only where the node has more than one port on
 * that side (a single port is the default, as the file format writes it).
 */
export function normalise(c: Candidate, nodes: Map<string, FlowNodeData>, specs: Map<string, NodeSpec>): Candidate {
  const side = (id: string, handle: string | null | undefined, outputs: boolean): string | null => {
    const node = nodes.get(id);
    const spec = node ? specs.get(node.type) : undefined;
    if (!handle || !spec || !node) {
      return handle ?? null;
    }
    const ports = outputs ? outputPorts(spec, node) : spec.inputs;
    return ports.length > 1 ? handle : null;
  };
  return {
    source: c.source,
    target: c.target,
    sourceHandle: side(c.source, c.sourceHandle, true),
    targetHandle: side(c.target, c.targetHandle, false)
  };
}

/** The handle at the bottom of an activity node: dragged to another node, it names that
 * node as the one that undoes this one (the node's `compensate`), not an edge. */
export const COMPENSATE_HANDLE = 'compensate';
/** The handle at the top of an activity node, where an undo link ends (it takes no edge). */
export const COMPENSATES_HANDLE = 'compensates';

/** The node that `id` compensates (whose `compensate` names it), if any. */
export function compensatedBy(id: string, nodes: Map<string, FlowNodeData>): string | undefined {
  for (const n of nodes.values()) {
    if (n.compensate === id && n.id !== id) {
      return n.id;
    }
  }
  return undefined;
}

/**
 * Why `c.target` may not undo `c.source` (a drag from the compensate handle), or null when it
 * may. Mirrors the server's compensation rules (validate.py) for the one link being drawn.
 */
export function compensationRefusal(
  c: Candidate,
  nodes: Map<string, FlowNodeData>,
  edges: FlowEdgeData[],
  specs: Map<string, NodeSpec>
): string | null {
  const src = nodes.get(c.source);
  const dst = nodes.get(c.target);
  if (!src || !dst) {
    return 'drag to the node of this flow that undoes this one';
  }
  if (c.source === c.target) {
    return 'a node cannot compensate itself: drag to the node that undoes it';
  }
  if (specs.get(src.type)?.kind === 'trigger') {
    return 'a trigger cannot be compensated: it only starts the run';
  }
  const dstSpec = specs.get(dst.type);
  if (dstSpec && dstSpec.kind !== 'activity') {
    return `'${c.target}' is a ${dstSpec.kind} node (${dst.type}); a compensation must be an activity node`;
  }
  if (edges.some(e => e.source === c.target || e.target === c.target)) {
    return `'${c.target}' is a step of the flow (it has edges); a compensating node has none and runs only when a later node fails`;
  }
  const undoes = compensatedBy(c.source, nodes);
  if (undoes) {
    return `'${c.source}' compensates '${undoes}' and cannot have a compensation of its own`;
  }
  if (dst.compensate) {
    return `'${c.target}' has a compensation of its own ('${dst.compensate}'), so it cannot be one`;
  }
  const claimed = compensatedBy(c.target, nodes);
  if (claimed && claimed !== c.source) {
    return `'${c.target}' already compensates '${claimed}'`;
  }
  return null;
}

/** Why the edge may not be drawn, or null when it may. */
export function refusal(
  c: Candidate,
  nodes: Map<string, FlowNodeData>,
  edges: FlowEdgeData[],
  specs: Map<string, NodeSpec>
): string | null {
  if (c.sourceHandle === COMPENSATE_HANDLE) {
    return compensationRefusal(c, nodes, edges, specs);
  }
  if (c.targetHandle === COMPENSATES_HANDLE) {
    return `the top of '${c.target}' takes an undo link (from a node's compensate handle), not an edge: connect to its input`;
  }
  c = normalise(c, nodes, specs);
  const src = nodes.get(c.source);
  const dst = nodes.get(c.target);
  if (!src || !dst) {
    return 'connect two nodes of this flow';
  }
  if (c.source === c.target) {
    return `a node cannot connect to itself: that would make a cycle ${c.source} -> ${c.source}`;
  }
  for (const id of [c.source, c.target]) {
    const undoes = compensatedBy(id, nodes);
    if (undoes) {
      return `'${id}' compensates '${undoes}': a compensating node is not a step of the flow and has no edges`;
    }
  }
  const srcSpec = specs.get(src.type);
  const dstSpec = specs.get(dst.type);
  const out = portNamed(outputPorts(srcSpec, src), c.sourceHandle);
  const inp = dstSpec ? portNamed(dstSpec.inputs, c.targetHandle) : undefined;
  if (srcSpec && !out) {
    return `'${c.source}' has no output port '${c.sourceHandle ?? ''}'`;
  }
  if (dstSpec && !inp) {
    return dstSpec.inputs.length === 0
      ? `'${c.target}' is a trigger: nothing can connect into it`
      : `'${c.target}' has no input port '${c.targetHandle ?? ''}'`;
  }
  if (out && inp && out.type !== 'any' && inp.type !== 'any' && out.type !== inp.type) {
    return `port '${out.name}' of '${c.source}' gives ${out.type} but port '${inp.name}' of '${c.target}' takes ${inp.type}`;
  }
  const duplicate = edges.find(
    e =>
      e.source === c.source &&
      e.target === c.target &&
      (e.sourceHandle ?? null) === (c.sourceHandle ?? null) &&
      (e.targetHandle ?? null) === (c.targetHandle ?? null)
  );
  if (duplicate) {
    return `'${c.source}' is already connected to '${c.target}' this way`;
  }
  if (inp?.loop_back) {
    return null; // the loop-back port of a for_each closes its body: the one cycle allowed
  }
  const path = pathBetween(c.target, c.source, edges, nodes, specs);
  if (path) {
    const loops = path.some(id => specs.get(nodes.get(id)?.type ?? '')?.allows_loops);
    if (!loops) {
      return `this edge would make a cycle: ${[...path, c.target].join(' -> ')} (use control.for_each for loops)`;
    }
  }
  return null;
}

/** The node ids on a path from `from` to `to` along edges (loop-back edges excluded), or null. */
function pathBetween(
  from: string,
  to: string,
  edges: FlowEdgeData[],
  nodes: Map<string, FlowNodeData>,
  specs: Map<string, NodeSpec>
): string[] | null {
  const next = new Map<string, string[]>();
  for (const e of edges) {
    const dst = nodes.get(e.target);
    const inp = dst && specs.get(dst.type) ? portNamed(specs.get(dst.type)!.inputs, e.targetHandle) : undefined;
    if (inp?.loop_back) {
      continue;
    }
    next.set(e.source, [...(next.get(e.source) ?? []), e.target]);
  }
  const back = new Map<string, string>();
  const seen = new Set([from]);
  const queue = [from];
  while (queue.length) {
    const id = queue.shift()!;
    if (id === to) {
      const path = [id];
      let at = id;
      while (back.has(at)) {
        at = back.get(at)!;
        path.unshift(at);
      }
      return path;
    }
    for (const n of next.get(id) ?? []) {
      if (!seen.has(n)) {
        seen.add(n);
        back.set(n, id);
        queue.push(n);
      }
    }
  }
  return null;
}
