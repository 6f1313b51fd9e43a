/**
 * The FlowOrchestrator REST API, seen from the browser. Both the JupyterLab document and the
 * notebook widget run inside a JupyterLab page, so both read the server's base URL and token
 * from the page's config and authenticate like JupyterLab itself.
 */
import type { FlowData, JSONValue } from './sharedflow';

export interface Port {
  name: string;
  label: string;
  type: string;
  loop_back: boolean;
}

export interface NodeSpec {
  type: string;
  category: string;
  title: string;
  description: string;
  kind: 'trigger' | 'activity' | 'control';
  icon: string;
  inputs: Port[];
  outputs: Port[];
  /** output ports named by the config: one per item of `field`, named by its `key`, then `then` */
  dynamic_outputs: { field: string; key: string; then: string[] } | null;
  config_schema: Schema;
  defaults: { [k: string]: JSONValue };
  allows_loops: boolean;
  docs: string;
}

export interface Schema {
  type?: string | string[];
  properties?: { [k: string]: Schema };
  required?: string[];
  enum?: JSONValue[];
  default?: JSONValue;
  description?: string;
  title?: string;
  items?: Schema;
  minimum?: number;
  maximum?: number;
  oneOf?: Schema[];
  anyOf?: Schema[];
  [k: string]: any;
}

export interface Problem {
  code: string;
  message: string;
  node?: string;
  edge?: string;
  field?: string;
  hint?: string;
  line?: number;
  location: string;
}

export interface NodeRun {
  node: string;
  type?: string;
  status: string;
  attempts?: number;
  started?: string | null;
  ended?: string | null;
  error?: string | null;
  [k: string]: any;
}

export interface RunRecord {
  run_id: string;
  workflow_id: string;
  version: number | string | null;
  status: string;
  nodes?: NodeRun[];
  error?: string | null;
  [k: string]: any;
}

export interface VersionRecord {
  version: number;
  note: string;
  plan_hash: string;
  created_by: string;
  created_at: string;
  document?: FlowData;
}

export type Role = 'admin' | 'editor' | 'viewer';

/** `GET /me`: who this page is, in which tenant, with which role (null: not a member). */
export interface Me {
  user: string;
  tenant: string;
  role: Role | null;
  /** how the role was found: "jupyter" (this server's user) or "token" */
  via: string;
}

export interface Member {
  user: string;
  role: Role;
  tenant: string;
  added_by: string;
  added_at: string;
}

export interface AuditEntry {
  id: number;
  timestamp: string;
  tenant: string;
  actor: string;
  action: string;
  target: string;
  detail: { [k: string]: any } | null;
}

/** `settings.oauth` of an integration connected through an OAuth 2.0 provider (no token). */
export interface OAuthMeta {
  provider: string;
  scope: string | null;
  /** when the access token expires (ISO); it is refreshed when used */
  expires_at: string | null;
  connected_by: string;
  /** the connect attempt that stored these tokens (`OAuthStarted.connection`) */
  connection: string;
}

/** `GET /integrations`: a stored credential's public record; its secret never leaves the server. */
export interface Integration {
  name: string;
  provider: string;
  settings: { oauth?: OAuthMeta; [k: string]: any } | null;
  created_by: string;
  created_at: string;
  updated_at: string;
}

/** `GET /oauth/providers`: an OAuth 2.0 provider registered for the tenant (no client secret). */
export interface OAuthProvider {
  name: string;
  authorize_url: string;
  token_url: string;
  revocation_url: string | null;
  redirect_uri: string | null;
  client_id: string;
  scopes: string[];
}

/** `POST /oauth/connect`: an authorization under way, to finish in the browser. */
export interface OAuthStarted {
  authorization_url: string;
  provider: string;
  integration: string;
  redirect_uri: string;
  expires_at: string;
  connection: string;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field: string | null = null,
    readonly problems: Problem[] = []
  ) {
    super(message);
  }
}

interface PageConfig {
  baseUrl: string;
  wsUrl: string;
  token: string;
}

let config: PageConfig | null = null;

export function pageConfig(): PageConfig {
  if (config === null) {
    const el = document.getElementById('jupyter-config-data');
    const data = el ? JSON.parse(el.textContent || '{}') : {};
    const baseUrl = new URL(data.baseUrl || '/', window.location.href).href;
    const wsUrl = data.wsUrl ? new URL(data.wsUrl, window.location.href).href : baseUrl.replace(/^http/, 'ws');
    config = { baseUrl, wsUrl, token: data.token || '' };
  }
  return config;
}

function xsrf(): string | undefined {
  const m = document.cookie.match('\\b_xsrf=([^;]*)\\b');
  return m ? decodeURIComponent(m[1]) : undefined;
}

export async function request<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const { baseUrl, token } = pageConfig();
  const headers: { [k: string]: string } = { 'Content-Type': 'application/json' };
  if (token) {
    headers['Authorization'] = `token ${token}`;
  }
  const x = xsrf();
  if (x) {
    headers['X-XSRFToken'] = x;
  }
  const response = await fetch(new URL(path.replace(/^\//, ''), baseUrl).href, {
    method: init.method ?? 'GET',
    headers,
    credentials: 'same-origin',
    body: init.body === undefined ? undefined : JSON.stringify(init.body)
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new ApiError(data?.error ?? response.statusText, response.status, data?.field ?? null, data?.problems ?? []);
  }
  return data as T;
}

export function socketUrl(path: string): string {
  const { wsUrl, token } = pageConfig();
  const url = new URL(path.replace(/^\//, ''), wsUrl);
  if (token) {
    url.searchParams.set('token', token);
  }
  return url.href;
}

const API = 'floworch/api';

let catalogue: Promise<NodeSpec[]> | null = null;

export const api = {
  /** The node catalogue, asked once per page: node types come from the server's specs. */
  nodes(): Promise<NodeSpec[]> {
    if (catalogue === null) {
      catalogue = request<NodeSpec[]>(`${API}/nodes`);
      catalogue.catch(() => (catalogue = null));
    }
    return catalogue;
  },
  validate(document: FlowData): Promise<{ problems: Problem[] }> {
    return request(`${API}/validate`, { method: 'POST', body: { document } });
  },
  async saveDraft(document: FlowData): Promise<void> {
    const id = document.meta.id as string;
    try {
      await request(`${API}/workflows/${encodeURIComponent(id)}`, { method: 'PUT', body: { document } });
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        await request(`${API}/workflows`, { method: 'POST', body: { document } });
      } else {
        throw e;
      }
    }
  },
  publish(id: string, note: string): Promise<VersionRecord> {
    return request(`${API}/workflows/${encodeURIComponent(id)}/publish`, { method: 'POST', body: { note } });
  },
  async versions(id: string): Promise<VersionRecord[]> {
    try {
      return await request<VersionRecord[]>(`${API}/workflows/${encodeURIComponent(id)}/versions`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        return [];
      }
      throw e;
    }
  },
  version(id: string, n: number): Promise<VersionRecord> {
    return request(`${API}/workflows/${encodeURIComponent(id)}/versions/${n}`);
  },
  startRun(id: string, input: JSONValue, version: number | 'draft' | null): Promise<RunRecord> {
    return request(`${API}/workflows/${encodeURIComponent(id)}/runs`, { method: 'POST', body: { input, version } });
  },
  run(runId: string): Promise<RunRecord> {
    return request(`${API}/runs/${encodeURIComponent(runId)}`);
  },
  runs(workflowId?: string, limit = 50): Promise<RunRecord[]> {
    const q = workflowId ? `?workflow_id=${encodeURIComponent(workflowId)}&limit=${limit}` : `?limit=${limit}`;
    return request(`${API}/runs${q}`);
  },
  inspect(runId: string, node: string): Promise<{ [k: string]: any }> {
    return request(`${API}/runs/${encodeURIComponent(runId)}/nodes/${encodeURIComponent(node)}`);
  },
  trace(runId: string): Promise<{ segments: { [k: string]: any }[] }> {
    return request(`${API}/runs/${encodeURIComponent(runId)}/trace`);
  },
  approve(runId: string, node: string, decision: 'approved' | 'rejected', comment = ''): Promise<unknown> {
    return request(`${API}/runs/${encodeURIComponent(runId)}/approvals/${encodeURIComponent(node)}`, {
      method: 'POST',
      body: { decision, comment }
    });
  },
  cancel(runId: string): Promise<unknown> {
    return request(`${API}/runs/${encodeURIComponent(runId)}/cancel`, { method: 'POST' });
  },
  dashboard(range: string): Promise<{ [k: string]: any }> {
    return request(`${API}/dashboard?range=${encodeURIComponent(range)}`);
  },
  alerts(openOnly = true, limit = 100): Promise<{ [k: string]: any }[]> {
    return request(`${API}/alerts?${openOnly ? 'open=true&' : ''}limit=${limit}`);
  },
  me(): Promise<Me> {
    return request(`${API}/me`);
  },
  members(): Promise<Member[]> {
    return request(`${API}/members`);
  },
  /** Adds `user` with `role`, or changes their role (admins; 409 for the tenant's last admin). */
  setMember(user: string, role: Role): Promise<Member> {
    return request(`${API}/members/${encodeURIComponent(user)}`, { method: 'PUT', body: { role } });
  },
  removeMember(user: string): Promise<void> {
    return request(`${API}/members/${encodeURIComponent(user)}`, { method: 'DELETE' });
  },
  /** The audit log, newest first; `action` ending in "." is a family ("member." for every member change). */
  audit(filters: { actor?: string; action?: string; limit?: number } = {}): Promise<AuditEntry[]> {
    const q = new URLSearchParams();
    if (filters.actor) {
      q.set('actor', filters.actor);
    }
    if (filters.action) {
      q.set('action', filters.action);
    }
    q.set('limit', String(filters.limit ?? 100));
    return request(`${API}/audit?${q.toString()}`);
  },
  integrations(): Promise<Integration[]> {
    return request(`${API}/integrations`);
  },
  /** Deletes an integration; one connected through OAuth has its tokens revoked at the provider first (502 if it cannot be reached). */
  removeIntegration(name: string, revoke = true): Promise<{ revoked: string[] }> {
    return request(`${API}/integrations/${encodeURIComponent(name)}${revoke ? '' : '?revoke=false'}`, { method: 'DELETE' });
  },
  oauthProviders(): Promise<OAuthProvider[]> {
    return request(`${API}/oauth/providers`);
  },
  /** Starts connecting `integration` through `provider`: open the answer's authorization_url in the browser. */
  oauthConnect(provider: string, integration: string, settings?: { [k: string]: any }): Promise<OAuthStarted> {
    return request(`${API}/oauth/connect`, { method: 'POST', body: settings ? { provider, integration, settings } : { provider, integration } });
  },
  /** The callback URL of this server, as a provider's app registration must list it. */
  oauthCallbackUrl(): string {
    return new URL(`${API}/oauth/callback`, pageConfig().baseUrl).href;
  },
  /** The status socket of a run: `{"type": "run", "run": {...}}` at open and on each change. */
  runStatusSocket(runId: string): string {
    return socketUrl(`${API}/runs/${encodeURIComponent(runId)}/status`);
  },
  /** The log socket of a run, from the record after `after` (a cursor: a reconnect neither misses nor repeats lines). */
  runLogsSocket(runId: string, after: number): string {
    return socketUrl(`${API}/runs/${encodeURIComponent(runId)}/logs?after=${after}`);
  },
  /**
   * A value held by reference, read from the address the API gave for it: text (JSON, XML, ...)
   * as text; anything else only measured. The token goes only to this page's origin.
   */
  async reference(url: string): Promise<{ text: string; type: string; size: number }> {
    const { baseUrl, token } = pageConfig();
    const target = /^[a-z]+:\/\//i.test(url) ? new URL(url) : url.startsWith('/') ? new URL(url, window.location.origin) : new URL(url, baseUrl);
    const sameOrigin = target.origin === window.location.origin;
    const headers: { [k: string]: string } = {};
    if (sameOrigin && token) {
      headers['Authorization'] = `token ${token}`;
    }
    const response = await fetch(target.href, { headers, credentials: sameOrigin ? 'same-origin' : 'omit' });
    const type = response.headers.get('Content-Type') ?? '';
    if (!response.ok) {
      let message = response.statusText;
      try {
        message = JSON.parse(await response.text()).error ?? message;
      } catch {
        // not JSON: keep the status text
      }
      throw new ApiError(message, response.status);
    }
    if (/^(text\/|application\/(json|xml|x-ndjson|javascript))|\+json|\+xml/.test(type) || !type) {
      const text = await response.text();
      return { text, type, size: text.length };
    }
    const blob = await response.blob();
    return { text: '', type, size: blob.size };
  },
  /** Follows a run: calls `onRun` with each new state, until the run ends or the returned stop is called. */
  watchRun(runId: string, onRun: (run: RunRecord) => void, onError: (message: string) => void): () => void {
    let stopped = false;
    let ws: WebSocket | null = null;
    let timer: number | undefined;
    const poll = async () => {
      // Without the status socket (a proxy refusing websockets), poll.
      while (!stopped) {
        try {
          const run = await api.run(runId);
          onRun(run);
          if (isFinal(run.status)) {
            return;
          }
        } catch (e) {
          onError(String((e as Error).message ?? e));
        }
        await new Promise(r => (timer = window.setTimeout(r, 500)));
      }
    };
    let ended = false;
    ws = new WebSocket(socketUrl(`${API}/runs/${encodeURIComponent(runId)}/status`));
    ws.onmessage = ev => {
      // {"type": "run", "run": {...}} at open and on each change; {"type": "error", ...} before a refusal.
      const data = JSON.parse(ev.data);
      if (data.type === 'error') {
        ended = true;
        onError(data.error);
        return;
      }
      if (data.type === 'run') {
        onRun(data.run as RunRecord);
        if (isFinal(data.run.status)) {
          ended = true;
        }
      }
    };
    ws.onclose = ev => {
      if (!stopped && !ended && ev.code !== 1000) {
        void poll();
      }
    };
    return () => {
      stopped = true;
      window.clearTimeout(timer);
      ws?.close();
    };
  }
};

export function isFinal(status: string): boolean {
  return ['success', 'failed', 'cancelled', 'terminated', 'timed_out'].includes(status);
}
