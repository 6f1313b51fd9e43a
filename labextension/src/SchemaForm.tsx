/**
 * A form generated from a JSON Schema (a node's config schema, a trigger's input schema, the
 * node policy): one field per property. Strings, numbers, booleans and enums get their own
 * inputs; any other value (objects, lists, alternatives) is edited as JSON, written only once
 * it parses. Errors come from the caller (the server's validation, by field) and are shown
 * under their field, next to a local JSON parse error.
 */
import * as React from 'react';
import type { Schema } from './api';
import type { JSONValue } from './sharedflow';

export interface SchemaFormProps {
  schema: Schema;
  value: { [k: string]: JSONValue };
  /** One field changed; undefined removes it. */
  onChange: (field: string, value: JSONValue | undefined) => void;
  errors?: { [field: string]: string[] };
  readOnly?: boolean;
  /** data-testid prefix of the inputs: `${prefix}${field}` */
  prefix?: string;
  placeholders?: { [field: string]: JSONValue };
}

function kind(schema: Schema): 'string' | 'number' | 'integer' | 'boolean' | 'enum' | 'json' {
  if (schema.enum) {
    return 'enum';
  }
  const t = Array.isArray(schema.type) ? schema.type.filter(x => x !== 'null') : schema.type;
  const one = Array.isArray(t) ? (t.length === 1 ? t[0] : undefined) : t;
  if (one === 'string' || one === 'number' || one === 'integer' || one === 'boolean') {
    return one;
  }
  return 'json';
}

/** True when a string is one of the values the schema allows (no type at all allows any). */
function takesText(schema: Schema): boolean {
  const types = (s: Schema): string[] | null => (s.type === undefined ? null : Array.isArray(s.type) ? s.type : [s.type]);
  const alternatives = schema.oneOf ?? schema.anyOf;
  if (alternatives) {
    return alternatives.some(takesText);
  }
  const t = types(schema);
  return t === null ? !schema.properties && !schema.items : t.includes('string');
}

export function SchemaForm(props: SchemaFormProps): JSX.Element {
  const properties = props.schema.properties ?? {};
  const required = new Set(props.schema.required ?? []);
  const prefix = props.prefix ?? 'field-';
  const names = Object.keys(properties);
  if (names.length === 0) {
    return <div className="fo-muted">No settings.</div>;
  }
  return (
    <div className="fo-form">
      {names.map(name => (
        <Field
          key={name}
          name={name}
          schema={properties[name]}
          required={required.has(name)}
          value={props.value[name]}
          onChange={v => props.onChange(name, v)}
          errors={props.errors?.[name] ?? []}
          readOnly={!!props.readOnly}
          testid={`${prefix}${name}`}
          placeholder={props.placeholders?.[name] ?? properties[name].default}
        />
      ))}
    </div>
  );
}

interface FieldProps {
  name: string;
  schema: Schema;
  required: boolean;
  value: JSONValue | undefined;
  onChange: (value: JSONValue | undefined) => void;
  errors: string[];
  readOnly: boolean;
  testid: string;
  placeholder: JSONValue | undefined;
}

function Field(p: FieldProps): JSX.Element {
  const k = kind(p.schema);
  const [draft, setDraft] = React.useState<string | null>(null);
  const [parseError, setParseError] = React.useState<string | null>(null);
  // Typed text becomes a value once it parses; until then the text stays, with why it is not one.
  const typed = (t: string, parse: (t: string) => { value: JSONValue } | { error: string }) => {
    setDraft(t);
    const parsed = t.trim() === '' ? { value: undefined } : parse(t);
    if ('error' in parsed) {
      setParseError(parsed.error);
      return;
    }
    setParseError(null);
    p.onChange(parsed.value);
  };
  const shown = p.placeholder === undefined ? '' : typeof p.placeholder === 'string' ? p.placeholder : JSON.stringify(p.placeholder);
  let input: JSX.Element;
  if (k === 'boolean') {
    const checked = p.value === undefined ? p.placeholder === true : p.value === true;
    input = (
      <input type="checkbox" data-testid={p.testid} checked={checked} disabled={p.readOnly} onChange={e => p.onChange(e.target.checked)} />
    );
  } else if (k === 'enum') {
    input = (
      <select
        data-testid={p.testid}
        disabled={p.readOnly}
        value={p.value === undefined ? '' : JSON.stringify(p.value)}
        onChange={e => p.onChange(e.target.value === '' ? undefined : JSON.parse(e.target.value))}
      >
        <option value="">{shown ? `(default: ${shown})` : '(not set)'}</option>
        {(p.schema.enum ?? []).map(v => (
          <option key={JSON.stringify(v)} value={JSON.stringify(v)}>
            {String(v)}
          </option>
        ))}
      </select>
    );
  } else if (k === 'number' || k === 'integer') {
    const text = draft ?? (p.value === undefined || p.value === null ? '' : String(p.value));
    input = (
      <input
        type="text"
        inputMode="decimal"
        data-testid={p.testid}
        value={text}
        placeholder={shown}
        readOnly={p.readOnly}
        onChange={e =>
          typed(e.target.value, t => {
            const n = Number(t);
            return !Number.isFinite(n) || (k === 'integer' && !Number.isInteger(n))
              ? { error: k === 'integer' ? 'must be a whole number' : 'must be a number' }
              : { value: n };
          })
        }
        onBlur={() => setDraft(null)}
      />
    );
  } else if (k === 'string') {
    const long = (p.schema.maxLength ?? 0) > 200 || /template|prompt|body|output|condition|query|sql/i.test(p.name);
    const common = {
      'data-testid': p.testid,
      value: typeof p.value === 'string' ? p.value : p.value === undefined ? '' : JSON.stringify(p.value),
      placeholder: shown,
      readOnly: p.readOnly,
      onChange: (e: React.ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) =>
        p.onChange(e.target.value === '' && !p.required ? undefined : e.target.value)
    };
    input = long ? <textarea rows={3} {...common} /> : <input type="text" {...common} />;
  } else {
    // A field that may hold any value takes JSON, and text that is not JSON as a string (a
    // template like `Hello, {{ input.name }}` is typed as it reads); `"42"` is the string 42.
    const text = draft ?? (p.value === undefined ? '' : typeof p.value === 'string' && takesText(p.schema) ? p.value : JSON.stringify(p.value, null, 2));
    input = (
      <textarea
        rows={Math.min(8, Math.max(2, text.split('\n').length))}
        data-testid={p.testid}
        className="fo-json"
        value={text}
        placeholder={shown ? `e.g. ${shown}` : takesText(p.schema) ? 'text or JSON' : 'JSON'}
        readOnly={p.readOnly}
        onChange={e =>
          typed(e.target.value, t => {
            try {
              return { value: JSON.parse(t) };
            } catch (err) {
              return takesText(p.schema) ? { value: t } : { error: `not valid JSON: ${(err as Error).message}` };
            }
          })
        }
        onBlur={() => parseError === null && setDraft(null)}
      />
    );
  }
  const errors = parseError ? [parseError, ...p.errors] : p.errors;
  return (
    <label className={`fo-field${errors.length ? ' fo-field-invalid' : ''}`}>
      <span className="fo-field-name">
        {p.schema.title ?? p.name}
        {p.required ? <span className="fo-required">*</span> : null}
      </span>
      {input}
      {p.schema.description ? <span className="fo-field-help">{p.schema.description}</span> : null}
      {errors.length ? (
        <span className="fo-field-error" data-testid={p.testid.startsWith('field-') ? `field-error-${p.name}` : `${p.testid}-error`}>
          {errors.join('; ')}
        </span>
      ) : null}
    </label>
  );
}
