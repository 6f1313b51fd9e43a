/**
 * The shared `.flow` document as the canvas edits it: a Y.Doc whose layout is the contract
 * written down in floworch_ext/ydoc.py (root maps `meta`, `nodes`, `edges`; a node is a
 * Y.Map with id/type/label strings, `position` and `policy` replaced whole, `config` a
 * Y.Map of fields, `compensate` the id of the node that undoes it (absent: none), `order`
 * keeping the file's order).
 *
 * Every local edit is one transaction with the LOCAL origin, so the undo manager undoes only
 * this user's edits (per-user undo) and a remote update is never mistaken for a local one.
 */
import * as Y from 'yjs';

export const LOCAL = Symbol('floworch-local-edit');

export type JSONValue = null | boolean | number | string | JSONValue[] | { [k: string]: JSONValue };

export interface FlowNodeData {
  id: string;
  type: string;
  label: string;
  position: { x: number; y: number };
  config: { [k: string]: JSONValue };
  policy?: { [k: string]: JSONValue };
  /** the node that undoes this one when a later node fails for good (a saga's compensation) */
  compensate?: string;
}

export interface FlowEdgeData {
  id: string;
  source: string;
  target: string;
  sourceHandle?: string | null;
  targetHandle?: string | null;
}

export interface FlowData {
  version: 1;
  meta: { [k: string]: JSONValue };
  nodes: FlowNodeData[];
  edges: FlowEdgeData[];
}

/** What the canvas needs to know about the connection of its room. */
export interface Connection {
  /** true while the room's websocket is connected and synced */
  readonly online: boolean;
  onChange(listener: () => void): () => void;
}

function byOrder(a: [string, Y.Map<any>], b: [string, Y.Map<any>]): number {
  const oa = a[1].get('order');
  const ob = b[1].get('order');
  if (oa === undefined && ob === undefined) {
    return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
  }
  if (oa === undefined) {
    return 1;
  }
  if (ob === undefined) {
    return -1;
  }
  return oa - ob || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
}

export class SharedFlow {
  readonly ydoc: Y.Doc;
  readonly meta: Y.Map<any>;
  readonly nodes: Y.Map<Y.Map<any>>;
  readonly edges: Y.Map<Y.Map<any>>;
  readonly undoManager: Y.UndoManager;
  /** Local transactions made while offline: what a reconnect still has to send. */
  pending = 0;

  constructor(ydoc: Y.Doc, readonly connection: Connection) {
    this.ydoc = ydoc;
    this.meta = ydoc.getMap('meta');
    this.nodes = ydoc.getMap('nodes') as Y.Map<Y.Map<any>>;
    this.edges = ydoc.getMap('edges') as Y.Map<Y.Map<any>>;
    this.undoManager = new Y.UndoManager([this.meta, this.nodes, this.edges], {
      trackedOrigins: new Set([LOCAL]),
      captureTimeout: 400
    });
    connection.onChange(() => {
      if (connection.online) {
        this.pending = 0;
      }
    });
  }

  /** One local, undoable edit. */
  transact(f: () => void): void {
    this.ydoc.transact(f, LOCAL);
    if (!this.connection.online) {
      this.pending += 1;
    }
  }

  /** Calls `listener` after every change of the document, local or remote. */
  observe(listener: (local: boolean) => void): () => void {
    const handler = (_events: Y.YEvent<any>[], tr: Y.Transaction) => listener(tr.origin === LOCAL);
    const roots = [this.meta, this.nodes, this.edges];
    roots.forEach(r => r.observeDeep(handler));
    return () => roots.forEach(r => r.unobserveDeep(handler));
  }

  get name(): string {
    return String(this.meta.get('name') ?? '');
  }

  get id(): string | undefined {
    const id = this.meta.get('id');
    return typeof id === 'string' && id ? id : undefined;
  }

  node(id: string): FlowNodeData | undefined {
    const m = this.nodes.get(id);
    return m ? nodeData(id, m) : undefined;
  }

  /** The document as the file holds it (what the server validates and stores). */
  toData(): FlowData {
    const meta: { [k: string]: JSONValue } = {};
    this.meta.forEach((v, k) => (meta[k] = v));
    const nodes = [...this.nodes.entries()].sort(byOrder).map(([id, m]) => nodeData(id, m));
    const edges = [...this.edges.entries()].sort(byOrder).map(([id, m]) => edgeData(id, m));
    return { version: 1, meta, nodes, edges };
  }

  private nextOrder(map: Y.Map<Y.Map<any>>): number {
    let max = -1;
    map.forEach(m => {
      const o = m.get('order');
      if (typeof o === 'number' && o > max) {
        max = o;
      }
    });
    return max + 1;
  }

  /** A node id not yet taken, with a random part so two editors never pick the same one. */
  freshId(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_]/g, '_');
    for (;;) {
      const id = `${clean}_${Math.random().toString(36).slice(2, 6)}`;
      if (!this.nodes.has(id) && !this.edges.has(id)) {
        return id;
      }
    }
  }

  addNode(node: FlowNodeData): void {
    this.transact(() => this.insertNode(node));
  }

  private insertNode(node: FlowNodeData): void {
    const m = new Y.Map<any>();
    m.set('id', node.id);
    m.set('type', node.type);
    m.set('label', node.label ?? '');
    m.set('position', { x: Math.round(node.position.x), y: Math.round(node.position.y) });
    const config = new Y.Map<any>();
    Object.entries(node.config ?? {}).forEach(([k, v]) => config.set(k, v));
    m.set('config', config);
    if (node.policy) {
      m.set('policy', node.policy);
    }
    if (node.compensate) {
      m.set('compensate', node.compensate);
    }
    m.set('order', this.nextOrder(this.nodes));
    this.nodes.set(node.id, m);
  }

  addEdge(edge: FlowEdgeData): void {
    this.transact(() => this.insertEdge(edge));
  }

  private insertEdge(edge: FlowEdgeData): void {
    const m = new Y.Map<any>();
    m.set('id', edge.id);
    m.set('source', edge.source);
    m.set('target', edge.target);
    if (edge.sourceHandle) {
      m.set('sourceHandle', edge.sourceHandle);
    }
    if (edge.targetHandle) {
      m.set('targetHandle', edge.targetHandle);
    }
    m.set('order', this.nextOrder(this.edges));
    this.edges.set(edge.id, m);
  }

  /**
   * Pastes nodes and the edges between them under fresh ids; returns the new node ids. A
   * compensation comes along when its node is pasted too (a copy of a step is undone by a copy
   * of its undo), and is dropped otherwise: one node undoes one step.
   */
  paste(nodes: FlowNodeData[], edges: FlowEdgeData[], offset: { x: number; y: number }): string[] {
    const ids = new Map<string, string>();
    const taken = new Set<string>();
    nodes.forEach(n => {
      let id = this.freshId(n.type.split('.').pop() || 'node');
      while (taken.has(id)) {
        id = this.freshId(n.type.split('.').pop() || 'node');
      }
      taken.add(id);
      ids.set(n.id, id);
    });
    this.transact(() => {
      nodes.forEach(n => {
        const id = ids.get(n.id)!;
        const compensate = n.compensate ? ids.get(n.compensate) : undefined;
        this.insertNode({ ...n, id, compensate, position: { x: n.position.x + offset.x, y: n.position.y + offset.y } });
      });
      edges.forEach(e => {
        const source = ids.get(e.source);
        const target = ids.get(e.target);
        if (source && target) {
          this.insertEdge({ ...e, id: `e_${source}_${e.sourceHandle || 'out'}_${target}`, source, target });
        }
      });
    });
    return [...ids.values()];
  }

  moveNodes(positions: { id: string; x: number; y: number }[]): void {
    this.transact(() => {
      positions.forEach(p => {
        const m = this.nodes.get(p.id);
        if (m) {
          m.set('position', { x: Math.round(p.x), y: Math.round(p.y) });
        }
      });
    });
  }

  /** Sets config fields (undefined removes one), and optionally the label, policy and
   * compensation (null removes the policy or the compensation). */
  updateNode(id: string, change: NodeChange): void {
    const m = this.nodes.get(id);
    if (!m) {
      return;
    }
    this.transact(() => {
      if (change.config) {
        let config = m.get('config');
        if (!(config instanceof Y.Map)) {
          config = new Y.Map<any>();
          m.set('config', config);
        }
        for (const [k, v] of Object.entries(change.config)) {
          if (v === undefined) {
            config.delete(k);
          } else {
            config.set(k, v);
          }
        }
      }
      if (change.label !== undefined) {
        m.set('label', change.label);
      }
      if (change.policy === null) {
        m.delete('policy');
      } else if (change.policy !== undefined) {
        m.set('policy', change.policy);
      }
      if (change.compensate === null || change.compensate === '') {
        m.delete('compensate');
      } else if (change.compensate !== undefined && m.get('compensate') !== change.compensate) {
        m.set('compensate', change.compensate);
      }
    });
  }

  /** `node` is undone by `by` (null: by nothing). The link lives on the node, not in `edges`. */
  setCompensation(node: string, by: string | null): void {
    this.updateNode(node, { compensate: by });
  }

  /**
   * Removes nodes (with their edges, and the compensations naming them), edges and
   * compensation links (`compensationLinkId`: the link's node then has no compensation).
   */
  remove(ids: string[]): void {
    const gone = new Set(ids);
    this.transact(() => {
      ids.forEach(id => {
        const linked = compensationLinkNode(id);
        if (linked !== null && !this.edges.has(id)) {
          this.nodes.get(linked)?.delete('compensate');
          return;
        }
        this.nodes.delete(id);
        this.edges.delete(id);
      });
      this.edges.forEach((m, id) => {
        if (gone.has(m.get('source')) || gone.has(m.get('target'))) {
          this.edges.delete(id);
        }
      });
      this.nodes.forEach(m => {
        if (gone.has(m.get('compensate'))) {
          m.delete('compensate');
        }
      });
    });
  }
}

/** What `updateNode` changes; absent keys stay as they are. */
export interface NodeChange {
  config?: { [k: string]: JSONValue | undefined };
  label?: string;
  policy?: { [k: string]: JSONValue } | null;
  compensate?: string | null;
}

/**
 * The canvas draws a node's compensation as a link of its own (dashed, "undo"), not an edge:
 * its id is `compensate:<node id>`, which no node id can be (ids have no colon).
 */
const LINK_PREFIX = 'compensate:';

export function compensationLinkId(node: string): string {
  return LINK_PREFIX + node;
}

/** The node whose compensation link this is, or null for any other id. */
export function compensationLinkNode(id: string): string | null {
  return id.startsWith(LINK_PREFIX) ? id.slice(LINK_PREFIX.length) : null;
}

function plain(value: any): any {
  return value instanceof Y.AbstractType ? value.toJSON() : value;
}

export function nodeData(id: string, m: Y.Map<any>): FlowNodeData {
  const pos = plain(m.get('position')) ?? {};
  const node: FlowNodeData = {
    id,
    type: String(m.get('type') ?? ''),
    label: String(m.get('label') ?? ''),
    position: { x: Number(pos.x ?? 0), y: Number(pos.y ?? 0) },
    config: plain(m.get('config')) ?? {}
  };
  const policy = plain(m.get('policy'));
  if (policy) {
    node.policy = policy;
  }
  const compensate = m.get('compensate');
  if (typeof compensate === 'string' && compensate) {
    node.compensate = compensate;
  }
  return node;
}

export function edgeData(id: string, m: Y.Map<any>): FlowEdgeData {
  const edge: FlowEdgeData = { id, source: String(m.get('source')), target: String(m.get('target')) };
  const sh = m.get('sourceHandle');
  const th = m.get('targetHandle');
  if (sh) {
    edge.sourceHandle = sh;
  }
  if (th) {
    edge.targetHandle = th;
  }
  return edge;
}
