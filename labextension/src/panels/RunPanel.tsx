/** The Run panel of one run: its header (status and facts), the trace, the logs and the inspector. */
import * as React from 'react';
import { fmtDateTime, fmtDuration, toMs, versionLabel } from './format';
import { DiffView } from './Diff';
import { Gantt } from './Gantt';
import { InspectorPane } from './Inspector';
import { LogPane } from './LogPane';
import type { RunSession } from './session';
import { Field, isEmpty } from './values';

function useSession(session: RunSession): number {
  return React.useSyncExternalStore(session.subscribe, session.getVersion);
}

export function RunPanel(props: { session: RunSession }): JSX.Element {
  const { session } = props;
  useSession(session);
  const run = session.run;
  const nodes = run?.nodes ?? [];
  return (
    <div className="fo-rp" data-testid="run-panel" data-run-id={session.runId} data-status={run?.status ?? 'unknown'}>
      <RunHeader session={session} />
      {session.runError ? (
        <div className="fo-p-banner fo-p-banner-error" data-testid="run-panel-error" role="alert">
          {session.runError}
          {session.following === 'polling' && !session.notFound ? ' (polling every second)' : ''}
        </div>
      ) : null}
      <section className="fo-rp-trace">
        <div className="fo-p-section-head">
          <b>Trace</b>
          <span className="fo-p-muted">
            {session.segments.length} segment(s){session.final ? '' : run ? ' · refreshing every second' : ''}
          </span>
          {session.traceError ? (
            <span className="fo-p-error-text" data-testid="gantt-error">
              {session.traceError}
            </span>
          ) : null}
        </div>
        <Gantt
          segments={session.segments}
          nodes={nodes}
          loaded={session.traceLoaded}
          running={run !== null && !session.final}
          selected={session.selected}
          onSelect={node => session.select(node)}
        />
      </section>
      <DiffView runId={session.runId} workflowId={run?.workflow_id ?? null} onSelect={node => session.select(node)} />
      <div className="fo-rp-bottom">
        <LogPane session={session} />
        <InspectorPane session={session}>
          <RunMeta session={session} />
        </InspectorPane>
      </div>
    </div>
  );
}

function RunHeader(props: { session: RunSession }): JSX.Element {
  const { session } = props;
  const run = session.run;
  const meta = (run?.search_attributes ?? {}) as { [k: string]: any };
  const status = run?.status ?? (session.notFound ? 'not found' : 'loading');
  const traceId = run?.trace_id ?? meta.trace_id ?? null;
  const started = toMs(run?.start_time);
  const ended = toMs(run?.end_time);
  const counts: { [s: string]: number } = {};
  (run?.nodes ?? []).forEach(n => (counts[n.status] = (counts[n.status] ?? 0) + 1));
  return (
    <header className="fo-rp-head">
      <div className="fo-rp-title">
        <span className="fo-rp-run-id" title={session.runId}>
          Run <code>{session.runId}</code>
        </span>
        <span className={`fo-pill fo-pill-${status.replace(/\s+/g, '-')}`} data-testid="run-panel-status" data-status={status}>
          {status}
        </span>
        <span className="fo-p-muted">
          {Object.entries(counts)
            .map(([s, n]) => `${n} ${s}`)
            .join(' · ')}
        </span>
      </div>
      <dl className="fo-rp-facts">
        <div>
          <dt>flow</dt>
          <dd data-testid="run-panel-flow" title={run?.workflow_id ?? ''}>
            {meta.flow_name ?? run?.workflow_id ?? '—'}
          </dd>
        </div>
        <div>
          <dt>version</dt>
          <dd data-testid="run-panel-version">{run ? versionLabel(run.version) : '—'}</dd>
        </div>
        <div>
          <dt>trigger</dt>
          <dd data-testid="run-panel-trigger">
            {run?.trigger ?? meta.trigger ?? '—'}
            {meta.trigger_node ? <span className="fo-p-muted"> ({meta.trigger_node})</span> : null}
          </dd>
        </div>
        <div>
          <dt>started</dt>
          <dd data-testid="run-panel-started" title={run?.start_time ?? ''}>
            {fmtDateTime(run?.start_time)}
          </dd>
        </div>
        <div>
          <dt>ended</dt>
          <dd data-testid="run-panel-ended" title={run?.end_time ?? ''}>
            {fmtDateTime(run?.end_time)}
            {started !== null && ended !== null ? <span className="fo-p-muted"> ({fmtDuration(ended - started)})</span> : null}
          </dd>
        </div>
        {meta.started_by ? (
          <div>
            <dt>by</dt>
            <dd>{String(meta.started_by)}</dd>
          </div>
        ) : null}
        {traceId ? (
          <div>
            <dt>trace id</dt>
            <dd data-testid="run-panel-trace-id">
              <code>{String(traceId)}</code>
            </dd>
          </div>
        ) : null}
      </dl>
      {run?.error ? (
        <div className="fo-rp-run-error" data-testid="run-panel-run-error">
          {run.error}
        </div>
      ) : null}
    </header>
  );
}

function RunMeta(props: { session: RunSession }): JSX.Element | null {
  const { session } = props;
  const run = session.run;
  const info = session.runInfo;
  if (!run && !info) {
    return null;
  }
  const attrs = (run?.search_attributes ?? null) as { [k: string]: unknown } | null;
  const planHash = info?.plan_hash ?? run?.plan_hash ?? attrs?.plan_hash;
  const version = info?.version ?? run?.version;
  return (
    <div className="fo-insp-run" data-testid="run-meta">
      <h4>Run</h4>
      <dl className="fo-insp-facts">
        <div>
          <dt>plan version</dt>
          <dd data-testid="run-meta-version">{run || info ? versionLabel(version) : '—'}</dd>
        </div>
        {planHash ? (
          <div>
            <dt>plan hash</dt>
            <dd>
              <code title={String(planHash)}>{String(planHash).slice(0, 16)}</code>
            </dd>
          </div>
        ) : null}
        {run?.tenant ? (
          <div>
            <dt>tenant</dt>
            <dd>{String(run.tenant)}</dd>
          </div>
        ) : null}
      </dl>
      {run && 'input' in run ? <Field title="input" testid="run-meta-input" value={run.input} folded /> : null}
      {run && 'result' in run ? <Field title="result" testid="run-meta-result" value={run.result} folded /> : null}
      {info && !isEmpty(info.memo) ? <Field title="memo" testid="run-meta-memo" value={info.memo} folded /> : null}
      {info && !isEmpty(info.search_attributes) ? (
        <Field title="search attributes" testid="run-meta-search-attributes" value={info.search_attributes} folded />
      ) : attrs && !isEmpty(attrs) ? (
        <Field title="search attributes" testid="run-meta-search-attributes" value={attrs} folded />
      ) : null}
    </div>
  );
}
