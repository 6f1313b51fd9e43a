/**
 * The properties panel of the selected node, generated from its spec: label, config (from the
 * node's JSON Schema), and the execution policy (retries, timeouts, task queue). Validation
 * problems of the node show under the field they name. A node another person is editing is
 * read-only here until it is taken over; for a viewer it is always read-only.
 *
 * Its compensation (the node that undoes it when a later node fails) is drawn on the canvas
 * from the node's compensate handle; here it is named, with a button that clears it.
 */
import * as React from 'react';
import type { NodeSpec, Problem, Schema } from './api';
import type { Lock } from './presence';
import { userName } from './presence';
import { SchemaForm } from './SchemaForm';
import type { FlowNodeData, JSONValue, NodeChange } from './sharedflow';

const POLICY_SCHEMA: Schema = {
  type: 'object',
  properties: {
    max_attempts: { type: 'integer', title: 'retry: max attempts', description: 'Attempts before the node fails (1 = no retry).' },
    initial_interval_seconds: { type: 'number', title: 'retry: first delay (s)' },
    backoff: { type: 'number', title: 'retry: backoff factor' },
    max_interval_seconds: { type: 'number', title: 'retry: longest delay (s)' },
    non_retryable_errors: { type: 'array', title: 'retry: errors never retried', description: 'Error type names, as JSON list.' },
    timeout_seconds: { type: 'number', title: 'timeout (s)', description: 'Longest time one attempt may take.' },
    heartbeat_seconds: { type: 'number', title: 'heartbeat (s)' },
    task_queue: { type: 'string', title: 'task queue', description: 'Workers that run this node; empty: the default queue.' }
  }
};
const RETRY_FIELDS = ['max_attempts', 'initial_interval_seconds', 'backoff', 'max_interval_seconds', 'non_retryable_errors'];

/** The policy as the form shows it: retry fields flattened beside the others. */
function flatPolicy(policy: { [k: string]: any } | undefined): { [k: string]: JSONValue } {
  const { retry, ...rest } = policy ?? {};
  return { ...(retry ?? {}), ...rest };
}

function nestPolicy(flat: { [k: string]: JSONValue }): { [k: string]: JSONValue } | null {
  const retry: { [k: string]: JSONValue } = {};
  const out: { [k: string]: JSONValue } = {};
  Object.entries(flat).forEach(([k, v]) => {
    if (v === undefined) {
      return;
    }
    if (RETRY_FIELDS.includes(k)) {
      retry[k] = v;
    } else {
      out[k] = v;
    }
  });
  if (Object.keys(retry).length) {
    out.retry = retry;
  }
  return Object.keys(out).length ? out : null;
}

function errorsByField(problems: Problem[], prefix: string): { [field: string]: string[] } {
  const out: { [field: string]: string[] } = {};
  problems.forEach(p => {
    if (p.field && p.field.startsWith(prefix)) {
      const name = p.field.slice(prefix.length).split(/[.[]/)[0];
      (out[name] = out[name] ?? []).push(p.message);
    }
  });
  return out;
}

export function Properties(props: {
  node: FlowNodeData;
  spec: NodeSpec | undefined;
  problems: Problem[];
  /** the node that undoes this one (its id alone when no such node exists) */
  compensation?: FlowNodeData | string;
  /** the node this one undoes, when it is a compensation */
  compensates?: string;
  lock?: Lock;
  /** the reader may not edit (a viewer): the form is shown, but nothing in it can be changed */
  readOnly?: boolean;
  onTakeOver: () => void;
  onChange: (change: NodeChange) => void;
}): JSX.Element {
  const { node, spec, lock, compensation } = props;
  const readOnly = !!lock || !!props.readOnly;
  const configErrors = errorsByField(props.problems, 'config.');
  const policyErrors = errorsByField(props.problems, 'policy.');
  const compensateErrors = props.problems.filter(p => p.field === 'compensate');
  const other = props.problems.filter(
    p => !p.field || !(p.field.startsWith('config.') || p.field.startsWith('policy.') || p.field === 'compensate')
  );
  const undoer = typeof compensation === 'string' ? undefined : compensation;
  const defaults = flatPolicy((spec?.defaults ?? {}) as { [k: string]: any });
  const policy = flatPolicy(node.policy);
  return (
    <div className="fo-side" data-testid="properties">
      <div className="fo-side-head">
        <b>{spec?.title ?? node.type}</b>
        <code className="fo-muted">{node.id}</code>
      </div>
      {lock ? (
        <div className="fo-banner fo-banner-lock">
          {userName(lock.user)} is editing this node since {new Date(lock.since).toLocaleTimeString()}.{' '}
          {props.readOnly ? null : (
            <button
              className="fo-btn"
              data-testid="take-over"
              onClick={() => {
                if (window.confirm(`Take over '${node.id}' from ${userName(lock.user)}? They keep their edits so far.`)) {
                  props.onTakeOver();
                }
              }}
            >
              Take over
            </button>
          )}
        </div>
      ) : null}
      {spec ? <div className="fo-field-help">{spec.description}</div> : <div className="fo-field-error">Unknown node type {node.type}</div>}
      <label className="fo-field">
        <span className="fo-field-name">label</span>
        <input
          data-testid="field-label"
          type="text"
          value={node.label}
          placeholder={spec?.title}
          readOnly={readOnly}
          onChange={e => props.onChange({ label: e.target.value })}
        />
      </label>
      {compensation || compensateErrors.length ? (
        <div className="fo-compensation" data-testid="compensation">
          {compensation ? (
            <div className="fo-compensation-row">
              <span>
                Compensated by:{' '}
                <code data-testid="compensation-node">{node.compensate}</code>
                {undoer?.label ? <span className="fo-muted"> ({undoer.label})</span> : null}
              </span>
              {readOnly ? null : (
                <button
                  className="fo-btn"
                  data-testid="compensation-clear"
                  title="Remove the compensation: nothing undoes this node when a later node fails"
                  onClick={() => props.onChange({ compensate: null })}
                >
                  Clear
                </button>
              )}
            </div>
          ) : null}
          {compensateErrors.map((p, i) => (
            <div key={i} className="fo-field-error">
              {p.message}
              {p.hint ? ` — ${p.hint}` : ''}
            </div>
          ))}
        </div>
      ) : spec?.kind === 'activity' && !props.compensates && !readOnly ? (
        <div className="fo-field-help" data-testid="compensation-hint">
          To undo this node when a later node fails, drag from the handle at its bottom to the node that undoes it.
        </div>
      ) : null}
      {props.compensates ? (
        <div className="fo-field-help" data-testid="compensates">
          Compensates <code>{props.compensates}</code>: runs only when a node after it fails, to undo it.
        </div>
      ) : null}
      {other.length ? (
        <div className="fo-field-error" data-testid="node-problems">
          {other.map((p, i) => (
            <div key={i}>
              {p.message}
              {p.hint ? ` — ${p.hint}` : ''}
            </div>
          ))}
        </div>
      ) : null}
      <h4>Settings</h4>
      {spec ? (
        <SchemaForm
          schema={spec.config_schema}
          value={node.config}
          errors={configErrors}
          readOnly={readOnly}
          onChange={(field, value) => props.onChange({ config: { [field]: value } })}
        />
      ) : null}
      {spec && spec.kind !== 'trigger' ? (
        <details className="fo-policy">
          <summary>Execution: retries, timeouts, task queue</summary>
          <SchemaForm
            schema={POLICY_SCHEMA}
            value={policy}
            placeholders={defaults}
            errors={policyErrors}
            readOnly={readOnly}
            prefix="policy-"
            onChange={(field, value) => props.onChange({ policy: nestPolicy({ ...policy, [field]: value as JSONValue }) })}
          />
        </details>
      ) : null}
      {spec?.docs ? <div className="fo-docs">{spec.docs}</div> : null}
    </div>
  );
}
