/**
 * The side pane for one node of the run shown on the canvas: its status, the approve and
 * reject buttons of a waiting approval, and what it got, gave back and raised.
 */
import * as React from 'react';
import { api, type RunRecord } from './api';

export function NodeRunDetails(props: {
  run: RunRecord;
  node: string;
  onDecide: (node: string, decision: 'approved' | 'rejected') => void;
  onClose: () => void;
}): JSX.Element {
  const [details, setDetails] = React.useState<{ [k: string]: any } | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const status = props.run.nodes?.find(n => n.node === props.node);
  React.useEffect(() => {
    let cancelled = false;
    api.inspect(props.run.run_id, props.node).then(
      d => !cancelled && setDetails(d),
      e => !cancelled && setError(String(e.message ?? e))
    );
    return () => {
      cancelled = true;
    };
  }, [props.run.run_id, props.node, status?.status]);
  return (
    <div className="fo-side" data-testid="node-run-details">
      <div className="fo-side-head">
        <b>{props.node}</b> in run <code>{props.run.run_id.slice(0, 12)}</code>
        <button className="fo-btn fo-close" onClick={props.onClose}>
          ×
        </button>
      </div>
      <div className="fo-kv">
        status <b>{status?.status ?? 'idle'}</b>
        {status?.attempts ? ` · ${status.attempts} attempt(s)` : ''}
      </div>
      {status?.status === 'waiting' ? (
        <div className="fo-row">
          <button className="fo-btn fo-btn-ok" onClick={() => props.onDecide(props.node, 'approved')}>
            Approve
          </button>
          <button className="fo-btn fo-btn-danger" onClick={() => props.onDecide(props.node, 'rejected')}>
            Reject
          </button>
        </div>
      ) : null}
      {error ? <div className="fo-field-error">{error}</div> : null}
      {details ? <NodeCalls details={details} /> : null}
    </div>
  );
}

/**
 * What the node got and gave back in this run: one call per attempt series (a node in a
 * for_each loop has one per item, `node#i`), with the failure's message, cause chain and
 * stack traces.
 */
export function NodeCalls(props: { details: { [k: string]: any } }): JSX.Element {
  const calls: [string, any][] = Object.entries(props.details.calls ?? {});
  const show = (v: unknown) => (v === undefined ? '—' : JSON.stringify(v, null, 2));
  if (!calls.length) {
    return (
      <>
        <h4>Config</h4>
        <pre>{show(props.details.config)}</pre>
        {props.details.state ? (
          <>
            <h4>State</h4>
            <pre>{show(props.details.state)}</pre>
          </>
        ) : (
          <div className="fo-muted">This node has not been called in this run (yet).</div>
        )}
      </>
    );
  }
  return (
    <>
      {calls.map(([id, call]) => (
        <div key={id} className="fo-call">
          {calls.length > 1 ? <h4>{id}</h4> : null}
          <h4>Inputs</h4>
          <pre data-testid="run-details-inputs">{show(call.inputs)}</pre>
          <h4>Output</h4>
          <pre data-testid="run-details-output">{show(call.output)}</pre>
          {call.error && (!Array.isArray(call.error) || call.error.length) ? (
            <>
              <h4>Error</h4>
              <pre className="fo-error-text" data-testid="run-details-error">
                {Array.isArray(call.error)
                  ? call.error
                      .map((e: any, i: number) => `${i ? 'caused by ' : ''}${e.type ? `${e.type}: ` : ''}${e.message}${e.stack_trace ? `\n${e.stack_trace}` : ''}`)
                      .join('\n\n')
                  : show(call.error)}
              </pre>
            </>
          ) : null}
        </div>
      ))}
    </>
  );
}

