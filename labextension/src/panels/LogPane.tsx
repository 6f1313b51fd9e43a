/** The log tail of a run, filtered by level, node and text. */
import * as React from 'react';
import { fmtClock, toMs } from './format';
import type { LogRecord, RunSession } from './session';

const MAX_LOG_ROWS = 5_000; // rendered at once (the newest matching lines)

function baseNode(node: string): string {
  return node.split('#', 1)[0];
}

const LEVELS: { [level: string]: number } = { trace: 5, debug: 10, info: 20, warning: 30, warn: 30, error: 40, critical: 50, fatal: 50 };

function levelRank(level: string): number {
  return LEVELS[(level || '').toLowerCase()] ?? 20;
}

export function LogPane(props: { session: RunSession }): JSX.Element {
  const { session } = props;
  const [level, setLevel] = React.useState('');
  const [node, setNode] = React.useState('');
  const [text, setText] = React.useState('');
  const listRef = React.useRef<HTMLDivElement>(null);
  const stick = React.useRef(true);
  const logs = session.logs;
  const count = logs.length;
  const cursor = session.logCursor;

  const nodeOptions = React.useMemo(() => {
    const seen = new Set<string>();
    const out: string[] = [];
    (session.run?.nodes ?? []).forEach(n => {
      if (!seen.has(n.node)) {
        seen.add(n.node);
        out.push(n.node);
      }
    });
    logs.forEach(r => {
      const b = baseNode(r.node);
      if (!seen.has(b)) {
        seen.add(b);
        out.push(b);
      }
    });
    return out;
    // logs is appended in place: its length and the cursor say when it changed.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [session.run?.nodes, count, cursor]);

  const matching = React.useMemo(() => {
    const min = level ? levelRank(level) : -Infinity;
    const needle = text.trim().toLowerCase();
    return logs.filter(r => {
      if (levelRank(r.level) < min) {
        return false;
      }
      if (node && baseNode(r.node) !== node) {
        return false;
      }
      if (needle) {
        const hay = `${r.message} ${r.node} ${r.level} ${r.extra ? JSON.stringify(r.extra) : ''}`.toLowerCase();
        return hay.includes(needle);
      }
      return true;
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [count, cursor, level, node, text]);
  const shown = matching.length > MAX_LOG_ROWS ? matching.slice(matching.length - MAX_LOG_ROWS) : matching;

  React.useLayoutEffect(() => {
    const el = listRef.current;
    if (el && stick.current) {
      el.scrollTop = el.scrollHeight;
    }
  });

  const state = session.logState;
  return (
    <section className="fo-logs" data-testid="run-logs" data-state={state} data-cursor={cursor}>
      <div className="fo-p-section-head">
        <b>Logs</b>
        <select data-testid="log-level" className="fo-p-input" value={level} onChange={e => setLevel(e.target.value)} title="Lowest level shown">
          <option value="">all levels</option>
          <option value="debug">debug and above</option>
          <option value="info">info and above</option>
          <option value="warning">warning and above</option>
          <option value="error">error and above</option>
        </select>
        <select data-testid="log-node" className="fo-p-input" value={node} onChange={e => setNode(e.target.value)} title="Lines of one node">
          <option value="">all nodes</option>
          {nodeOptions.map(n => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
        <input
          data-testid="log-text"
          className="fo-p-input fo-logs-text"
          type="search"
          placeholder="Filter text…"
          value={text}
          onChange={e => setText(e.target.value)}
        />
        <span className="fo-logs-state" data-testid="log-state" data-state={state} title={session.logError ?? ''}>
          <i className={`fo-logs-led fo-logs-led-${state}`} />
          {state === 'ended'
            ? 'complete'
            : state === 'live'
            ? 'live'
            : state === 'connecting'
            ? 'connecting…'
            : `reconnecting… (${session.logReconnects})`}
        </span>
        {state === 'reconnecting' ? (
          <button className="fo-pbtn" onClick={() => session.reconnectLogs()}>
            Retry now
          </button>
        ) : null}
      </div>
      <div
        className="fo-logs-list"
        ref={listRef}
        onScroll={e => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {session.logsDropped || matching.length > shown.length ? (
          <div className="fo-p-muted fo-logs-note">
            showing the newest {shown.length} of {matching.length} matching lines
            {session.logsDropped ? ` (${session.logsDropped} older lines dropped from memory)` : ''}
          </div>
        ) : null}
        {shown.map(r => (
          <LogRow key={r.id} record={r} onNode={n => session.select(n)} />
        ))}
        {count === 0 ? (
          <div className="fo-p-empty">{state === 'ended' ? 'This run wrote no log lines.' : 'No log lines yet.'}</div>
        ) : shown.length === 0 ? (
          <div className="fo-p-empty">No line matches the filters.</div>
        ) : null}
      </div>
      <div className="fo-logs-foot fo-p-muted" data-testid="log-count">
        {matching.length} of {count} lines
      </div>
    </section>
  );
}

const LogRow = React.memo(function LogRow(props: { record: LogRecord; onNode: (node: string) => void }): JSX.Element {
  const r = props.record;
  const t = toMs(r.timestamp);
  const level = (r.level || 'info').toLowerCase();
  const extra = r.extra && Object.keys(r.extra).length ? JSON.stringify(r.extra) : '';
  return (
    <div className={`fo-log-row fo-log-${level}`} data-testid="log-row" data-id={r.id} data-level={level} data-node={baseNode(r.node)}>
      <span className="fo-log-time" title={r.timestamp}>
        {t === null ? '' : fmtClock(t)}
      </span>
      <span className="fo-log-level">{level}</span>
      <button className="fo-log-node" title={`Inspect ${baseNode(r.node)}`} onClick={() => props.onNode(baseNode(r.node))}>
        {r.node}
        {r.attempt && r.attempt > 1 ? ` (attempt ${r.attempt})` : ''}
      </button>
      <span className="fo-log-message">
        {r.message}
        {extra ? (
          <span className="fo-log-extra" title={extra}>
            {' '}
            {extra.length > 300 ? `${extra.slice(0, 300)}…` : extra}
          </span>
        ) : null}
      </span>
    </div>
  );
});
