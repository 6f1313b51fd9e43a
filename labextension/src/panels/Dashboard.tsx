/**
 * The Dashboard panel: success rate, error budget and burn rates, task-queue depth, throughput,
 * activity latency per node type, workers, open alerts and recent runs, refreshed every 10 s.
 */
import * as React from 'react';
import { api, type RunRecord } from '../api';
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

export function Dashboard(props: { openRun: (runId: string) => void }): JSX.Element {
  const [range, setRange] = React.useState('24h');
  const [data, setData] = React.useState<DashboardData | null>(null);
  const [dataRange, setDataRange] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [alerts, setAlerts] = React.useState<AlertRecord[] | null>(null);
  const [alertsError, setAlertsError] = React.useState<string | null>(null);
  const [runs, setRuns] = React.useState<RunRecord[] | null>(null);
  const [runsError, setRunsError] = React.useState<string | null>(null);
  const [updated, setUpdated] = React.useState<number | null>(null);
  const [loading, setLoading] = React.useState(false);
  const seq = React.useRef(0);

  const load = React.useCallback(async (wanted: string) => {
    const n = ++seq.current;
    setLoading(true);
    const [d, a, r] = await Promise.allSettled([api.dashboard(wanted), api.alerts(true, 100), api.runs(undefined, 15)]);
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
    setUpdated(Date.now());
    setLoading(false);
  }, []);

  React.useEffect(() => {
    void load(range);
    const timer = window.setInterval(() => void load(range), DASHBOARD_REFRESH_MS);
    return () => {
      window.clearInterval(timer);
      seq.current++;
    };
  }, [range, load]);

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
        <button className="fo-pbtn" data-testid="dashboard-refresh" onClick={() => void load(range)} disabled={loading}>
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
          <section className="fo-dash-section">
            <h3>Throughput</h3>
            <Throughput rows={data.throughput} bucket={data.bucket} />
          </section>
          <div className="fo-dash-columns">
            <section className="fo-dash-section">
              <h3>Activity latency per node type</h3>
              <LatencyTable rows={data.latency} />
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

function LatencyTable(props: { rows: LatencyRow[] }): JSX.Element {
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
              <code>{r.node_type}</code>
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

function RecentRuns(props: { runs: RunRecord[] | null; error: string | null; openRun: (runId: string) => void }): JSX.Element {
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
