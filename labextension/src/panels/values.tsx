/**
 * How the panels show a value from a run: JSON, folded when it is large, with the values the API
 * holds by reference (a `blob:<sha256>` id, or an object naming one) drawn as chips that fetch it.
 */
import * as React from 'react';
import { api } from '../api';
import { errorText, fmtBytes } from './format';

const LARGE_VALUE_CHARS = 16_000; // a value longer than this as JSON is shown folded
const LONG_STRING_CHARS = 2_000;

export function isEmpty(value: unknown): boolean {
  if (value === null || value === undefined) {
    return true;
  }
  if (Array.isArray(value)) {
    return value.length === 0;
  }
  return typeof value === 'object' && Object.keys(value as object).length === 0;
}

export function Field(props: { title: string; testid: string; value: unknown; folded?: boolean }): JSX.Element {
  return (
    <details className="fo-insp-field" data-testid={props.testid} open={!props.folded}>
      <summary>{props.title}</summary>
      <ValueView value={props.value} />
    </details>
  );
}

interface Reference {
  id: string;
  url: string | null;
  size: number | null;
  mediaType: string | null;
  name: string | null;
}

const BLOB_ID = /^blob:[0-9a-f]{64}$/;
const REF_KEYS = ['$ref', 'ref', 'reference', 'blob', 'blob_id'];

/** A value the API gives by reference: a `blob:<sha256>` id or an object naming one (with a url to fetch it). */
export function asReference(value: unknown): Reference | null {
  if (typeof value === 'string') {
    return BLOB_ID.test(value) ? { id: value, url: null, size: null, mediaType: null, name: null } : null;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return null;
  }
  const obj = value as { [k: string]: unknown };
  const key = REF_KEYS.find(k => typeof obj[k] === 'string');
  if (!key) {
    return null;
  }
  const url = [obj.url, obj.href, obj.download_url].find(v => typeof v === 'string') as string | undefined;
  const id = obj[key] as string;
  if (!url && !BLOB_ID.test(id) && key !== '$ref') {
    return null; // an ordinary object that happens to have a "ref" field
  }
  const size = [obj.size, obj.bytes, obj.length].find(v => typeof v === 'number') as number | undefined;
  const mediaType = [obj.media_type, obj.content_type, obj.mime_type].find(v => typeof v === 'string') as string | undefined;
  const name = [obj.filename, obj.name].find(v => typeof v === 'string') as string | undefined;
  return { id, url: url ?? null, size: size ?? null, mediaType: mediaType ?? null, name: name ?? null };
}

export function hasReference(value: unknown, depth = 0): boolean {
  if (depth > 40) {
    return false;
  }
  if (asReference(value)) {
    return true;
  }
  if (Array.isArray(value)) {
    return value.some(v => hasReference(v, depth + 1));
  }
  if (value && typeof value === 'object') {
    return Object.values(value as object).some(v => hasReference(v, depth + 1));
  }
  return false;
}

function stringify(value: unknown): string {
  try {
    return JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    return String(value);
  }
}

export function ValueView(props: { value: unknown }): JSX.Element {
  const { value } = props;
  const [expanded, setExpanded] = React.useState(false);
  const text = React.useMemo(() => (value === undefined ? '' : stringify(value)), [value]);
  const refs = React.useMemo(() => hasReference(value), [value]);
  if (value === undefined) {
    return <span className="fo-p-muted">—</span>;
  }
  if (text.length > LARGE_VALUE_CHARS && !expanded) {
    const kind = Array.isArray(value) ? `array of ${value.length}` : typeof value === 'object' && value ? `object of ${Object.keys(value).length} keys` : typeof value;
    return (
      <div className="fo-val-large" data-testid="value-large">
        <span className="fo-p-muted">
          large value: {kind}, {fmtBytes(text.length)} as JSON
        </span>{' '}
        <button className="fo-pbtn" data-testid="value-expand" onClick={() => setExpanded(true)}>
          Show
        </button>
        <pre className="fo-val">{text.slice(0, 600)}…</pre>
      </div>
    );
  }
  if (!refs) {
    return <pre className="fo-val">{text}</pre>;
  }
  return (
    <pre className="fo-val">
      <JsonNode value={value} indent="" />
    </pre>
  );
}

/** JSON, drawn by hand so that references inside it become fetchable chips. */
function JsonNode(props: { value: unknown; indent: string }): JSX.Element {
  const { value, indent } = props;
  const ref = asReference(value);
  if (ref) {
    return <ReferenceChip reference={ref} />;
  }
  if (Array.isArray(value)) {
    if (!value.length) {
      return <>[]</>;
    }
    const inner = indent + '  ';
    return (
      <>
        {'[\n'}
        {value.map((v, i) => (
          <React.Fragment key={i}>
            {inner}
            <JsonNode value={v} indent={inner} />
            {i < value.length - 1 ? ',\n' : '\n'}
          </React.Fragment>
        ))}
        {indent}]
      </>
    );
  }
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as object);
    if (!entries.length) {
      return <>{'{}'}</>;
    }
    const inner = indent + '  ';
    return (
      <>
        {'{\n'}
        {entries.map(([k, v], i) => (
          <React.Fragment key={k}>
            {inner}
            <span className="fo-val-key">{JSON.stringify(k)}</span>
            {': '}
            <JsonNode value={v} indent={inner} />
            {i < entries.length - 1 ? ',\n' : '\n'}
          </React.Fragment>
        ))}
        {indent}
        {'}'}
      </>
    );
  }
  if (typeof value === 'string' && value.length > LONG_STRING_CHARS) {
    return <LongString value={value} />;
  }
  return <>{value === undefined ? 'null' : JSON.stringify(value)}</>;
}

function LongString(props: { value: string }): JSX.Element {
  const [all, setAll] = React.useState(false);
  if (all) {
    return <>{JSON.stringify(props.value)}</>;
  }
  return (
    <>
      {JSON.stringify(props.value.slice(0, 400))}…{' '}
      <button className="fo-pbtn fo-pbtn-small" onClick={() => setAll(true)}>
        show all {fmtBytes(props.value.length)}
      </button>
    </>
  );
}

function ReferenceChip(props: { reference: Reference }): JSX.Element {
  const ref = props.reference;
  const [state, setState] = React.useState<{ busy: boolean; error: string | null; text: string | null; type: string; size: number }>({
    busy: false,
    error: null,
    text: null,
    type: '',
    size: 0
  });
  const label = ref.id.length > 24 ? `${ref.id.slice(0, 17)}…${ref.id.slice(-6)}` : ref.id;
  const facts = [ref.name, ref.mediaType, ref.size !== null ? fmtBytes(ref.size) : null].filter(Boolean).join(', ');
  const load = async () => {
    if (!ref.url) {
      return;
    }
    setState(s => ({ ...s, busy: true, error: null }));
    try {
      const got = await api.reference(ref.url);
      let text = got.text;
      if (text && /json/.test(got.type)) {
        try {
          text = JSON.stringify(JSON.parse(text), null, 2);
        } catch {
          // keep it as sent
        }
      }
      setState({ busy: false, error: null, text, type: got.type, size: got.size });
    } catch (e) {
      setState(s => ({ ...s, busy: false, error: errorText(e) }));
    }
  };
  return (
    <span className="fo-ref" data-testid="value-ref" data-ref={ref.id}>
      <span className="fo-ref-chip" title={`${ref.id}${ref.url ? `\n${ref.url}` : '\nheld by reference; the API gives no address to fetch it from'}`}>
        <b>ref</b> {label}
        {facts ? <span className="fo-p-muted"> ({facts})</span> : null}
      </span>
      {ref.url && state.text === null ? (
        <button className="fo-pbtn fo-pbtn-small" data-testid="value-ref-fetch" disabled={state.busy} onClick={() => void load()}>
          {state.busy ? 'Fetching…' : 'Fetch'}
        </button>
      ) : null}
      {state.error ? <span className="fo-p-error-text"> {state.error}</span> : null}
      {state.text !== null ? (
        <span className="fo-ref-content" data-testid="value-ref-content">
          {state.text
            ? state.text.length > 200_000
              ? `${state.text.slice(0, 200_000)}\n… (${fmtBytes(state.size)} in all)`
              : state.text
            : `${fmtBytes(state.size)} of ${state.type || 'binary data'}`}
        </span>
      ) : null}
    </span>
  );
}
