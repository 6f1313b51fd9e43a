/**
 * The state inspector: what the selected node was given and gave back (per call), its error with
 * the cause chain and stack traces, its state; the run's own facts go below (`children`).
 */
import * as React from 'react';
import { fmtDateTime, fmtDuration, toMs } from './format';
import type { RunSession } from './session';
import { Field, isEmpty } from './values';

export function InspectorPane(props: { session: RunSession; children?: React.ReactNode }): JSX.Element {
  const { session } = props;
  const node = session.selected;
  const found = session.inspection;
  const status = found?.status ?? session.run?.nodes?.find(n => n.node === node);
  const calls = found ? Object.entries(found.calls ?? {}).sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true })) : [];
  const chains = calls.filter(([, c]) => c.error && c.error.length);
  return (
    <section className="fo-insp" data-testid="inspector" data-node={node ?? ''} data-loaded={found ? 'true' : 'false'}>
      <div className="fo-p-section-head">
        <b>Inspector</b>
        {node ? (
          <>
            <code data-testid="inspector-node">{node}</code>
            {found?.type ? <span className="fo-p-muted">{found.type}</span> : null}
            {status ? (
              <span className={`fo-pill fo-pill-${status.status}`} data-testid="inspector-status">
                {status.status}
              </span>
            ) : null}
            <span className="fo-spacer-flex" />
            {session.inspecting ? <span className="fo-p-muted">reading…</span> : null}
            <button className="fo-pbtn" onClick={() => session.refreshInspection()} title="Read the node again">
              Refresh
            </button>
            <button className="fo-pbtn" onClick={() => session.select(null)} title="Close the node">
              ×
            </button>
          </>
        ) : null}
      </div>
      <div className="fo-insp-body">
        {!node ? <div className="fo-p-empty">Click a node row in the trace to see what the node was given and gave back.</div> : null}
        {session.inspectionError ? (
          <div className="fo-p-banner fo-p-banner-error" data-testid="inspector-load-error" role="alert">
            {session.inspectionError}
          </div>
        ) : null}
        {node && status ? (
          <dl className="fo-insp-facts">
            <div>
              <dt>attempts</dt>
              <dd>{status.attempts ?? '—'}</dd>
            </div>
            <div>
              <dt>started</dt>
              <dd>{fmtDateTime(status.started)}</dd>
            </div>
            <div>
              <dt>ended</dt>
              <dd>{fmtDateTime(status.ended)}</dd>
            </div>
            {toMs(status.started) !== null && toMs(status.ended) !== null ? (
              <div>
                <dt>took</dt>
                <dd>{fmtDuration(toMs(status.ended)! - toMs(status.started)!)}</dd>
              </div>
            ) : null}
          </dl>
        ) : null}
        {node && (status?.error || chains.length) ? (
          <div className="fo-insp-error" data-testid="inspector-error">
            <h4>Error</h4>
            {status?.error ? <div className="fo-insp-error-message">{status.error}</div> : null}
            {chains.map(([id, call]) => (
              <div key={id} className="fo-insp-chain">
                {calls.length > 1 ? <div className="fo-p-muted">call {id}</div> : null}
                <ol>
                  {(call.error ?? []).map((link, i) => (
                    <li key={i} data-testid="inspector-cause">
                      <div>
                        {i > 0 ? <span className="fo-p-muted">caused by </span> : null}
                        <b>{link.type || 'Error'}</b>: {link.message}
                      </div>
                      {link.stack_trace ? (
                        <pre className="fo-insp-stack" data-testid="inspector-stack">
                          {link.stack_trace}
                        </pre>
                      ) : null}
                    </li>
                  ))}
                </ol>
              </div>
            ))}
          </div>
        ) : null}
        {node && status && !isEmpty(status.detail) ? (
          <Field title="detail" testid="inspector-detail" value={status.detail} />
        ) : null}
        {found ? (
          <>
            {calls.length === 0 ? (
              <div className="fo-p-muted fo-insp-note">
                {found.status?.status === 'idle' || found.status?.status === 'skipped'
                  ? 'This node has not been called.'
                  : 'This node runs inside the workflow (no activity call): its state is below.'}
              </div>
            ) : null}
            {calls.map(([id, call]) => (
              <div key={id} className="fo-insp-call" data-testid="inspector-call" data-call={id}>
                {calls.length > 1 || id !== node ? <h4>call {id}</h4> : null}
                <Field title="inputs" testid="inspector-inputs" value={call.inputs} />
                <Field title="output" testid="inspector-output" value={call.output} />
                <Field title="config (resolved)" testid="inspector-config" value={call.config} folded />
              </div>
            ))}
            {calls.length === 0 ? <Field title="config" testid="inspector-config" value={found.config} folded /> : null}
            {found.state !== null && found.state !== undefined ? <Field title="state" testid="inspector-state" value={found.state} /> : null}
          </>
        ) : null}
        {props.children}
      </div>
    </section>
  );
}
