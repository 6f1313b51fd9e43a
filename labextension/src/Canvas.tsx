/**
 * The flow canvas: one React component behind both the `.flow` document editor and the
 * notebook widget. It edits the shared document (`SharedFlow`) and nothing else, so every
 * edit reaches every other canvas and kernel in the room; run status, presence and
 * validation problems are kept beside it, never in the file.
 */
import * as React from 'react';
import {
  Controls,
  ReactFlow,
  ReactFlowProvider,
  ViewportPortal,
  useNodesInitialized,
  useReactFlow,
  type Connection as RFConnection,
  type Edge,
  type EdgeChange,
  type NodeChange
} from '@xyflow/react';
import { api, ApiError, type NodeRun, type NodeSpec, type Problem, type RunRecord } from './api';
import { FlowNodeView, type CanvasNode } from './FlowNodeView';
import { FarView, useDomNodes } from './FarView';
import { DEFAULT_NODE_SIZE } from './viewport';
import { MiniMapCanvas } from './MiniMapCanvas';
import { freeSpot, useDarkTheme, useDocument, useOnline, usePresence, useProblems, useSpecs } from './hooks';
import { ProblemsList } from './ProblemsList';
import { NodeRunDetails } from './RunDetails';
import { autoLayout } from './layout';
import { Presence, userName } from './presence';
import { COMPENSATE_HANDLE, COMPENSATES_HANDLE, compensatedBy, normalise, refusal } from './rules';
import { compensationLinkId, type FlowEdgeData, type FlowNodeData, type SharedFlow } from './sharedflow';
import { Palette } from './Palette';
import { Properties } from './Properties';
import { PublishDialog, RunBar, RunDialog, VersionsPanel } from './RunControls';
import { canEdit, useRole } from './role';

export interface CanvasProps {
  shared: SharedFlow;
  presence: Presence;
  /** the file's path, shown in messages */
  path: string;
  /** smaller chrome for a notebook cell */
  compact?: boolean;
  /** opens the JupyterLab Run panel on a run (absent in the notebook widget) */
  openRunPanel?: (runId: string) => void;
}

const nodeTypes = { flow: FlowNodeView };
// Fitting the view takes the nodes the far view draws (hidden from React Flow) too.
const FIT_VIEW = { maxZoom: 1, includeHiddenNodes: true };
let clipboard: { nodes: FlowNodeData[]; edges: FlowEdgeData[] } | null = null;

function CanvasInner(props: CanvasProps): JSX.Element {
  const { shared, presence } = props;
  const flow = useReactFlow();
  const doc = useDocument(shared);
  const { specs, list, error: catalogueError } = useSpecs();
  const { problems, checked } = useProblems(shared, doc.tick);
  const { peers, locks } = usePresence(presence);
  const online = useOnline(shared);
  // A viewer watches: every way of changing the document is off (the server would drop it anyway).
  const { me, refresh: refreshRole } = useRole();
  const viewOnly = !canEdit(me);
  const [selected, setSelected] = React.useState<Set<string>>(new Set());
  const [selectedEdges, setSelectedEdges] = React.useState<Set<string>>(new Set());
  const [refused, setRefused] = React.useState<string | null>(null);
  const [toast, setToast] = React.useState<{ text: string; error?: boolean } | null>(null);
  const [dialog, setDialog] = React.useState<'publish' | 'run' | 'versions' | null>(null);
  const [run, setRun] = React.useState<RunRecord | null>(null);
  const [detailsNode, setDetailsNode] = React.useState<string | null>(null);
  const [, setUndoTick] = React.useState(0);
  const wrapper = React.useRef<HTMLDivElement>(null);
  const stopWatch = React.useRef<(() => void) | null>(null);

  const say = React.useCallback((text: string, error = false) => {
    setToast({ text, error });
    window.setTimeout(() => setToast(t => (t?.text === text ? null : t)), error ? 8000 : 4000);
  }, []);
  // A refusal for want of a role: the role may have changed since it was read.
  const refused403 = React.useCallback((e: unknown) => e instanceof ApiError && e.status === 403 && refreshRole(), [refreshRole]);

  React.useEffect(() => {
    const um = shared.undoManager;
    const bump = () => setUndoTick(t => t + 1);
    um.on('stack-item-added', bump);
    um.on('stack-item-popped', bump);
    return () => {
      um.off('stack-item-added', bump);
      um.off('stack-item-popped', bump);
    };
  }, [shared]);

  React.useEffect(() => () => stopWatch.current?.(), []);

  // The room's content arrives after the canvas mounts: fit the view once its nodes are measured.
  const initialised = useNodesInitialized();
  const fitted = React.useRef(false);
  React.useEffect(() => {
    if (initialised && !fitted.current && doc.nodes.size > 0) {
      fitted.current = true;
      void flow.fitView(FIT_VIEW);
    }
  }, [initialised, doc.nodes.size, flow]);

  // Problems by node and edge.
  const problemsBy = React.useMemo(() => {
    const byNode = new Map<string, Problem[]>();
    const byEdge = new Map<string, Problem[]>();
    problems.forEach(p => {
      if (p.node) {
        byNode.set(p.node, [...(byNode.get(p.node) ?? []), p]);
      }
      if (p.edge) {
        byEdge.set(p.edge, [...(byEdge.get(p.edge) ?? []), p]);
      }
    });
    return { byNode, byEdge };
  }, [problems]);

  const runBy = React.useMemo(() => {
    const m = new Map<string, NodeRun>();
    (run?.nodes ?? []).forEach(n => m.set(n.node, n));
    return m;
  }, [run]);

  const decide = React.useCallback(
    async (node: string, decision: 'approved' | 'rejected') => {
      if (!run) {
        return;
      }
      try {
        await api.approve(run.run_id, node, decision);
        say(`${decision === 'approved' ? 'Approved' : 'Rejected'} '${node}'`);
      } catch (e) {
        refused403(e);
        say(`Could not decide '${node}': ${(e as Error).message}`, true);
      }
    },
    [run, say, refused403]
  );

  const remoteSelections = React.useMemo(() => {
    const m = new Map<string, { name: string; color: string }[]>();
    peers.forEach(peer =>
      peer.presence.selection.forEach(id =>
        m.set(id, [...(m.get(id) ?? []), { name: userName(peer.user), color: peer.user.color ?? '#888' }])
      )
    );
    return m;
  }, [peers]);

  // Sizes React Flow measured: kept on the nodes, as the minimap and fitView read them there.
  const measured = React.useRef(new Map<string, { width: number; height: number }>());
  const [measuredTick, setMeasuredTick] = React.useState(0);
  // Which nodes are DOM; the far view draws the others (zoomed far out: all of them).
  const domNodes = useDomNodes(doc.nodes, measured.current, selected);

  // React Flow nodes: an object per node, rebuilt only when something it shows changed.
  const cache = React.useRef(new Map<string, { key: unknown[]; node: CanvasNode }>());
  const lastNodes = React.useRef<CanvasNode[]>([]);
  const rfNodes: CanvasNode[] = React.useMemo(() => {
    const out: CanvasNode[] = [];
    const next = new Map<string, { key: unknown[]; node: CanvasNode }>();
    doc.nodes.forEach((n, id) => {
      const lock = locks.get(id);
      const foreignLock = lock && lock.clientId !== presence.clientId ? lock : undefined;
      const size = measured.current.get(id);
      const hidden = !domNodes.has(id);
      const key = [n, specs.get(n.type), problemsBy.byNode.get(id), runBy.get(id), foreignLock, remoteSelections.get(id), selected.has(id), decide, size, hidden];
      const prev = cache.current.get(id);
      if (prev && prev.key.length === key.length && prev.key.every((k, i) => k === key[i])) {
        next.set(id, prev);
        out.push(prev.node);
        return;
      }
      const node: CanvasNode = {
        id,
        type: 'flow',
        position: n.position,
        // Sizes before React Flow measured them: the far view, the minimap and fitView need one.
        measured: size ?? DEFAULT_NODE_SIZE,
        hidden,
        selected: selected.has(id),
        data: {
          node: n,
          spec: specs.get(n.type),
          problems: problemsBy.byNode.get(id),
          run: runBy.get(id),
          lock: foreignLock,
          remoteSelection: remoteSelections.get(id),
          onDecide: decide
        }
      };
      next.set(id, { key, node });
      out.push(node);
    });
    cache.current = next;
    // The same nodes as last time (a remote cursor moved, say): the same array, so React Flow
    // has nothing to compare.
    const previous = lastNodes.current;
    if (previous.length === out.length && previous.every((n, i) => n === out[i])) {
      return previous;
    }
    lastNodes.current = out;
    return out;
    // measuredTick says the sizes in measured.current (a ref, which no dependency can watch) changed.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [doc.nodes, specs, problemsBy, runBy, locks, remoteSelections, selected, decide, presence, measuredTick, domNodes]);

  const allEdges: Edge[] = React.useMemo(() => {
    const out: Edge[] = [];
    doc.edges.forEach((e, id) => {
      const p = problemsBy.byEdge.get(id);
      const status = runBy.get(e.target)?.status;
      out.push({
        id,
        source: e.source,
        target: e.target,
        sourceHandle: e.sourceHandle ?? null,
        targetHandle: e.targetHandle ?? null,
        selected: selectedEdges.has(id),
        animated: status === 'running',
        className: `${p?.length ? 'fo-edge-problem' : ''} ${status ? `fo-edge-${status}` : ''}`,
        label: p?.length ? `⚠ ${p[0].message}` : undefined,
        data: { problems: p }
      });
    });
    return out;
  }, [doc.edges, problemsBy, runBy, selectedEdges]);
  // A node's compensation, drawn as a dashed "undo" link from its compensate handle to the node
  // that undoes it. It is the node's `compensate` field, not an edge: deleting the link clears it.
  const compensationLinks: Edge[] = React.useMemo(() => {
    const out: Edge[] = [];
    doc.nodes.forEach((n, id) => {
      if (!n.compensate || !doc.nodes.has(n.compensate)) {
        return; // a compensate naming no node is a problem on the node, with nothing to draw
      }
      const linkId = compensationLinkId(id);
      const p = problemsBy.byNode.get(id)?.filter(x => x.field === 'compensate');
      const status = runBy.get(id)?.status;
      out.push({
        id: linkId,
        source: id,
        target: n.compensate,
        sourceHandle: COMPENSATE_HANDLE,
        // Into the undo node's top (an activity's); any other node (a problem) by its first input.
        targetHandle: specs.get(doc.nodes.get(n.compensate)!.type)?.kind === 'activity' ? COMPENSATES_HANDLE : null,
        selected: selectedEdges.has(linkId),
        animated: status === 'compensating',
        className: `fo-edge-compensate${p?.length ? ' fo-edge-problem' : ''}${status ? ` fo-edge-${status}` : ''}`,
        label: p?.length ? `undo ⚠ ${p[0].message}` : 'undo',
        labelBgPadding: [4, 2],
        labelBgBorderRadius: 3,
        data: { problems: p, compensates: id }
      });
    });
    return out;
  }, [doc.nodes, specs, problemsBy, runBy, selectedEdges]);
  // React Flow has only the edges it draws, between DOM nodes: the far view draws the others.
  const rfEdges = React.useMemo(
    () => [...allEdges, ...compensationLinks].filter(e => domNodes.has(e.source) && domNodes.has(e.target)),
    [allEdges, compensationLinks, domNodes]
  );

  // ------------------------------------------------------------------ edits
  const onNodesChange = React.useCallback(
    (changes: NodeChange<CanvasNode>[]) => {
      const moves: { id: string; x: number; y: number }[] = [];
      const removed: string[] = [];
      let selection: Set<string> | null = null;
      let resized = false;
      for (const c of changes) {
        if (c.type === 'position' && c.position) {
          moves.push({ id: c.id, ...c.position });
        } else if (c.type === 'dimensions' && c.dimensions) {
          const before = measured.current.get(c.id);
          if (!before || before.width !== c.dimensions.width || before.height !== c.dimensions.height) {
            measured.current.set(c.id, c.dimensions);
            resized = true;
          }
        } else if (c.type === 'remove') {
          removed.push(c.id);
        } else if (c.type === 'select') {
          selection = selection ?? new Set(selected);
          if (c.selected) {
            selection.add(c.id);
          } else {
            selection.delete(c.id);
          }
        }
      }
      if (moves.length && !viewOnly) {
        shared.moveNodes(moves);
      }
      if (resized) {
        setMeasuredTick(t => t + 1);
      }
      if (removed.length && !viewOnly) {
        shared.remove(removed);
      }
      if (selection) {
        setSelected(selection);
        presence.set({ selection: [...selection] });
      }
    },
    [shared, selected, presence, viewOnly]
  );

  const onEdgesChange = React.useCallback(
    (changes: EdgeChange[]) => {
      const removed = changes.filter(c => c.type === 'remove').map(c => c.id);
      if (removed.length && !viewOnly) {
        shared.remove(removed);
      }
      let selection: Set<string> | null = null;
      for (const c of changes) {
        if (c.type === 'select') {
          selection = selection ?? new Set(selectedEdges);
          if (c.selected) {
            selection.add(c.id);
          } else {
            selection.delete(c.id);
          }
        }
      }
      if (selection) {
        setSelectedEdges(selection);
      }
    },
    [shared, selectedEdges, viewOnly]
  );

  const isValidConnection = React.useCallback(
    (c: RFConnection | Edge) => {
      const reason = refusal(c, doc.nodes, [...doc.edges.values()], specs);
      setRefused(reason);
      return reason === null;
    },
    [doc, specs]
  );

  const onConnect = React.useCallback(
    (c: RFConnection) => {
      if (viewOnly) {
        return;
      }
      const reason = refusal(c, doc.nodes, [...doc.edges.values()], specs);
      if (reason) {
        setRefused(reason);
        return;
      }
      setRefused(null);
      if (c.sourceHandle === COMPENSATE_HANDLE) {
        shared.setCompensation(c.source, c.target);
        return;
      }
      const { sourceHandle, targetHandle } = normalise(c, doc.nodes, specs);
      let id = `e_${c.source}_${sourceHandle || 'out'}_${c.target}`;
      if (doc.edges.has(id) || doc.nodes.has(id)) {
        id = shared.freshId(id);
      }
      shared.addEdge({ id, source: c.source, target: c.target, sourceHandle, targetHandle });
    },
    [doc, specs, shared, viewOnly]
  );

  const onConnectStart = React.useCallback(() => setRefused(null), []);
  const refusedRef = React.useRef<string | null>(null);
  refusedRef.current = refused;
  const onConnectEnd = React.useCallback(() => {
    // Keep the last refusal on screen a moment after the drag ends, so it can be read.
    const shown = refusedRef.current;
    if (shown) {
      window.setTimeout(() => setRefused(r => (r === shown ? null : r)), 6000);
    }
  }, []);

  const addNode = React.useCallback(
    (spec: NodeSpec, at?: { x: number; y: number }) => {
      if (viewOnly) {
        return;
      }
      let position = at;
      if (!position) {
        const box = wrapper.current?.getBoundingClientRect();
        position = box
          ? flow.screenToFlowPosition({ x: box.left + box.width / 2, y: box.top + box.height / 2 })
          : { x: 0, y: 0 };
        position = freeSpot({ x: position.x - 90, y: position.y - 30 }, [...doc.nodes.values()]);
      }
      const id = shared.freshId(spec.type.split('.').pop() || 'node');
      shared.addNode({ id, type: spec.type, label: '', position, config: {} });
      setSelected(new Set([id]));
      setSelectedEdges(new Set());
      presence.set({ selection: [id] });
    },
    [flow, shared, presence, doc, viewOnly]
  );

  const onDrop = React.useCallback(
    (ev: React.DragEvent) => {
      const type = ev.dataTransfer.getData('application/x-floworch-node');
      const spec = specs.get(type);
      if (!spec) {
        return;
      }
      ev.preventDefault();
      addNode(spec, flow.screenToFlowPosition({ x: ev.clientX, y: ev.clientY }));
    },
    [specs, addNode, flow]
  );

  const layout = React.useCallback(async () => {
    if (viewOnly) {
      return;
    }
    const sizes = (id: string) => {
      const n = flow.getInternalNode(id);
      return { width: n?.measured?.width ?? 200, height: n?.measured?.height ?? 80 };
    };
    try {
      shared.moveNodes(await autoLayout([...doc.nodes.values()], [...doc.edges.values()], sizes));
      window.setTimeout(() => flow.fitView({ duration: 200 }), 50);
    } catch (e) {
      say(`Auto-layout failed: ${(e as Error).message}`, true);
    }
  }, [doc, flow, shared, say, viewOnly]);

  const copy = React.useCallback(() => {
    const nodes = [...selected].map(id => doc.nodes.get(id)).filter((n): n is FlowNodeData => !!n);
    if (!nodes.length) {
      return;
    }
    const edges = [...doc.edges.values()].filter(e => selected.has(e.source) && selected.has(e.target));
    clipboard = { nodes, edges };
    navigator.clipboard?.writeText(JSON.stringify({ floworch: clipboard })).catch(() => undefined);
  }, [selected, doc]);

  const paste = React.useCallback(() => {
    if (!clipboard || viewOnly) {
      return;
    }
    const ids = shared.paste(clipboard.nodes, clipboard.edges, { x: 40, y: 40 });
    setSelected(new Set(ids));
    presence.set({ selection: ids });
  }, [shared, presence, viewOnly]);

  const onKeyDown = React.useCallback(
    (ev: React.KeyboardEvent) => {
      const target = ev.target as HTMLElement;
      if (/^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) {
        return; // typing in a field: its own undo and copy
      }
      const mod = ev.ctrlKey || ev.metaKey;
      const key = ev.key.toLowerCase();
      let handled = true;
      if (mod && key === 'z' && !ev.shiftKey) {
        if (!viewOnly) {
          shared.undoManager.undo();
        }
      } else if (mod && (key === 'y' || (key === 'z' && ev.shiftKey))) {
        if (!viewOnly) {
          shared.undoManager.redo();
        }
      } else if (mod && key === 'c') {
        copy();
      } else if (mod && key === 'v') {
        paste();
      } else if (mod && key === 'a') {
        const all = new Set(doc.nodes.keys());
        setSelected(all);
        presence.set({ selection: [...all] });
      } else {
        handled = false;
      }
      if (handled) {
        ev.preventDefault();
        ev.stopPropagation();
      }
    },
    [shared, copy, paste, doc, presence, viewOnly]
  );

  // ------------------------------------------------------------------ presence
  const lastMove = React.useRef(0);
  const onMouseMove = React.useCallback(
    (ev: React.MouseEvent) => {
      const now = Date.now();
      if (now - lastMove.current < 40) {
        return;
      }
      lastMove.current = now;
      const p = flow.screenToFlowPosition({ x: ev.clientX, y: ev.clientY });
      presence.set({ cursor: { x: Math.round(p.x), y: Math.round(p.y) } });
    },
    [flow, presence]
  );
  const onMouseLeave = React.useCallback(() => presence.set({ cursor: null }), [presence]);

  const only = selected.size === 1 ? [...selected][0] : null;
  React.useEffect(() => {
    // Opening a node's properties claims it, unless someone else holds it (or one only views:
    // a viewer's claim would hold off the people who can edit it).
    const held = only ? locks.get(only) : undefined;
    const mine = presence.local().editing;
    if (viewOnly) {
      if (mine) {
        presence.set({ editing: null });
      }
    } else if (only && (!held || held.clientId === presence.clientId)) {
      if (mine?.node !== only) {
        presence.set({ editing: { node: only, since: Date.now() } });
      }
    } else if (!only && mine) {
      presence.set({ editing: null });
    }
  }, [only, locks, presence, viewOnly]);

  React.useEffect(() => () => presence.set({ cursor: null, editing: null, selection: [] }), [presence]);

  // ------------------------------------------------------------------ publish and run
  const ensureId = React.useCallback((): string => {
    let id = shared.id;
    if (!id) {
      id = crypto.randomUUID();
      const newId = id;
      shared.ydoc.transact(() => shared.meta.set('id', newId));
    }
    if (!shared.meta.get('name')) {
      const name = props.path.split('/').pop()?.replace(/\.flow$/, '') || 'untitled';
      shared.ydoc.transact(() => shared.meta.set('name', name));
    }
    return id;
  }, [shared, props.path]);

  const publish = React.useCallback(
    async (note: string) => {
      const id = ensureId();
      try {
        await api.saveDraft(shared.toData());
        const v = await api.publish(id, note);
        setDialog(null);
        say(`Published version ${v.version}`);
      } catch (e) {
        const err = e as ApiError;
        refused403(err);
        say(`Publish refused: ${err.message}${err.problems?.length ? ` (${err.problems.length} problem(s), see the list)` : ''}`, true);
      }
    },
    [ensureId, shared, say, refused403]
  );

  const startRun = React.useCallback(
    async (input: any, version: number | 'draft') => {
      const id = ensureId();
      try {
        if (version === 'draft') {
          await api.saveDraft(shared.toData());
        }
        const started = await api.startRun(id, input, version);
        setDialog(null);
        setRun(started);
        setDetailsNode(null);
        stopWatch.current?.();
        stopWatch.current = api.watchRun(started.run_id, setRun, message => say(message, true));
      } catch (e) {
        refused403(e);
        say(`Run refused: ${(e as Error).message}`, true);
      }
    },
    [ensureId, shared, say, refused403]
  );

  const clearRun = React.useCallback(() => {
    stopWatch.current?.();
    stopWatch.current = null;
    setRun(null);
    setDetailsNode(null);
  }, []);

  const onNodeClick = React.useCallback(
    (_: React.MouseEvent, node: CanvasNode) => {
      if (run) {
        setDetailsNode(node.id);
      }
    },
    [run]
  );

  // A click on a node the far view draws: what a click on a DOM node does.
  const onFarNodeClick = React.useCallback(
    (id: string, additive: boolean) => {
      const next = additive ? new Set(selected) : new Set<string>();
      if (additive && selected.has(id)) {
        next.delete(id);
      } else {
        next.add(id);
      }
      setSelected(next);
      if (!additive) {
        setSelectedEdges(new Set());
      }
      presence.set({ selection: [...next] });
      if (run) {
        setDetailsNode(id);
      }
    },
    [selected, presence, run]
  );
  const onFarMove = React.useCallback(
    (moves: { id: string; x: number; y: number }[]) => !viewOnly && shared.moveNodes(moves),
    [shared, viewOnly]
  );

  const onPaneClick = React.useCallback(() => {
    setSelected(new Set());
    setSelectedEdges(new Set());
    presence.set({ selection: [] });
    setDetailsNode(null);
  }, [presence]);

  const dark = useDarkTheme();
  const trigger = [...doc.nodes.values()].find(n => specs.get(n.type)?.kind === 'trigger');
  const selectedNode = only ? doc.nodes.get(only) : undefined;
  const lock = only ? locks.get(only) : undefined;

  return (
    <div
      className={`fo-canvas${props.compact ? ' fo-compact' : ''}${dark ? ' fo-dark' : ''}`}
      data-testid="flow-canvas"
      tabIndex={0}
      onKeyDown={onKeyDown}
    >
      <div className="fo-toolbar">
        <span className="fo-title" title={props.path}>
          {shared.name || props.path}
        </span>
        {viewOnly ? null : (
          <>
            <button className="fo-btn" data-testid="btn-undo" disabled={!shared.undoManager.canUndo()} onClick={() => shared.undoManager.undo()} title="Undo your last edit (Ctrl+Z)">
              ↶ Undo
            </button>
            <button className="fo-btn" data-testid="btn-redo" disabled={!shared.undoManager.canRedo()} onClick={() => shared.undoManager.redo()} title="Redo (Ctrl+Shift+Z)">
              ↷ Redo
            </button>
            <button className="fo-btn" data-testid="btn-layout" onClick={layout} title="Arrange the nodes left to right (layout only: what runs does not change)">
              ⇶ Layout
            </button>
          </>
        )}
        <span className="fo-spacer" />
        <button className="fo-btn" data-testid="btn-versions" onClick={() => setDialog(dialog === 'versions' ? null : 'versions')}>
          Versions
        </button>
        {viewOnly ? null : (
          <>
            <button className="fo-btn" data-testid="btn-publish" onClick={() => setDialog('publish')} disabled={problems.length > 0} title={problems.length ? 'Fix the problems first' : 'Publish an immutable version'}>
              Publish
            </button>
            <button className="fo-btn fo-btn-primary" data-testid="btn-run" onClick={() => setDialog('run')}>
              ▶ Run
            </button>
          </>
        )}
        <span className={`fo-sync ${online ? 'fo-online' : 'fo-offline'}`} data-testid="sync-status" title={online ? 'Connected to the shared room' : 'Edits are kept and merged on reconnect'}>
          {online ? 'online' : `offline, ${shared.pending} ${shared.pending === 1 ? 'change' : 'changes'} pending`}
        </span>
        <span className="fo-peers">
          {peers.map(p => (
            <span key={p.clientId} className="fo-peer" style={{ background: p.user.color ?? '#888' }} title={userName(p.user)}>
              {p.user.initials || userName(p.user).slice(0, 2)}
            </span>
          ))}
        </span>
      </div>
      {catalogueError ? <div className="fo-banner fo-banner-error">{catalogueError}</div> : null}
      {viewOnly && me ? (
        <div className="fo-banner fo-banner-viewonly" data-testid="view-only" data-role={me.role ?? 'none'}>
          {me.role === 'viewer'
            ? `View only — you are a viewer of ${me.tenant}. You see every change live; an admin can make you an editor.`
            : `View only — you are not a member of ${me.tenant}; an admin can add you.`}
        </div>
      ) : null}
      {run ? (
        <RunBar run={run} onClose={clearRun} onCancel={() =>
            api.cancel(run.run_id).catch(e => {
              refused403(e);
              say(String(e.message), true);
            })
          } openRunPanel={props.openRunPanel} />
      ) : null}
      <div className="fo-body">
        {viewOnly ? null : <Palette specs={list} onAdd={spec => addNode(spec)} compact={props.compact} />}
        <div className="fo-flow" ref={wrapper} onDragOver={ev => ev.preventDefault()} onDrop={onDrop} onMouseMove={onMouseMove} onMouseLeave={onMouseLeave}>
          <ReactFlow
            nodes={rfNodes}
            edges={rfEdges}
            nodeTypes={nodeTypes}
            onNodesChange={onNodesChange}
            nodesDraggable={!viewOnly}
            nodesConnectable={!viewOnly}
            onEdgesChange={onEdgesChange}
            onConnect={onConnect}
            onConnectStart={onConnectStart}
            onConnectEnd={onConnectEnd}
            isValidConnection={isValidConnection}
            onNodeClick={onNodeClick}
            onPaneClick={onPaneClick}
            snapToGrid
            snapGrid={[10, 10]}
            minZoom={0.05}
            maxZoom={4}
            fitView
            fitViewOptions={FIT_VIEW}
            // On a big flow React Flow renders only what is in view, and hidden nodes (drawn by
            // the far view) get no components of its own at all. Small flows keep every node.
            onlyRenderVisibleElements={doc.nodes.size > 200}
            deleteKeyCode={viewOnly ? null : ['Delete', 'Backspace']}
            multiSelectionKeyCode={['Shift', 'Meta', 'Control']}
            selectionKeyCode="Shift"
            colorMode={dark ? 'dark' : 'light'}
          >
            <FarView nodes={rfNodes} edges={allEdges} dark={dark} onMove={onFarMove} onNodeClick={onFarNodeClick} />
            <MiniMapCanvas nodes={rfNodes} dark={dark} />
            <Controls fitViewOptions={FIT_VIEW} />
            <ViewportPortal>
              {peers
                .filter(p => p.presence.cursor)
                .map(p => (
                  <div
                    key={p.clientId}
                    className="fo-cursor"
                    data-testid="remote-cursor"
                    style={{ transform: `translate(${p.presence.cursor!.x}px, ${p.presence.cursor!.y}px)`, color: p.user.color ?? '#888' }}
                  >
                    <svg width="16" height="16" viewBox="0 0 16 16">
                      <path d="M0 0 L0 14 L4 10 L8 16 L10 15 L6 9 L12 9 Z" fill="currentColor" />
                    </svg>
                    <span className="fo-cursor-name" style={{ background: p.user.color ?? '#888' }}>
                      {userName(p.user)}
                    </span>
                  </div>
                ))}
            </ViewportPortal>
          </ReactFlow>
          {refused ? (
            <div className="fo-refusal" data-testid="connect-refusal">
              Cannot connect: {refused}
            </div>
          ) : null}
          {toast ? (
            <div className={`fo-toast${toast.error ? ' fo-toast-error' : ''}`} data-testid="toast">
              {toast.text}
            </div>
          ) : null}
        </div>
        {dialog === 'versions' ? (
          <VersionsPanel workflowId={shared.id} current={() => shared.toData()} onClose={() => setDialog(null)} />
        ) : detailsNode && run ? (
          <NodeRunDetails run={run} node={detailsNode} onDecide={decide} onClose={() => setDetailsNode(null)} />
        ) : selectedNode ? (
          <Properties
            key={selectedNode.id}
            node={selectedNode}
            spec={specs.get(selectedNode.type)}
            problems={problemsBy.byNode.get(selectedNode.id) ?? []}
            compensation={selectedNode.compensate ? doc.nodes.get(selectedNode.compensate) ?? selectedNode.compensate : undefined}
            compensates={compensatedBy(selectedNode.id, doc.nodes)}
            lock={lock && lock.clientId !== presence.clientId ? lock : undefined}
            readOnly={viewOnly}
            onTakeOver={() => presence.set({ editing: { node: selectedNode.id, since: Date.now() } })}
            onChange={change => shared.updateNode(selectedNode.id, change)}
          />
        ) : null}
      </div>
      <ProblemsList
        problems={problems}
        checked={checked}
        onSelect={id => {
          setSelected(new Set([id]));
          presence.set({ selection: [id] });
        }}
      />
      {dialog === 'publish' ? <PublishDialog onPublish={publish} onClose={() => setDialog(null)} /> : null}
      {dialog === 'run' ? (
        <RunDialog
          workflowId={shared.id}
          trigger={trigger}
          triggerSpec={trigger ? specs.get(trigger.type) : undefined}
          problems={problems}
          onStart={startRun}
          onClose={() => setDialog(null)}
        />
      ) : null}
    </div>
  );
}

export function FlowCanvas(props: CanvasProps): JSX.Element {
  return (
    <ReactFlowProvider>
      <CanvasInner {...props} />
    </ReactFlowProvider>
  );
}
