/**
 * What the canvas reads, each kept current for React: the shared document (updated one changed
 * item at a time, so a 1,000-node flow does not rebuild on every move), the node catalogue,
 * the server's validation of the document, presence, the connection, and the theme.
 */
import * as React from 'react';
import { api, type NodeSpec, type Problem } from './api';
import { Presence, type Peer } from './presence';
import { edgeData, nodeData, type FlowEdgeData, type FlowNodeData, type SharedFlow } from './sharedflow';

/** The document's nodes and edges, kept in step with the Y document a changed item at a time. */
export function useDocument(shared: SharedFlow): { nodes: Map<string, FlowNodeData>; edges: Map<string, FlowEdgeData>; tick: number } {
  const ref = React.useRef<{ nodes: Map<string, FlowNodeData>; edges: Map<string, FlowEdgeData> } | null>(null);
  if (ref.current === null) {
    const nodes = new Map<string, FlowNodeData>();
    const edges = new Map<string, FlowEdgeData>();
    shared.nodes.forEach((m, id) => nodes.set(id, nodeData(id, m)));
    shared.edges.forEach((m, id) => edges.set(id, edgeData(id, m)));
    ref.current = { nodes, edges };
  }
  const [tick, setTick] = React.useState(0);
  React.useEffect(() => {
    const nodesHandler = (events: any[]) => {
      ref.current = { ...ref.current!, nodes: refreshInto(ref.current!.nodes, events, shared.nodes, nodeData) };
      setTick(t => t + 1);
    };
    const edgesHandler = (events: any[]) => {
      ref.current = { ...ref.current!, edges: refreshInto(ref.current!.edges, events, shared.edges, edgeData) };
      setTick(t => t + 1);
    };
    shared.nodes.observeDeep(nodesHandler);
    shared.edges.observeDeep(edgesHandler);
    // The document may have changed between the first render and this effect.
    ref.current = {
      nodes: new Map([...shared.nodes.entries()].map(([id, m]) => [id, nodeData(id, m)])),
      edges: new Map([...shared.edges.entries()].map(([id, m]) => [id, edgeData(id, m)]))
    };
    setTick(t => t + 1);
    return () => {
      shared.nodes.unobserveDeep(nodesHandler);
      shared.edges.unobserveDeep(edgesHandler);
    };
  }, [shared]);
  return { ...ref.current!, tick };
}

/** The first place at or below `at` where a new node does not cover another one. */
export function freeSpot(at: { x: number; y: number }, nodes: FlowNodeData[]): { x: number; y: number } {
  const p = { ...at };
  for (let i = 0; i < 50 && nodes.some(n => Math.abs(n.position.x - p.x) < 220 && Math.abs(n.position.y - p.y) < 100); i++) {
    p.y += 110;
  }
  return p;
}

function refreshInto<T>(current: Map<string, T>, events: any[], root: any, make: (id: string, m: any) => T): Map<string, T> {
  const changed = new Set<string>();
  for (const ev of events) {
    if (ev.target === root) {
      ev.changes.keys.forEach((_: unknown, key: string) => changed.add(key));
    } else if (ev.path.length) {
      changed.add(String(ev.path[0]));
    }
  }
  const next = new Map(current);
  changed.forEach(id => {
    const m = root.get(id);
    if (m) {
      next.set(id, make(id, m));
    } else {
      next.delete(id);
    }
  });
  return next;
}

export function useSpecs(): { specs: Map<string, NodeSpec>; list: NodeSpec[]; error: string | null } {
  const [list, setList] = React.useState<NodeSpec[]>([]);
  const [error, setError] = React.useState<string | null>(null);
  React.useEffect(() => {
    api.nodes().then(setList, e => setError(`could not load the node catalogue: ${e.message ?? e}`));
  }, []);
  const specs = React.useMemo(() => new Map(list.map(s => [s.type, s])), [list]);
  return { specs, list, error };
}

/**
 * Server-side validation of the document, re-asked shortly after each change. `checked` is
 * false while the server cannot be asked: the problems shown are then those of an older draft.
 */
export function useProblems(shared: SharedFlow, tick: number): { problems: Problem[]; checked: boolean } {
  const [state, setState] = React.useState<{ problems: Problem[]; checked: boolean }>({ problems: [], checked: false });
  React.useEffect(() => {
    let cancelled = false;
    const t = window.setTimeout(() => {
      api.validate(shared.toData()).then(
        r => !cancelled && setState({ problems: r.problems, checked: true }),
        () => !cancelled && setState(s => ({ ...s, checked: false }))
      );
    }, 250);
    return () => {
      cancelled = true;
      window.clearTimeout(t);
    };
  }, [shared, tick]);
  return state;
}

export function usePresence(presence: Presence): { peers: Peer[]; locks: ReturnType<Presence['locks']> } {
  const [state, setState] = React.useState(() => ({ peers: presence.peers(), locks: presence.locks() }));
  React.useEffect(() => {
    const read = () => setState({ peers: presence.peers(), locks: presence.locks() });
    const stop = presence.onChange(read);
    read(); // others may have arrived between the first render and now
    return stop;
  }, [presence]);
  return state;
}

export function useOnline(shared: SharedFlow): boolean {
  const [online, setOnline] = React.useState(shared.connection.online);
  React.useEffect(() => {
    const stop = shared.connection.onChange(() => setOnline(shared.connection.online));
    setOnline(shared.connection.online); // it may have changed between the first render and now
    return stop;
  }, [shared]);
  return online;
}

export function useDarkTheme(): boolean {
  const read = () => document.body.dataset.jpThemeLight === 'false';
  const [dark, setDark] = React.useState(read);
  React.useEffect(() => {
    const obs = new MutationObserver(() => setDark(read()));
    obs.observe(document.body, { attributes: true, attributeFilter: ['data-jp-theme-light'] });
    return () => obs.disconnect();
  }, []);
  return dark;
}

