/**
 * Run-vs-run diff in the Run panel (`GET /runs/{a}/diff/{b}`, server/floworch_server/debug.py
 * `diff`): this run (a) against another one (b) of any flow: the plan's differences, one row per
 * node with both runs' status, attempts, duration and where their outputs differ, and the first
 * divergence highlighted. Also the "Try here" request of the inspector (`POST .../try`).
 */
import * as React from 'react';
import { api, request, type RunRecord } from '../api';
import { errorText, fmtDuration } from './format';

const API = 'floworch/api';

export interface JsonChange {
  path: string;
  change: 'added' | 'removed' | 'changed';
  a?: unknown;
  b?: unknown;
}

export interface DiffRow {
  node: string;
  type: string;
  plan: 'same' | 'added' | 'removed' | 'changed';
  status_a: string | null;
  status_b: string | null;
  attempts_a: number | null;
  attempts_b: number | null;
  duration_ms_a: number | null;
  duration_ms_b: number | null;
  error_a: string | null;
  error_b: string | null;
  output_changes: JsonChange[];
  differs: string[];
}

export interface RunDiff {
  a: { run_id: string; version: string | null; status: string; plan_hash: string | null };
  b: { run_id: string; version: string | null; status: string; plan_hash: string | null };
  plan: {
    same: boolean;
    nodes_added: string[];
    nodes_removed: string[];
    nodes_changed: { node: string; fields: string[]; config: JsonChange[] }[];
    edges_added: string[];
    edges_removed: string[];
  };
  nodes: DiffRow[];
  first_divergence: { node: string; reasons: string[]; output_changes: JsonChange[] } | null;
}

/** `POST /runs/{id}/nodes/{node}/try`: what a try of the node on a worker gave. */
export interface NodeTry {
  run_id: string;
  node: string;
  call: string;
  type: string;
  test_run_id: string;
  status: 'success' | 'failed' | 'running';
  output: unknown;
  error: { kind: string; message: string } | null;
  logs: { timestamp: string; level: string; message: string }[];
  config: unknown;
  inputs: unknown;
}

export const debugApi = {
  diff(runA: string, runB: string): Promise<RunDiff> {
    return request(`${API}/runs/${encodeURIComponent(runA)}/diff/${encodeURIComponent(runB)}`);
  },
  tryNode(runId: string, node: string, body: { config?: unknown; input?: unknown; call?: string }): Promise<NodeTry> {
    return request(`${API}/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(node)}/try`, { method: 'POST', body });
  }
};

function short(value: unknown): string {
  const text = value === undefined ? '—' : JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}…` : text;
}

/** The diff section of a Run panel: pick another run, see where the two differ. */
export function DiffView(props: { runId: string; workflowId: string | null; onSelect?: (node: string) => void }): JSX.Element {
  const { runId, workflowId } = props;
  const [other, setOther] = React.useState('');
  const [candidates, setCandidates] = React.useState<RunRecord[]>([]);
  const [diff, setDiff] = React.useState<RunDiff | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);

  React.useEffect(() => {
    let live = true;
    if (workflowId) {
      api.runs(workflowId, 20).then(
        runs => live && setCandidates(runs.filter(r => r.run_id !== runId)),
        () => undefined // the list is a convenience: an id can still be typed
      );
    }
    return () => {
      live = false;
    };
  }, [runId, workflowId]);

  const compare = async () => {
    const b = other.trim();
    if (!b) {
      setError('Pick or type the id of the run to compare with.');
      return;
    }
    setBusy(true);
    try {
      setDiff(await debugApi.diff(runId, b));
      setError(null);
    } catch (e) {
      setDiff(null);
      setError(errorText(e));
    }
    setBusy(false);
  };

  const first = diff?.first_divergence?.node ?? null;
  return (
    <section className="fo-diff" data-testid="run-diff">
      <div className="fo-p-section-head">
        <b>Compare</b>
        <span className="fo-p-muted">this run (a) with</span>
        <input
          className="fo-diff-input"
          data-testid="diff-other"
          list={`fo-diff-runs-${runId}`}
          placeholder="another run id"
          value={other}
          onChange={e => setOther(e.target.value)}
          onKeyDown={e => e.key === 'Enter' && void compare()}
        />
        <datalist id={`fo-diff-runs-${runId}`}>
          {candidates.map(r => (
            <option key={r.run_id} value={r.run_id}>
              {`${r.status} · version ${r.version ?? '?'}`}
            </option>
          ))}
        </datalist>
        <button className="fo-pbtn" data-testid="diff-compare" disabled={busy} onClick={() => void compare()}>
          {busy ? 'Comparing…' : 'Compare'}
        </button>
        {diff ? (
          <button className="fo-pbtn" onClick={() => setDiff(null)} title="Close the comparison">
            ×
          </button>
        ) : null}
      </div>
      {error ? (
        <div className="fo-p-banner fo-p-banner-error" data-testid="diff-error" role="alert">
          {error}
        </div>
      ) : null}
      {diff ? (
        <div className="fo-diff-body" data-testid="diff-result" data-first={first ?? ''}>
          <div className="fo-diff-summary">
            <div data-testid="diff-plan" data-same={diff.plan.same ? 'true' : 'false'}>
              {diff.plan.same ? 'Same plan.' : <PlanSummary plan={diff.plan} />}
            </div>
            {first ? (
              <div className="fo-diff-first-note" data-testid="diff-first">
                First divergence: <code>{first}</code> — {diff.first_divergence!.reasons.join('; ')}
              </div>
            ) : (
              <div data-testid="diff-first">No divergence: the runs did the same.</div>
            )}
          </div>
          <table className="fo-diff-table">
            <thead>
              <tr>
                <th>node</th>
                <th>plan</th>
                <th>status a → b</th>
                <th>attempts</th>
                <th>duration</th>
                <th>output differences</th>
              </tr>
            </thead>
            <tbody>
              {diff.nodes.map(row => (
                <tr
                  key={row.node}
                  data-testid="diff-row"
                  data-node={row.node}
                  data-first={row.node === first ? 'true' : 'false'}
                  className={`${row.node === first ? 'fo-diff-first' : ''} ${row.differs.length ? 'fo-diff-differs' : ''}`}
                  onClick={() => props.onSelect?.(row.node)}
                  title={row.differs.join('\n')}
                >
                  <td>
                    <code>{row.node}</code> <span className="fo-p-muted">{row.type}</span>
                  </td>
                  <td className={`fo-diff-plan-${row.plan}`}>{row.plan}</td>
                  <td>
                    <span className={`fo-pill fo-pill-${row.status_a ?? 'idle'}`}>{row.status_a ?? '—'}</span> →{' '}
                    <span className={`fo-pill fo-pill-${row.status_b ?? 'idle'}`}>{row.status_b ?? '—'}</span>
                  </td>
                  <td>
                    {row.attempts_a ?? '—'} → {row.attempts_b ?? '—'}
                  </td>
                  <td>
                    {fmtDuration(row.duration_ms_a)} → {fmtDuration(row.duration_ms_b)}
                  </td>
                  <td data-testid="diff-output">
                    {row.output_changes.slice(0, 5).map(c => (
                      <div key={c.path} className="fo-diff-change">
                        <code>{c.path}</code> {c.change}: {short(c.a)} → {short(c.b)}
                      </div>
                    ))}
                    {row.output_changes.length > 5 ? <div className="fo-p-muted">and {row.output_changes.length - 5} more</div> : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

function PlanSummary(props: { plan: RunDiff['plan'] }): JSX.Element {
  const { plan } = props;
  const parts: [string, string[]][] = [
    ['nodes added', plan.nodes_added],
    ['nodes removed', plan.nodes_removed],
    ['nodes changed', plan.nodes_changed.map(c => `${c.node} (${c.fields.join(', ')})`)],
    ['edges added', plan.edges_added],
    ['edges removed', plan.edges_removed]
  ];
  return (
    <span>
      Plan differs:{' '}
      {parts
        .filter(([, items]) => items.length)
        .map(([label, items]) => `${label}: ${items.join(', ')}`)
        .join('; ')}
    </span>
  );
}
