/**
 * Auto-layout with elkjs (layered, left to right). It moves nodes only: positions are layout,
 * which never changes what runs (the plan hash leaves them out).
 */
import type { FlowEdgeData, FlowNodeData } from './sharedflow';

let elk: Promise<any> | null = null;

function engine(): Promise<any> {
  // elkjs is large: loaded the first time a layout is asked for, not with the canvas.
  elk = elk ?? import('elkjs/lib/elk.bundled.js').then(m => new m.default());
  return elk;
}

export async function autoLayout(
  nodes: FlowNodeData[],
  edges: FlowEdgeData[],
  size: (id: string) => { width: number; height: number }
): Promise<{ id: string; x: number; y: number }[]> {
  const ids = new Set(nodes.map(n => n.id));
  const graph = await (await engine()).layout({
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'RIGHT',
      'elk.spacing.nodeNode': '40',
      'elk.layered.spacing.nodeNodeBetweenLayers': '80'
    },
    children: nodes.map(n => ({ id: n.id, ...size(n.id) })),
    edges: edges
      .filter(e => ids.has(e.source) && ids.has(e.target))
      .map(e => ({ id: e.id, sources: [e.source], targets: [e.target] }))
  });
  return ((graph.children ?? []) as any[]).map(c => ({ id: c.id, x: c.x ?? 0, y: c.y ?? 0 }));
}
