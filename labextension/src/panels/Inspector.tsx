/**
 * The state inspector: what the selected node was given and gave back (per call), its error with
 * the cause chain and stack traces, its state, and "Try here" (the node run again on a worker,
 * as a test run, with a changed config); the run's own facts go below (`children`).
 */
import * as React from 'react';
import { canEdit, useRole } from '../role';
import { debugApi, type NodeTry } from './Diff';
import { errorText, fmtDateTime, fmtDuration, toMs } from './format';
import type { RunSession } from './session';
import { Field, isEmpty } from './values';

// Temporal's wrappers around what a node raised: the error's kind is the first link past them.
const WRAPPER_KINDS = new Set(['', 'NodeFailed', 'ActivityFailure', 'ChildWorkflowFailure']);

function errorKind(chain: { type: string }[]): string | null {
  return chain.find(link => !WRAPPER_KINDS.has(link.type ?? ''))?.type ?? null;
}

export function InspectorPane(props: { session: RunSession; children?: React.ReactNode }): JSX.Element {
  const { session } = props;
  const node = session.selected;
  const found = session.inspection;
  const status = found?.status ?? session.run?.nodes?.find(n => n.node === node);
  const calls = found ? Object.entries(found.calls ?? {}).sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true })) : [];
  const chains = calls.filter(([, c]) => c.error && c.error.length);
  const kind = chains.length ? errorKind(chains[chains.length - 1][1].error ?? []) : null;
  const ref = React.useRef<HTMLElement>(null);
  // Opened at this node (a failed run from the dashboard): into view once its error is read.
  React.useEffect(() => {
    if (found && node && session.reveal === node) {
      session.reveal = null;
      ref.current?.scrollIntoView?.({ block: 'nearest' });
    }
  });
  return (
    <section className="fo-insp" ref={ref} data-testid="inspector" data-node={node ?? ''} data-loaded={found ? 'true' : 'false'}>
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
            {status?.error ? (
              <div className="fo-insp-error-message" data-testid="inspector-error-message">
                {status.error}
              </div>
            ) : null}
            {kind ? (
              <div className="fo-insp-error-kind">
                <span className="fo-p-muted">kind </span>
                <span className="fo-pill fo-pill-failed" data-testid="inspector-error-kind">
                  {kind}
                </span>
              </div>
            ) : null}
            {chains.map(([id, call]) => (
              <div key={id} className="fo-insp-chain">
                {calls.length > 1 ? <div className="fo-p-muted">call {id}</div> : null}
                {/* What the node was given, next to what it raised: the first thing to check. */}
                <Field title="inputs it failed on" testid="inspector-inputs" value={call.inputs} />
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
                {call.error && call.error.length ? null : <Field title="inputs" testid="inspector-inputs" value={call.inputs} />}
                <Field title="output" testid="inspector-output" value={call.output} />
                <Field title="config (resolved)" testid="inspector-config" value={call.config} folded />
              </div>
            ))}
            {calls.length === 0 ? <Field title="config" testid="inspector-config" value={found.config} folded /> : null}
            {calls.length > 0 && node ? (
              <TryHere key={`${session.runId}/${node}`} runId={session.runId} node={node} call={calls[calls.length - 1][1]} />
            ) : null}
            {found.state !== null && found.state !== undefined ? <Field title="state" testid="inspector-state" value={found.state} /> : null}
          </>
        ) : null}
        {props.children}
      </div>
    </section>
  );
}

function pretty(value: unknown): string {
  return JSON.stringify(value ?? {}, null, 2);
}

/** Parse a JSON object typed by the user; the error names the field. */
function parseObject(text: string, what: string): { value?: { [k: string]: unknown }; error?: string } {
  if (!text.trim()) {
    return {};
  }
  try {
    const value = JSON.parse(text);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return { error: `${what} must be a JSON object` };
    }
    return { value };
  } catch (e) {
    return { error: `${what} is not valid JSON: ${errorText(e)}` };
  }
}

/**
 * "Try here": run the node again on a worker, on the inputs it had in this run, with the config
 * as edited here (merged over the resolved config it ran with). The try is a test run of its own;
 * this run does not change.
 */
function TryHere(props: { runId: string; node: string; call: { config: unknown; inputs: unknown } }): JSX.Element {
  const { runId, node, call } = props;
  const { me } = useRole();
  const [open, setOpen] = React.useState(false);
  const [configText, setConfigText] = React.useState(() => pretty(call.config));
  const [inputText, setInputText] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const [result, setResult] = React.useState<NodeTry | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const allowed = canEdit(me);

  const run = async () => {
    const config = parseObject(configText, 'config');
    const input = parseObject(inputText, 'input');
    if (config.error || input.error) {
      setError(config.error ?? input.error ?? null);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      setResult(await debugApi.tryNode(runId, node, { config: config.value, input: input.value }));
    } catch (e) {
      setResult(null);
      setError(errorText(e));
    }
    setBusy(false);
  };

  return (
    <div className="fo-insp-try" data-testid="try-here">
      <div className="fo-insp-try-head">
        <button
          className="fo-pbtn"
          data-testid="try-open"
          disabled={!allowed}
          onClick={() => setOpen(!open)}
          title={allowed ? 'Run this node again on a worker, as a test, with a changed config' : 'Viewers cannot start runs'}
        >
          {open ? 'Hide Try here' : 'Try here…'}
        </button>
        <span className="fo-p-muted">a test run on a worker; this run does not change</span>
      </div>
      {open ? (
        <div className="fo-insp-try-form">
          <label>
            config (merged over the config it ran with)
            <textarea className="fo-json" data-testid="try-config" rows={6} value={configText} onChange={e => setConfigText(e.target.value)} />
          </label>
          <label>
            inputs to change, by upstream node id (optional)
            <textarea
              className="fo-json"
              data-testid="try-input"
              rows={2}
              placeholder={short(call.inputs)}
              value={inputText}
              onChange={e => setInputText(e.target.value)}
            />
          </label>
          <button className="fo-pbtn" data-testid="try-run" disabled={busy || !allowed} onClick={() => void run()}>
            {busy ? 'Trying…' : 'Try here'}
          </button>
        </div>
      ) : null}
      {error ? (
        <div className="fo-p-banner fo-p-banner-error" data-testid="try-error" role="alert">
          {error}
        </div>
      ) : null}
      {result ? (
        <div className="fo-insp-try-result" data-testid="try-result" data-status={result.status}>
          <div>
            <span className={`fo-pill fo-pill-${result.status}`} data-testid="try-status">
              {result.status}
            </span>{' '}
            <span className="fo-p-muted">
              test run <code data-testid="try-test-run">{result.test_run_id}</code>
            </span>
          </div>
          {result.error ? (
            <div className="fo-insp-error-message" data-testid="try-failure">
              <b>{result.error.kind}</b>: {result.error.message}
            </div>
          ) : (
            <Field title="output" testid="try-output" value={result.output} />
          )}
          {result.logs.length ? (
            <ol className="fo-insp-try-logs" data-testid="try-logs">
              {result.logs.map((line, i) => (
                <li key={i} className={`fo-log-${line.level}`}>
                  <span className="fo-p-muted">{line.level}</span> {line.message}
                </li>
              ))}
            </ol>
          ) : null}
        </div>
      ) : null}
    </div>
  );
}

function short(value: unknown): string {
  const text = JSON.stringify(value ?? null);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}
