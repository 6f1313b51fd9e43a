/**
 * Publishing, versions (with a diff of nodes and edges between two of them) and runs, as the
 * canvas offers them: a publish dialog with a note, a run dialog whose input form comes from
 * the trigger's input schema, and the bar that follows a run.
 */
import * as React from 'react';
import { api, isFinal, type NodeSpec, type Problem, type RunRecord, type VersionRecord } from './api';
import { SchemaForm } from './SchemaForm';
import type { FlowData, FlowNodeData, JSONValue } from './sharedflow';

function Modal(props: { title: string; onClose: () => void; children: React.ReactNode }): JSX.Element {
  return (
    <div className="fo-modal-backdrop" onMouseDown={e => e.target === e.currentTarget && props.onClose()}>
      <div className="fo-modal" role="dialog" aria-label={props.title} onKeyDown={e => e.key === 'Escape' && props.onClose()}>
        <div className="fo-side-head">
          <b>{props.title}</b>
          <button className="fo-btn fo-close" onClick={props.onClose}>
            ×
          </button>
        </div>
        {props.children}
      </div>
    </div>
  );
}

export function PublishDialog(props: { onPublish: (note: string) => Promise<void>; onClose: () => void }): JSX.Element {
  const [note, setNote] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  return (
    <Modal title="Publish a version" onClose={props.onClose}>
      <p className="fo-muted">A published version is immutable: runs, schedules and webhooks use it until the next one.</p>
      <textarea data-testid="publish-note" rows={3} placeholder="What changed (optional)" value={note} onChange={e => setNote(e.target.value)} autoFocus />
      <div className="fo-row">
        <button
          className="fo-btn fo-btn-primary"
          data-testid="publish-confirm"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            await props.onPublish(note);
            setBusy(false);
          }}
        >
          {busy ? 'Publishing…' : 'Publish'}
        </button>
      </div>
    </Modal>
  );
}

export function RunDialog(props: {
  workflowId: string | undefined;
  trigger: FlowNodeData | undefined;
  triggerSpec: NodeSpec | undefined;
  problems: Problem[];
  onStart: (input: JSONValue, version: number | 'draft') => Promise<void>;
  onClose: () => void;
}): JSX.Element {
  const [versions, setVersions] = React.useState<VersionRecord[]>([]);
  const [version, setVersion] = React.useState<string>('draft');
  const example = props.trigger?.config.example;
  const [text, setText] = React.useState(() => JSON.stringify(example ?? {}, null, 2));
  const [busy, setBusy] = React.useState(false);
  React.useEffect(() => {
    if (props.workflowId) {
      api.versions(props.workflowId).then(setVersions, () => undefined);
    }
  }, [props.workflowId]);
  let input: JSONValue | undefined;
  let parseError: string | null = null;
  try {
    input = text.trim() ? JSON.parse(text) : null;
  } catch (e) {
    parseError = `not valid JSON: ${(e as Error).message}`;
  }
  const schema = props.trigger?.config.input_schema as any;
  const formValue = input && typeof input === 'object' && !Array.isArray(input) ? (input as { [k: string]: JSONValue }) : {};
  const draftBlocked = version === 'draft' && props.problems.length > 0;
  return (
    <Modal title="Run the flow" onClose={props.onClose}>
      <label className="fo-field">
        <span className="fo-field-name">what to run</span>
        <select data-testid="run-version" value={version} onChange={e => setVersion(e.target.value)}>
          <option value="draft">draft (test run of the flow as it is now)</option>
          {versions.map(v => (
            <option key={v.version} value={String(v.version)}>
              version {v.version}
              {v.note ? ` — ${v.note}` : ''}
            </option>
          ))}
        </select>
      </label>
      {schema && schema.properties ? (
        <SchemaForm
          schema={schema}
          value={formValue}
          prefix="run-field-"
          onChange={(field, value) => {
            const next = { ...formValue };
            if (value === undefined) {
              delete next[field];
            } else {
              next[field] = value;
            }
            setText(JSON.stringify(next, null, 2));
          }}
        />
      ) : null}
      <label className="fo-field">
        <span className="fo-field-name">input (JSON){props.trigger ? ` for ${props.trigger.id}` : ''}</span>
        <textarea data-testid="run-input" className="fo-json" rows={6} value={text} onChange={e => setText(e.target.value)} />
        {parseError ? (
          <span className="fo-field-error" data-testid="run-input-error">
            {parseError}
          </span>
        ) : null}
      </label>
      {draftBlocked ? <div className="fo-field-error">The draft has {props.problems.length} problem(s): fix them or run a published version.</div> : null}
      <div className="fo-row">
        <button
          className="fo-btn fo-btn-primary"
          data-testid="run-start"
          disabled={busy || parseError !== null || draftBlocked}
          onClick={async () => {
            setBusy(true);
            await props.onStart(input ?? null, version === 'draft' ? 'draft' : Number(version));
            setBusy(false);
          }}
        >
          {busy ? 'Starting…' : '▶ Start'}
        </button>
      </div>
    </Modal>
  );
}

export function RunBar(props: { run: RunRecord; onClose: () => void; onCancel: () => void; openRunPanel?: (runId: string) => void }): JSX.Element {
  const { run } = props;
  const counts: { [status: string]: number } = {};
  (run.nodes ?? []).forEach(n => (counts[n.status] = (counts[n.status] ?? 0) + 1));
  return (
    <div className={`fo-runbar fo-status-${run.status}`}>
      <span>
        Run <code>{run.run_id.slice(0, 12)}</code> ({run.version === 'draft' || run.version === null ? 'draft' : `v${run.version}`}):{' '}
        <b data-testid="run-status">{run.status}</b>
      </span>
      <span className="fo-muted">
        {Object.entries(counts)
          .map(([s, n]) => `${n} ${s}`)
          .join(' · ')}
      </span>
      {run.error ? <span className="fo-error-text" title={run.error}>{run.error.split('\n')[0]}</span> : null}
      <span className="fo-spacer" />
      {!isFinal(run.status) ? (
        <button className="fo-btn fo-btn-danger" onClick={props.onCancel}>
          Cancel run
        </button>
      ) : null}
      {props.openRunPanel ? (
        <button className="fo-btn" data-testid="open-run-panel" onClick={() => props.openRunPanel!(run.run_id)}>
          Trace and logs
        </button>
      ) : null}
      <button className="fo-btn" onClick={props.onClose} title="Back to editing">
        ×
      </button>
    </div>
  );
}

export interface FlowDiff {
  added: string[];
  removed: string[];
  changed: { id: string; fields: string[] }[];
  edgesAdded: string[];
  edgesRemoved: string[];
}

/** What changed from `a` to `b`: nodes and edges by id; positions are layout and left out. */
export function diffFlows(a: FlowData, b: FlowData): FlowDiff {
  const an = new Map(a.nodes.map(n => [n.id, n]));
  const bn = new Map(b.nodes.map(n => [n.id, n]));
  const edgeKey = (e: FlowData['edges'][number]) => `${e.source}.${e.sourceHandle ?? 'out'} → ${e.target}.${e.targetHandle ?? 'in'}`;
  const ae = new Set(a.edges.map(edgeKey));
  const be = new Set(b.edges.map(edgeKey));
  const changed: { id: string; fields: string[] }[] = [];
  bn.forEach((n, id) => {
    const old = an.get(id);
    if (!old) {
      return;
    }
    const fields: string[] = [];
    if (old.type !== n.type) {
      fields.push('type');
    }
    if ((old.label ?? '') !== (n.label ?? '')) {
      fields.push('label');
    }
    const keys = new Set([...Object.keys(old.config ?? {}), ...Object.keys(n.config ?? {})]);
    keys.forEach(k => JSON.stringify(old.config?.[k]) !== JSON.stringify(n.config?.[k]) && fields.push(`config.${k}`));
    if (JSON.stringify(old.policy ?? null) !== JSON.stringify(n.policy ?? null)) {
      fields.push('policy');
    }
    if (fields.length) {
      changed.push({ id, fields });
    }
  });
  return {
    added: [...bn.keys()].filter(id => !an.has(id)),
    removed: [...an.keys()].filter(id => !bn.has(id)),
    changed,
    edgesAdded: [...be].filter(k => !ae.has(k)),
    edgesRemoved: [...ae].filter(k => !be.has(k))
  };
}

export function VersionsPanel(props: { workflowId: string | undefined; current: () => FlowData; onClose: () => void }): JSX.Element {
  const [versions, setVersions] = React.useState<VersionRecord[] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [from, setFrom] = React.useState<string>('');
  const [to, setTo] = React.useState<string>('draft');
  const [diff, setDiff] = React.useState<FlowDiff | null>(null);
  React.useEffect(() => {
    if (!props.workflowId) {
      setVersions([]);
      return;
    }
    api.versions(props.workflowId).then(
      v => {
        setVersions(v);
        if (v.length) {
          setFrom(String(v[v.length - 1].version));
        }
      },
      e => setError(String(e.message ?? e))
    );
  }, [props.workflowId]);
  const load = async (which: string): Promise<FlowData> => {
    if (which === 'draft') {
      return props.current();
    }
    const v = await api.version(props.workflowId!, Number(which));
    return v.document as FlowData;
  };
  const compare = async () => {
    try {
      setDiff(diffFlows(await load(from), await load(to)));
      setError(null);
    } catch (e) {
      setError(String((e as Error).message ?? e));
    }
  };
  const options = [
    ...(versions ?? []).map(v => (
      <option key={v.version} value={String(v.version)}>
        version {v.version}
      </option>
    )),
    <option key="draft" value="draft">
      draft
    </option>
  ];
  return (
    <div className="fo-side" data-testid="versions">
      <div className="fo-side-head">
        <b>Versions</b>
        <button className="fo-btn fo-close" onClick={props.onClose}>
          ×
        </button>
      </div>
      {error ? <div className="fo-field-error">{error}</div> : null}
      {versions === null ? <div className="fo-muted">Loading…</div> : null}
      {versions?.length === 0 ? <div className="fo-muted">Not published yet.</div> : null}
      {(versions ?? [])
        .slice()
        .reverse()
        .map(v => (
          <div key={v.version} className="fo-version" data-testid={`version-${v.version}`}>
            <b>v{v.version}</b> {v.note ? `— ${v.note}` : ''}
            <div className="fo-muted">
              {v.created_by} · {new Date(v.created_at).toLocaleString()} · plan {v.plan_hash.slice(0, 10)}
            </div>
          </div>
        ))}
      {versions?.length ? (
        <>
          <h4>Compare</h4>
          <div className="fo-row">
            <select data-testid="diff-from" value={from} onChange={e => setFrom(e.target.value)}>
              {options}
            </select>
            →
            <select data-testid="diff-to" value={to} onChange={e => setTo(e.target.value)}>
              {options}
            </select>
            <button className="fo-btn" data-testid="diff-compare" onClick={compare}>
              Diff
            </button>
          </div>
        </>
      ) : null}
      {diff ? (
        <div className="fo-diff" data-testid="diff">
          {!diff.added.length && !diff.removed.length && !diff.changed.length && !diff.edgesAdded.length && !diff.edgesRemoved.length ? (
            <div className="fo-muted">No difference in nodes or edges.</div>
          ) : null}
          {diff.added.map(id => (
            <div key={`a${id}`} className="fo-diff-add">+ node {id}</div>
          ))}
          {diff.removed.map(id => (
            <div key={`r${id}`} className="fo-diff-del">− node {id}</div>
          ))}
          {diff.changed.map(c => (
            <div key={`c${c.id}`} className="fo-diff-chg">
              ~ node {c.id}: {c.fields.join(', ')}
            </div>
          ))}
          {diff.edgesAdded.map(k => (
            <div key={`ea${k}`} className="fo-diff-add">+ edge {k}</div>
          ))}
          {diff.edgesRemoved.map(k => (
            <div key={`er${k}`} className="fo-diff-del">− edge {k}</div>
          ))}
        </div>
      ) : null}
    </div>
  );
}
