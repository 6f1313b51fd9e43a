/**
 * The Dashboard panel: success rate, error budget and burn rates, task-queue depth, throughput,
 * activity latency per node type, workers, open alerts, recent runs and dead letters (failed
 * runs, to retry from the start or from the failed node), refreshed every 10 s. A node type in
 * the latency table lists its dead letters.
 *
 * Root cause in two clicks: "Failing node types" (near the top) groups the dead letters by the
 * type of the node they failed at; a click lists that type's failed runs, and a click on one
 * opens its Run panel with the failed node selected (its error, cause chain and inputs shown).
 */
import * as React from 'react';
import { api, request, type RunRecord } from '../api';
import { canEdit, useRole } from '../role';
import { errorText, fmtAgo, fmtClock, fmtDateTime, fmtDuration, fmtNumber, fmtPercent, pad, toMs, versionLabel } from './format';
import { useWidth } from './hooks';

const DASHBOARD_REFRESH_MS = 10_000;
const RANGES = ['1h', '24h', '7d', '30d'];

interface ThroughputRow {
  bucket: string;
  total: number;
  [status: string]: number | string;
}

interface LatencyRow {
  node_type: string;
  count: number;
  mean_ms: number | null;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  max_ms: number | null;
}

interface BurnRow {
  window: string;
  since: string;
  until: string;
  success: number;
  failed: number;
  total: number;
  error_rate: number | null;
  burn_rate: number | null;
  threshold: number;
  alerting: boolean;
}

interface Budget {
  slo: number;
  window: string;
  success: number;
  failed: number;
  total: number;
  error_rate: number | null;
  allowed_error_rate: number;
  allowed_failures: number;
  budget_consumed: number;
  budget_remaining: number;
}

interface QueueRow {
  task_queue: string;
  type: string;
  backlog: number;
  backlog_age_s: number | null;
  add_rate: number | null;
  dispatch_rate: number | null;
  pollers: number;
  observed: string | null;
}

interface WorkerRow {
  task_queue: string;
  type: string;
  identity: string;
  last_access_time: string | null;
  seconds_since_poll: number | null;
  rate_per_second: number | null;
  healthy: boolean;
}

/** `GET /dashboard?range=` (metrics.dashboard_data through metrics.to_json). */
export interface DashboardData {
  since: string;
  until: string;
  bucket: string;
  slo: number;
  success: { success: number; failed: number; cancelled: number; total: number; success_rate: number | null };
  throughput: ThroughputRow[];
  latency: LatencyRow[];
  burn_rates: BurnRow[];
  budget: Budget;
  queues: QueueRow[] | null; // null: Temporal did not answer
  workers: WorkerRow[] | null;
}

/** `GET /alerts` (FlowService.list_alerts). */
export interface AlertRecord {
  id: number;
  rule_id: number;
  rule: string;
  kind: string;
  threshold: number;
  value: number | null;
  message: string;
  opened_at: string;
  cleared_at: string | null;
  action_run_id: string | null;
  open: boolean;
}

/** `GET /dead-letters` (deadletters.list_dead_letters): a failed run and what it failed at. */
export interface DeadLetter {
  run_id: string;
  workflow_id: string | null;
  workflow: string | null;
  version: string | null;
  node: string | null;
  node_type: string | null;
  error_kind: string | null;
  error: string | null;
  input: unknown;
  ended: string | null;
  history: boolean;
  retried_as: string | null;
  retry_mode: 'start' | 'resume' | null;
  retry_status: string | null;
}

/** `POST /dead-letters/retry`: one entry per retried run. */
export interface RetryStarted {
  run_id: string;
  retry_run_id: string;
  mode: 'start' | 'resume';
  version: string;
  reused: string[];
  status: string;
}

const DEAD_LETTERS_SHOWN = 50;
// The failing node types are counted over this many of the newest dead letters.
const FAILING_SCANNED = 500;

/** A run opened from the dashboard; `node`: the node to select in it (the one that failed). */
export type OpenRun = (runId: string, node?: string) => void;

function deadLettersPath(nodeType: string, limit = DEAD_LETTERS_SHOWN): string {
  const q = new URLSearchParams({ limit: String(limit) });
  if (nodeType) {
    q.set('node_type', nodeType);
  }
  return `floworch/api/dead-letters?${q}`;
}

export function Dashboard(props: { openRun: OpenRun }): JSX.Element {
  const [range, setRange] = React.useState('24h');
  const [data, setData] = React.useState<DashboardData | null>(null);
  const [dataRange, setDataRange] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [alerts, setAlerts] = React.useState<AlertRecord[] | null>(null);
  const [alertsError, setAlertsError] = React.useState<string | null>(null);
  const [runs, setRuns] = React.useState<RunRecord[] | null>(null);
  const [runsError, setRunsError] = React.useState<string | null>(null);
  const [letters, setLetters] = React.useState<DeadLetter[] | null>(null);
  const [lettersError, setLettersError] = React.useState<string | null>(null);
  const [failing, setFailing] = React.useState<DeadLetter[] | null>(null);
  const [nodeType, setNodeType] = React.useState('');
  const [updated, setUpdated] = React.useState<number | null>(null);
  const [loading, setLoading] = React.useState(false);
  const seq = React.useRef(0);
  const lettersFor = React.useRef<string | null>(null);
  const revealLetters = React.useRef(false);

  const load = React.useCallback(async (wanted: string, wantedType: string) => {
    const n = ++seq.current;
    setLoading(true);
    // Every dead letter (newest first) for the failing node types; with a type chosen, that
    // type's own list too (it may reach further back than the newest ones).
    const every = request<DeadLetter[]>(deadLettersPath('', FAILING_SCANNED));
    const [d, a, r, l, f] = await Promise.allSettled([
      api.dashboard(wanted),
      api.alerts(true, 100),
      api.runs(undefined, 15),
      wantedType ? request<DeadLetter[]>(deadLettersPath(wantedType)) : every.then(x => x.slice(0, DEAD_LETTERS_SHOWN)),
      every
    ]);
    if (n !== seq.current) {
      return; // a newer refresh (or a range change, or the panel closing) took over
    }
    if (d.status === 'fulfilled') {
      setData(d.value as DashboardData);
      setDataRange(wanted);
      setError(null);
    } else {
      setError(`Could not read the dashboard: ${errorText(d.reason)}`);
    }
    if (a.status === 'fulfilled') {
      setAlerts((a.value as AlertRecord[]).filter(x => x.open !== false));
      setAlertsError(null);
    } else {
      setAlertsError(errorText(a.reason));
    }
    if (r.status === 'fulfilled') {
      setRuns(r.value);
      setRunsError(null);
    } else {
      setRunsError(errorText(r.reason));
    }
    if (l.status === 'fulfilled') {
      setLetters(l.value);
      lettersFor.current = wantedType;
      setLettersError(null);
    } else {
      setLettersError(errorText(l.reason));
    }
    if (f.status === 'fulfilled') {
      setFailing(f.value);
    }
    setUpdated(Date.now());
    setLoading(false);
  }, []);

  React.useEffect(() => {
    void load(range, nodeType);
    const timer = window.setInterval(() => void load(range, nodeType), DASHBOARD_REFRESH_MS);
    return () => {
      window.clearInterval(timer);
      // A counter, not a node: bumping the live value voids the answers still on the way.
      // eslint-disable-next-line react-hooks/exhaustive-deps
      seq.current++;
    };
  }, [range, nodeType, load]);

  // One click on a node type (failing node types, latency table) lists the runs that failed at
  // it: the dead letters come into view once that list is read.
  const showFailuresOf = React.useCallback((type: string) => {
    revealLetters.current = true;
    setNodeType(type);
  }, []);
  const lettersShown = lettersFor.current === nodeType ? letters : null;
  React.useEffect(() => {
    if (revealLetters.current && lettersShown !== null) {
      revealLetters.current = false;
      document.querySelector('[data-testid="dead-letters-section"]')?.scrollIntoView?.({ block: 'start' });
    }
  }, [lettersShown]);

  const stale = data !== null && dataRange !== range;
  return (
    <div className="fo-dash" data-testid="dashboard" data-range={dataRange ?? ''} data-loading={loading ? 'true' : 'false'}>
      <header className="fo-dash-head">
        <b className="fo-dash-title">Flow Dashboard</b>
        <label className="fo-dash-range">
          <span className="fo-p-muted">range</span>
          <select data-testid="dashboard-range" className="fo-p-input" value={range} onChange={e => setRange(e.target.value)}>
            {RANGES.map(r => (
              <option key={r} value={r}>
                last {r}
              </option>
            ))}
          </select>
        </label>
        <button className="fo-pbtn" data-testid="dashboard-refresh" onClick={() => void load(range, nodeType)} disabled={loading}>
          {loading ? 'Refreshing…' : 'Refresh'}
        </button>
        <span className="fo-p-muted" data-testid="dashboard-updated">
          {data ? `${fmtDateTime(data.since)} – ${fmtDateTime(data.until)}, buckets of ${data.bucket}` : ''}
          {updated ? ` · updated ${fmtClock(updated)}, every 10 s` : ''}
          {stale ? ' · loading the new range…' : ''}
        </span>
      </header>
      {error ? (
        <div className="fo-p-banner fo-p-banner-error" data-testid="dashboard-error" role="alert">
          {error}
          {data ? ' (showing the last figures read)' : ''}
        </div>
      ) : null}
      {!data && !error ? <div className="fo-p-empty">Reading the metrics…</div> : null}
      {data ? (
        <>
          <div className="fo-dash-tiles">
            <SuccessTile data={data} />
            <BurnTile data={data} />
            <QueueTile queues={data.queues} />
            <RunsTile data={data} />
          </div>
        </>
      ) : null}
      <section className="fo-dash-section">
        <h3>Failing node types</h3>
        <FailingTypes letters={failing} chosen={nodeType} onNodeType={showFailuresOf} />
      </section>
      {data ? (
        <>
          <section className="fo-dash-section">
            <h3>Throughput</h3>
            <Throughput rows={data.throughput} bucket={data.bucket} />
          </section>
          <div className="fo-dash-columns">
            <section className="fo-dash-section">
              <h3>Activity latency per node type</h3>
              <LatencyTable rows={data.latency} onNodeType={showFailuresOf} />
            </section>
            <section className="fo-dash-section">
              <h3>Workers</h3>
              <Workers workers={data.workers} queues={data.queues} />
            </section>
          </div>
        </>
      ) : null}
      <div className="fo-dash-columns">
        <section className="fo-dash-section">
          <h3>Open alerts</h3>
          <Alerts alerts={alerts} error={alertsError} />
        </section>
        <section className="fo-dash-section">
          <h3>Recent runs</h3>
          <RecentRuns runs={runs} error={runsError} openRun={props.openRun} />
        </section>
      </div>
      <section className="fo-dash-section" data-testid="dead-letters-section">
        <h3>Dead letters</h3>
        <DeadLetters
          letters={lettersShown}
          error={lettersError}
          nodeType={nodeType}
          nodeTypes={Array.from(new Set([...(data?.latency ?? []).map(r => r.node_type), ...(letters ?? []).map(x => x.node_type ?? ''), ...(failing ?? []).map(x => x.node_type ?? '')].filter(Boolean))).sort()}
          setNodeType={setNodeType}
          openRun={props.openRun}
          reload={() => void load(range, nodeType)}
        />
      </section>
    </div>
  );
}

function SuccessTile(props: { data: DashboardData }): JSX.Element {
  const s = props.data.success;
  const rate = s.success_rate;
  const target = props.data.slo / 100;
  const state = rate === null || rate === undefined ? 'none' : rate >= target ? 'good' : 'bad';
  return (
    <div className={`fo-dash-tile fo-dash-tile-${state}`} data-testid="tile-success-rate" data-value={rate ?? ''}>
      <div className="fo-dash-tile-name">Success rate</div>
      <div className="fo-dash-tile-value">{fmtPercent(rate)}</div>
      <div className="fo-dash-tile-sub">
        {s.total ? `${s.success} of ${s.total} ended runs succeeded` : 'no run ended in this range'}
        {s.cancelled ? `, ${s.cancelled} cancelled (not counted)` : ''}
      </div>
      <div className="fo-dash-tile-sub fo-p-muted">objective {fmtNumber(props.data.slo, 3)} %</div>
    </div>
  );
}

function BurnTile(props: { data: DashboardData }): JSX.Element {
  const b = props.data.budget;
  const remaining = b?.budget_remaining;
  const alerting = props.data.burn_rates.some(r => r.alerting);
  const state = remaining === undefined || remaining === null ? 'none' : remaining < 0 || alerting ? 'bad' : remaining < 0.25 ? 'warn' : 'good';
  return (
    <div className={`fo-dash-tile fo-dash-tile-${state}`} data-testid="tile-burn" data-value={remaining ?? ''}>
      <div className="fo-dash-tile-name">Error budget left ({b?.window ?? '30d'})</div>
      <div className="fo-dash-tile-value" data-testid="budget-remaining">
        {fmtPercent(remaining, 1)}
      </div>
      <div className="fo-dash-tile-sub">
        {b ? `${b.failed} failed of ${b.total}; ${fmtNumber(b.allowed_failures, b.allowed_failures < 1 ? 4 : 2)} allowed at ${fmtNumber(b.slo, 3)} %` : ''}
      </div>
      <table className="fo-dash-mini">
        <thead>
          <tr>
            <th>window</th>
            <th>burn rate</th>
            <th>pages at</th>
          </tr>
        </thead>
        <tbody>
          {props.data.burn_rates.map(r => (
            <tr key={r.window} className={r.alerting ? 'fo-dash-alerting' : ''} data-testid="burn-row" data-window={r.window} data-alerting={r.alerting ? 'true' : 'false'}>
              <td>{r.window}</td>
              <td title={r.total ? `${r.failed} of ${r.total} failed` : 'no run ended in this window'}>
                {r.burn_rate === null || r.burn_rate === undefined ? '—' : `${fmtNumber(r.burn_rate, 2)}×`}
              </td>
              <td>{fmtNumber(r.threshold, 1)}×</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function QueueTile(props: { queues: QueueRow[] | null }): JSX.Element {
  const { queues } = props;
  if (queues === null || queues === undefined) {
    return (
      <div className="fo-dash-tile fo-dash-tile-warn" data-testid="tile-queue-depth" data-value="">
        <div className="fo-dash-tile-name">Task-queue depth</div>
        <div className="fo-dash-tile-value">?</div>
        <div className="fo-dash-tile-sub">Temporal did not answer: the backlog is unknown.</div>
      </div>
    );
  }
  const total = queues.reduce((sum, q) => sum + (q.backlog || 0), 0);
  return (
    <div className={`fo-dash-tile fo-dash-tile-${total > 0 ? 'warn' : 'good'}`} data-testid="tile-queue-depth" data-value={total}>
      <div className="fo-dash-tile-name">Task-queue depth</div>
      <div className="fo-dash-tile-value">{total}</div>
      <table className="fo-dash-mini">
        <tbody>
          {queues.map(q => (
            <tr key={`${q.task_queue}/${q.type}`} data-testid="queue-row" data-queue={q.task_queue} data-type={q.type}>
              <td>
                {q.task_queue} <span className="fo-p-muted">{q.type}</span>
              </td>
              <td>{q.backlog}</td>
              <td className="fo-p-muted" title="age of the oldest waiting task">
                {q.backlog ? fmtDuration((q.backlog_age_s ?? 0) * 1000) : ''}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RunsTile(props: { data: DashboardData }): JSX.Element {
  const total = props.data.throughput.reduce((sum, r) => sum + (Number(r.total) || 0), 0);
  const running = props.data.throughput.reduce((sum, r) => sum + (Number(r.running) || 0) + (Number(r.queued) || 0), 0);
  return (
    <div className="fo-dash-tile" data-testid="tile-runs" data-value={total}>
      <div className="fo-dash-tile-name">Runs started</div>
      <div className="fo-dash-tile-value">{total}</div>
      <div className="fo-dash-tile-sub">{running ? `${running} still queued or running` : 'none in flight'}</div>
    </div>
  );
}

const THROUGHPUT_STATUSES = ['success', 'failed', 'cancelled', 'running', 'queued'];

function Throughput(props: { rows: ThroughputRow[]; bucket: string }): JSX.Element {
  const [ref, width] = useWidth<HTMLDivElement>();
  const rows = props.rows ?? [];
  const H = 150;
  const TOP = 14;
  const BOTTOM = 22;
  const LEFT = 36;
  const plotW = Math.max(100, width - LEFT - 8);
  const plotH = H - TOP - BOTTOM;
  const max = Math.max(1, ...rows.map(r => Number(r.total) || 0));
  const slot = rows.length ? plotW / rows.length : plotW;
  const barW = Math.max(1, slot * 0.8);
  const label = (i: number) => {
    const t = toMs(rows[i]?.bucket);
    if (t === null) {
      return '';
    }
    const d = new Date(t);
    const span = rows.length > 1 ? (toMs(rows[rows.length - 1].bucket) ?? t) - (toMs(rows[0].bucket) ?? t) : 0;
    return span >= 2 * 86_400_000 ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}` : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  };
  const labelled = rows.length ? Array.from(new Set([0, Math.floor((rows.length - 1) / 2), rows.length - 1])) : [];
  return (
    <div className="fo-tp-wrap" ref={ref}>
      <svg className="fo-tp" data-testid="throughput" data-buckets={rows.length} width={Math.max(width, LEFT + 108)} height={H} role="img" aria-label={`Runs per ${props.bucket}, by status`}>
        <line className="fo-tp-axis" x1={LEFT} x2={LEFT + plotW} y1={TOP + plotH} y2={TOP + plotH} />
        <line className="fo-tp-grid" x1={LEFT} x2={LEFT + plotW} y1={TOP} y2={TOP} />
        <text className="fo-tp-label" x={LEFT - 4} y={TOP + 4} textAnchor="end">
          {max}
        </text>
        <text className="fo-tp-label" x={LEFT - 4} y={TOP + plotH + 4} textAnchor="end">
          0
        </text>
        {rows.map((r, i) => {
          let y = TOP + plotH;
          const x = LEFT + i * slot + (slot - barW) / 2;
          const total = Number(r.total) || 0;
          const parts = THROUGHPUT_STATUSES.filter(s => Number(r[s]) > 0);
          const t = toMs(r.bucket);
          const title = `${t === null ? r.bucket : fmtDateTime(r.bucket)} (${props.bucket}): ${total} run(s)${parts.length ? ` — ${parts.map(s => `${r[s]} ${s}`).join(', ')}` : ''}`;
          return (
            <g key={i} className="fo-tp-bar" data-testid="throughput-bar" data-bucket={r.bucket} data-total={total}>
              <title>{title}</title>
              <rect className="fo-tp-hit" x={LEFT + i * slot} y={TOP} width={slot} height={plotH} />
              {parts.map(s => {
                const h = (Number(r[s]) / max) * plotH;
                y -= h;
                return <rect key={s} className={`fo-tp-${s}`} x={x} y={y} width={barW} height={Math.max(h, 0.5)} />;
              })}
            </g>
          );
        })}
        {labelled.map(i => (
          <text key={i} className="fo-tp-label" x={LEFT + i * slot + slot / 2} y={H - 6} textAnchor={i === 0 ? 'start' : i === rows.length - 1 ? 'end' : 'middle'}>
            {label(i)}
          </text>
        ))}
      </svg>
      <div className="fo-gantt-legend">
        {THROUGHPUT_STATUSES.map(s => (
          <span key={s} className="fo-gantt-legend-item">
            <i className={`fo-gantt-swatch fo-tp-${s}`} />
            {s}
          </span>
        ))}
      </div>
    </div>
  );
}

function LatencyTable(props: { rows: LatencyRow[]; onNodeType: (type: string) => void }): JSX.Element {
  const rows = props.rows ?? [];
  return (
    <table className="fo-dash-table" data-testid="latency-table">
      <thead>
        <tr>
          <th>node type</th>
          <th title="activity attempts">samples</th>
          <th>p50</th>
          <th>p95</th>
          <th>p99</th>
          <th>max</th>
        </tr>
      </thead>
      <tbody>
        {rows.map(r => (
          <tr key={r.node_type} data-testid="latency-row" data-node-type={r.node_type}>
            <td>
              <button className="fo-dash-link" data-testid="latency-node-type" title="List the runs that failed at this node type" onClick={() => props.onNodeType(r.node_type)}>
                <code>{r.node_type}</code>
              </button>
            </td>
            <td>{r.count}</td>
            <td>{fmtDuration(r.p50_ms)}</td>
            <td data-testid="latency-p95">{fmtDuration(r.p95_ms)}</td>
            <td data-testid="latency-p99">{fmtDuration(r.p99_ms)}</td>
            <td>{fmtDuration(r.max_ms)}</td>
          </tr>
        ))}
        {rows.length === 0 ? (
          <tr>
            <td colSpan={6} className="fo-p-muted">
              No activity ran in this range.
            </td>
          </tr>
        ) : null}
      </tbody>
    </table>
  );
}

function Workers(props: { workers: WorkerRow[] | null; queues: QueueRow[] | null }): JSX.Element {
  const { workers, queues } = props;
  if (workers === null || workers === undefined) {
    return (
      <div data-testid="workers" data-state="unknown" className="fo-p-banner fo-p-banner-warn">
        Temporal did not answer: worker health is unknown.
      </div>
    );
  }
  return (
    <div data-testid="workers" data-state={workers.length ? (workers.every(w => w.healthy) ? 'healthy' : 'stale') : 'none'}>
      {queues && queues.length ? (
        <div className="fo-p-muted fo-dash-pollers">
          pollers:{' '}
          {queues.map(q => (
            <span key={`${q.task_queue}/${q.type}`} className={q.pollers ? '' : 'fo-p-error-text'}>
              {q.task_queue}/{q.type} {q.pollers}{' '}
            </span>
          ))}
        </div>
      ) : null}
      {workers.length === 0 ? (
        <div className="fo-p-banner fo-p-banner-error">No worker is polling the task queues: runs will wait until one starts.</div>
      ) : (
        <table className="fo-dash-table">
          <thead>
            <tr>
              <th>worker</th>
              <th>task queue</th>
              <th>last poll</th>
              <th>health</th>
            </tr>
          </thead>
          <tbody>
            {workers.map((w, i) => (
              <tr key={`${w.identity}/${w.task_queue}/${w.type}/${i}`} data-testid="worker-row" data-healthy={w.healthy ? 'true' : 'false'}>
                <td>
                  <code>{w.identity}</code>
                </td>
                <td>
                  {w.task_queue} <span className="fo-p-muted">{w.type}</span>
                </td>
                <td title={w.last_access_time ?? ''}>{fmtAgo(w.seconds_since_poll)}</td>
                <td>
                  <span className={`fo-pill fo-pill-${w.healthy ? 'success' : 'failed'}`}>{w.healthy ? 'healthy' : 'stale'}</span>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function Alerts(props: { alerts: AlertRecord[] | null; error: string | null }): JSX.Element {
  const { alerts, error } = props;
  return (
    <div data-testid="alerts" data-count={alerts?.length ?? ''}>
      {error ? (
        <div className="fo-p-banner fo-p-banner-error" role="alert">
          Could not read the alerts: {error}
        </div>
      ) : null}
      {alerts === null ? null : alerts.length === 0 ? (
        <div className="fo-p-empty">No open alerts.</div>
      ) : (
        <ul className="fo-dash-alerts">
          {alerts.map(a => (
            <li key={a.id} data-testid="alert-row" data-kind={a.kind} data-rule={a.rule}>
              <div>
                <b>{a.rule}</b> <span className="fo-p-muted">{a.kind}</span>
                <span className="fo-p-muted fo-dash-alert-when" title={a.opened_at}>
                  since {fmtDateTime(a.opened_at)}
                </span>
              </div>
              <div>{a.message}</div>
              <div className="fo-p-muted">
                value {fmtNumber(a.value, 2)}, threshold {fmtNumber(a.threshold, 2)}
                {a.action_run_id ? ` · action run ${a.action_run_id}` : ''}
              </div>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function RecentRuns(props: { runs: RunRecord[] | null; error: string | null; openRun: OpenRun }): JSX.Element {
  const { runs, error } = props;
  return (
    <div data-testid="recent-runs">
      {error ? (
        <div className="fo-p-banner fo-p-banner-error" role="alert">
          Could not list the runs: {error}
        </div>
      ) : null}
      {runs === null ? null : runs.length === 0 ? (
        <div className="fo-p-empty">No runs yet.</div>
      ) : (
        <table className="fo-dash-table fo-dash-runs">
          <tbody>
            {runs.map(r => (
              <tr key={r.run_id} data-testid="recent-run" data-run-id={r.run_id} onClick={() => props.openRun(r.run_id)} title="Open the run">
                <td>
                  <span className={`fo-pill fo-pill-${r.status}`}>{r.status}</span>
                </td>
                <td>
                  <code>{r.run_id.slice(0, 12)}</code>
                </td>
                <td>
                  {(r.search_attributes as any)?.flow_name ?? r.workflow_id ?? ''} <span className="fo-p-muted">{versionLabel(r.version)}</span>
                </td>
                <td className="fo-p-muted">{fmtDateTime(r.start_time)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function DeadLetters(props: {
  letters: DeadLetter[] | null;
  error: string | null;
  nodeType: string;
  nodeTypes: string[];
  setNodeType: (type: string) => void;
  openRun: OpenRun;
  reload: () => void;
}): JSX.Element {
  const { letters, error } = props;
  const { me } = useRole();
  const [selected, setSelected] = React.useState<Set<string>>(new Set());
  const [version, setVersion] = React.useState<'same' | 'latest'>('same');
  const [busy, setBusy] = React.useState(false);
  const [outcome, setOutcome] = React.useState<{ ok: boolean; text: string } | null>(null);
  const shown = letters ?? [];
  // Only runs still listed can be retried: a refresh drops the ones retried meanwhile.
  const chosen = shown.filter(x => selected.has(x.run_id)).map(x => x.run_id);
  const allChosen = shown.length > 0 && chosen.length === shown.length;

  const toggle = (runId: string) =>
    setSelected(old => {
      const next = new Set(old);
      if (next.has(runId)) {
        next.delete(runId);
      } else {
        next.add(runId);
      }
      return next;
    });

  const retry = async (mode: 'start' | 'resume') => {
    setBusy(true);
    setOutcome(null);
    try {
      const started = await request<RetryStarted[]>('floworch/api/dead-letters/retry', { method: 'POST', body: { run_ids: chosen, mode, version } });
      const reused = started.reduce((n, r) => n + r.reused.length, 0);
      setOutcome({
        ok: true,
        text: `Started ${started.length} ${mode === 'resume' ? 'resumed' : 'new'} run(s): ${started.map(r => r.retry_run_id.slice(0, 12)).join(', ')}${mode === 'resume' ? ` (${reused} node output(s) reused)` : ''}.`
      });
      setSelected(new Set());
      props.reload();
    } catch (e) {
      setOutcome({ ok: false, text: `Nothing was retried: ${errorText(e)}` });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div data-testid="dead-letters" data-count={letters?.length ?? ''} data-node-type={props.nodeType}>
      <div className="fo-dash-dl-bar">
        <label>
          <span className="fo-p-muted">failed at </span>
          <select data-testid="dead-letters-node-type" className="fo-p-input" value={props.nodeType} onChange={e => props.setNodeType(e.target.value)}>
            <option value="">any node type</option>
            {Array.from(new Set([...props.nodeTypes, ...(props.nodeType ? [props.nodeType] : [])])).map(t => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </label>
        {canEdit(me) ? (
          <>
            <select data-testid="dead-letters-version" className="fo-p-input" value={version} onChange={e => setVersion(e.target.value as 'same' | 'latest')} title="Which version the retries run">
              <option value="same">on the version they ran</option>
              <option value="latest">on the latest published version</option>
            </select>
            <button className="fo-pbtn" data-testid="dead-letters-retry" disabled={busy || chosen.length === 0} onClick={() => void retry('start')} title="New runs from the start, with the same input">
              Retry from start
            </button>
            <button
              className="fo-pbtn"
              data-testid="dead-letters-resume"
              disabled={busy || chosen.length === 0}
              onClick={() => void retry('resume')}
              title="New runs that reuse the recorded outputs of the nodes before the failed one"
            >
              Resume from failed node
            </button>
          </>
        ) : null}
      </div>
      {outcome ? (
        <div className={`fo-p-banner ${outcome.ok ? 'fo-p-banner-ok' : 'fo-p-banner-error'}`} data-testid="dead-letters-outcome" role={outcome.ok ? 'status' : 'alert'}>
          {outcome.text}
        </div>
      ) : null}
      {error ? (
        <div className="fo-p-banner fo-p-banner-error" role="alert">
          Could not list the dead letters: {error}
        </div>
      ) : null}
      {letters === null ? null : letters.length === 0 ? (
        <div className="fo-p-empty">{props.nodeType ? `No run waits for a retry after failing at ${props.nodeType}.` : 'No failed run waits for a retry.'}</div>
      ) : (
        <table className="fo-dash-table fo-dash-runs">
          <thead>
            <tr>
              <th>
                <input
                  type="checkbox"
                  aria-label="Select every dead letter"
                  checked={allChosen}
                  onChange={() => setSelected(allChosen ? new Set() : new Set(shown.map(x => x.run_id)))}
                />
              </th>
              <th>run</th>
              <th>flow</th>
              <th>failed node</th>
              <th>error</th>
              <th>ended</th>
            </tr>
          </thead>
          <tbody>
            {shown.map(x => (
              <tr
                key={x.run_id}
                data-testid="dead-letter"
                data-run-id={x.run_id}
                data-node={x.node ?? ''}
                data-error-kind={x.error_kind ?? ''}
                onClick={() => props.openRun(x.run_id, x.node ?? undefined)}
                title={x.node ? `Open the run at its failed node ${x.node}` : 'Open the run'}
              >
                {/* Selecting a run for a retry does not open it. */}
                <td onClick={e => e.stopPropagation()}>
                  <input type="checkbox" aria-label={`Select ${x.run_id}`} checked={selected.has(x.run_id)} onChange={() => toggle(x.run_id)} />
                </td>
                <td>
                  <button className="fo-dash-link" data-testid="dead-letter-open" title={x.node ? `Open the run at its failed node ${x.node}` : 'Open the run'}>
                    <code>{x.run_id.slice(0, 12)}</code>
                  </button>
                </td>
                <td>
                  {x.workflow ?? x.workflow_id ?? ''} <span className="fo-p-muted">{versionLabel(x.version)}</span>
                </td>
                <td>
                  {x.node ? <code>{x.node}</code> : <span className="fo-p-muted">{x.history ? 'not at a node' : 'history not kept'}</span>}{' '}
                  <span className="fo-p-muted">{x.node_type ?? ''}</span>
                </td>
                <td title={x.error ?? ''}>
                  {x.error_kind ? <span className="fo-pill fo-pill-failed">{x.error_kind}</span> : null} <span className="fo-dash-dl-error">{x.error ?? ''}</span>
                </td>
                <td className="fo-p-muted">{fmtDateTime(x.ended)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

/** The dead letters grouped by the type of the node they failed at, most failures first. */
export function failingTypes(letters: DeadLetter[]): { type: string; runs: number; kinds: [string, number][]; last: string | null }[] {
  const byType = new Map<string, { runs: number; kinds: Map<string, number>; last: string | null }>();
  for (const x of letters) {
    if (!x.node_type) {
      continue; // failed outside a node (timed out as a whole) or its history is gone
    }
    const entry = byType.get(x.node_type) ?? { runs: 0, kinds: new Map(), last: null };
    entry.runs++;
    const kind = x.error_kind ?? 'error';
    entry.kinds.set(kind, (entry.kinds.get(kind) ?? 0) + 1);
    if (x.ended && (entry.last === null || x.ended > entry.last)) {
      entry.last = x.ended;
    }
    byType.set(x.node_type, entry);
  }
  return Array.from(byType, ([type, e]) => ({ type, runs: e.runs, kinds: Array.from(e.kinds).sort((a, b) => b[1] - a[1]), last: e.last })).sort(
    (a, b) => b.runs - a.runs || a.type.localeCompare(b.type)
  );
}

function FailingTypes(props: { letters: DeadLetter[] | null; chosen: string; onNodeType: (type: string) => void }): JSX.Element {
  const { letters } = props;
  if (letters === null) {
    return <div className="fo-p-muted" data-testid="failing-types">Reading the failed runs…</div>;
  }
  const types = failingTypes(letters);
  return (
    <div className="fo-dash-failing" data-testid="failing-types" data-count={types.length}>
      {types.length === 0 ? <div className="fo-p-empty">No failed run waits for a retry.</div> : null}
      {types.map(t => (
        <button
          key={t.type}
          className={`fo-dash-failing-type${t.type === props.chosen ? ' fo-dash-failing-chosen' : ''}`}
          data-testid="failing-node-type"
          data-node-type={t.type}
          data-runs={t.runs}
          aria-pressed={t.type === props.chosen}
          title={`List the ${t.runs} run(s) that failed at a ${t.type} node`}
          onClick={() => props.onNodeType(t.type)}
        >
          <code>{t.type}</code>
          <span className="fo-dash-failing-count">
            {t.runs} failed run{t.runs === 1 ? '' : 's'}
          </span>
          <span className="fo-dash-failing-kinds">
            {t.kinds.slice(0, 3).map(([kind, n]) => (
              <span key={kind} className="fo-pill fo-pill-failed">
                {kind}
                {t.kinds.length > 1 || n > 1 ? ` ×${n}` : ''}
              </span>
            ))}
          </span>
          {t.last ? <span className="fo-p-muted">last {fmtDateTime(t.last)}</span> : null}
        </button>
      ))}
      {letters.length >= FAILING_SCANNED ? <div className="fo-p-muted">Counted over the newest {FAILING_SCANNED} failed runs.</div> : null}
    </div>
  );
}
