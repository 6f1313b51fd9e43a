/**
 * One node on the canvas: its ports as handles, its label and type, and what is known about it
 * right now: validation problems, run status (with attempts and duration), who has it locked,
 * and, for a waiting approval, the buttons to decide it. An activity node also has a
 * compensate handle at its bottom: the start of the dashed "undo" link to the node that
 * undoes it (the node's `compensate`, not an edge).
 */
import * as React from 'react';
import { Handle, Position, useUpdateNodeInternals, type NodeProps, type Node } from '@xyflow/react';
import type { NodeRun, NodeSpec, Port, Problem } from './api';
import type { FlowNodeData } from './sharedflow';
import type { Lock } from './presence';
import { userName } from './presence';
import { COMPENSATE_HANDLE, COMPENSATES_HANDLE, outputPorts } from './rules';

export type CanvasNodeData = {
  node: FlowNodeData;
  spec?: NodeSpec;
  problems?: Problem[];
  run?: NodeRun;
  lock?: Lock;
  remoteSelection?: { name: string; color: string }[];
  onDecide?: (node: string, decision: 'approved' | 'rejected') => void;
};

export type CanvasNode = Node<CanvasNodeData, 'flow'>;

const ICONS: { [k: string]: string } = {
  Triggers: '⚡',
  AI: '✦',
  Actions: '➤',
  'Control Flow': '◆'
};

/** How a status reads on the node (the data-status attribute keeps the status itself). */
const STATUS_LABELS: { [status: string]: string } = {
  compensation_failed: 'compensation failed'
};

/** The badge's tooltip for a step that was undone (or not): which node undid it, and how it ended. */
function compensationNote(run: NodeRun | undefined): string | undefined {
  const by = run?.detail?.compensation;
  if (!run || !by) {
    return undefined;
  }
  switch (run.status) {
    case 'compensating':
      return `being undone by '${by}'`;
    case 'compensated':
      return `undone by '${by}' after a later node failed`;
    case 'compensation_failed':
      return `'${by}' could not undo it: ${run.error ?? 'see its run details'}`;
    default:
      return undefined;
  }
}

function duration(run: NodeRun): string | null {
  if (!run.started) {
    return null;
  }
  if (!run.ended) {
    // Still going: the start time reads right without redrawing every node each second.
    return `since ${new Date(run.started).toLocaleTimeString()}`;
  }
  const end = Date.parse(run.ended);
  const ms = end - Date.parse(run.started);
  if (!Number.isFinite(ms) || ms < 0) {
    return null;
  }
  return ms < 1000 ? `${Math.round(ms)} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 60000)} min`;
}

/** What a handle may do: React Flow's handles start and end connections unless told not to,
 * whatever `nodesConnectable` says (a viewer's canvas says no). */
function connectable(on: boolean): { isConnectable: boolean; isConnectableStart: boolean; isConnectableEnd: boolean } {
  return { isConnectable: on, isConnectableStart: on, isConnectableEnd: on };
}

function handles(ports: Port[], type: 'source' | 'target', on: boolean): JSX.Element[] {
  return ports.map((port, i) => (
    <Handle
      key={port.name}
      id={port.name}
      type={type}
      {...connectable(on)}
      position={type === 'source' ? Position.Right : Position.Left}
      style={{ top: `${((i + 1) * 100) / (ports.length + 1)}%` }}
      className={port.loop_back ? 'fo-handle-loop' : undefined}
      title={`${port.label || port.name} (${port.type})`}
    >
      {ports.length > 1 ? <span className={`fo-port-label fo-port-${type}`}>{port.label || port.name}</span> : null}
    </Handle>
  ));
}

function FlowNodeViewInner({ data, selected, isConnectable }: NodeProps<CanvasNode>): JSX.Element {
  const { node, spec, problems, run, lock } = data;
  const status = run?.status ?? 'idle';
  const category = spec?.category ?? 'Unknown';
  const d = run ? duration(run) : null;
  const inputs = spec?.inputs ?? [];
  const outputs = outputPorts(spec, node);
  // Only an activity changes something outside the run, so only an activity can be undone.
  const undoable = spec?.kind === 'activity';
  // React Flow measures handles with the node's size: ports that appear later (the catalogue
  // arriving, a switch case added) must be measured again, or edges to them are not drawn.
  // Not on mount: React Flow measures a new node itself, and a second measurement of each
  // node joining the DOM (a forced layout and a store update apiece) made zooming in stutter.
  const updateNodeInternals = useUpdateNodeInternals();
  const ports = [...inputs, ...outputs].map(p => p.name).join(',') + (undoable ? `,${COMPENSATE_HANDLE},${COMPENSATES_HANDLE}` : '');
  const measuredPorts = React.useRef(ports);
  React.useEffect(() => {
    if (measuredPorts.current !== ports) {
      measuredPorts.current = ports;
      updateNodeInternals(node.id);
    }
  }, [node.id, ports, updateNodeInternals]);
  return (
    <div
      className={`fo-node fo-cat-${category.replace(/\s+/g, '-').toLowerCase()} fo-status-${status}${selected ? ' fo-selected' : ''}${
        problems?.length ? ' fo-has-problems' : ''
      }`}
      data-testid={`node-${node.id}`}
      data-status={status}
      data-type={node.type}
      data-selected-by={data.remoteSelection?.map(s => s.name).join(', ') || undefined}
      title={data.remoteSelection?.length ? `selected by ${data.remoteSelection.map(s => s.name).join(', ')}` : undefined}
      style={data.remoteSelection?.length ? { boxShadow: `0 0 0 2px ${data.remoteSelection[0].color}` } : undefined}
    >
      {handles(inputs, 'target', isConnectable)}
      <div className="fo-node-head">
        <span className="fo-node-icon">{ICONS[category] ?? '?'}</span>
        <span className="fo-node-label">{node.label || spec?.title || node.type}</span>
        {problems?.length ? (
          <span
            className="fo-node-problems"
            data-testid={`node-problems-${node.id}`}
            title={problems.map(p => p.message).join('\n')}
          >
            {problems.length}
          </span>
        ) : null}
      </div>
      <div className="fo-node-type">
        {node.id} · {node.type}
      </div>
      <div className="fo-node-foot">
        <span className={`fo-badge fo-badge-${status}`} data-testid={`node-status-${node.id}`} title={compensationNote(run)}>
          {STATUS_LABELS[status] ?? status}
          {run?.attempts && run.attempts > 1 ? ` · attempt ${run.attempts}` : ''}
          {d && status !== 'idle' ? ` · ${d}` : ''}
        </span>
        {lock ? (
          <span
            className="fo-lock"
            data-testid={`lock-${node.id}`}
            style={{ background: lock.user.color ?? '#888' }}
            title={`${userName(lock.user)} is editing since ${new Date(lock.since).toLocaleTimeString()}`}
          >
            ✎ {userName(lock.user)}
          </span>
        ) : null}
      </div>
      {status === 'waiting' && node.type === 'control.approval' && data.onDecide ? (
        <div className="fo-node-decide nodrag">
          <button data-testid={`approve-${node.id}`} className="fo-btn fo-btn-ok" onClick={() => data.onDecide!(node.id, 'approved')}>
            Approve
          </button>
          <button data-testid={`reject-${node.id}`} className="fo-btn fo-btn-danger" onClick={() => data.onDecide!(node.id, 'rejected')}>
            Reject
          </button>
        </div>
      ) : null}
      {handles(outputs, 'source', isConnectable)}
      {undoable ? (
        // Where an undo link from another node ends (rendered after the inputs: an edge without
        // a target handle goes to the first input, never here).
        <Handle
          id={COMPENSATES_HANDLE}
          type="target"
          position={Position.Top}
          className="fo-handle-compensates"
          title="undo links end here"
          {...connectable(isConnectable)}
        />
      ) : null}
      {undoable ? (
        <Handle
          id={COMPENSATE_HANDLE}
          type="source"
          position={Position.Bottom}
          className="fo-handle-compensate"
          {...connectable(isConnectable)}
          data-testid={`compensate-handle-${node.id}`}
          title={
            node.compensate
              ? `undone by '${node.compensate}' when a later node fails; drag to another node to change it`
              : 'compensate: drag to the node that undoes this one when a later node fails'
          }
        />
      ) : null}
    </div>
  );
}

export const FlowNodeView = React.memo(FlowNodeViewInner);
