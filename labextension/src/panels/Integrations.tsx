/**
 * The Integrations tab of the Team panel: the tenant's stored credentials (never their secrets)
 * and, for editors, "Connect" through a registered OAuth 2.0 provider.
 *
 * Connecting is the authorization-code flow the server runs (PKCE and state): the server starts
 * it (`POST /oauth/connect`), a new browser tab takes the person to the provider's consent page,
 * and the provider sends that tab back to the server's callback route, which stores the tokens.
 * This tab meanwhile polls `GET /integrations` until the integration carries this attempt's
 * connection id. It stops with a message when the tab comes back with the server's "Not
 * connected" page (consent refused, say), when the tab is closed, or when the authorization
 * expires.
 */
import * as React from 'react';
import { api, ApiError, type Integration, type Me, type OAuthProvider, type OAuthStarted } from '../api';
import { canEdit } from '../role';
import { errorText, fmtDateTime } from './format';

// How often a connection under way looks at the integrations and at the consent tab.
const POLL_MS = 1000;
const CALLBACK_PATH = '/floworch/api/oauth/callback';

type Note = { kind: 'ok' | 'error'; text: string };

/** A connect attempt waiting for its callback. `tab` is null when the browser blocked it. */
interface Waiting {
  started: OAuthStarted;
  tab: Window | null;
}

export function Integrations(props: { me: Me }): JSX.Element {
  const editable = canEdit(props.me);
  const [items, setItems] = React.useState<Integration[] | null>(null);
  const [loadError, setLoadError] = React.useState<string | null>(null);
  const [providers, setProviders] = React.useState<OAuthProvider[] | null>(null);
  const [providersError, setProvidersError] = React.useState<string | null>(null);
  const [provider, setProvider] = React.useState('');
  const [name, setName] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const [waiting, setWaiting] = React.useState<Waiting | null>(null);
  const [note, setNote] = React.useState<Note | null>(null);
  const [pollError, setPollError] = React.useState<string | null>(null);
  // What the server said about removing one integration, shown in its row.
  const [rowError, setRowError] = React.useState<{ name: string; text: string; unreachable: boolean } | null>(null);

  const load = React.useCallback(async (): Promise<Integration[] | null> => {
    try {
      const got = await api.integrations();
      setItems(got);
      setLoadError(null);
      return got;
    } catch (e) {
      setLoadError(`Could not read the integrations: ${errorText(e)}`);
      return null;
    }
  }, []);

  const loadProviders = React.useCallback(async () => {
    try {
      const got = await api.oauthProviders();
      setProviders(got);
      setProvidersError(null);
      setProvider(current => (got.some(p => p.name === current) ? current : got[0]?.name ?? ''));
    } catch (e) {
      setProvidersError(`Could not read the OAuth providers: ${errorText(e)}`);
    }
  }, []);

  React.useEffect(() => {
    void load();
    if (editable) {
      void loadProviders();
    }
  }, [load, loadProviders, editable]);

  // A connection under way: poll until its tokens are stored or it cannot be any more.
  React.useEffect(() => {
    if (!waiting) {
      return;
    }
    const { started, tab } = waiting;
    let stopped = false;
    let timer = 0;
    const finish = (result: Note) => {
      stopped = true;
      setWaiting(null);
      setPollError(null);
      setNote(result);
    };
    const tick = async () => {
      let got: Integration[] | null = null;
      try {
        got = await api.integrations();
        setItems(got);
        setPollError(null);
      } catch (e) {
        setPollError(`could not read the integrations: ${errorText(e)}`); // keeps waiting
      }
      if (stopped) {
        return;
      }
      const connected = got?.find(i => i.name === started.integration && i.settings?.oauth?.connection === started.connection);
      if (connected) {
        finish({ kind: 'ok', text: `Connected ${started.integration} to ${started.provider}.` });
        return;
      }
      const page = callbackPage(tab);
      if (page && !page.connected) {
        finish({ kind: 'error', text: `${started.integration} was not connected: ${page.text}` });
        return;
      }
      if (tab?.closed) {
        finish({
          kind: 'error',
          text: `The ${started.provider} tab was closed before it called back: ${started.integration} was not connected. Connect again to retry.`
        });
        return;
      }
      if (Date.now() >= Date.parse(started.expires_at)) {
        tab?.close();
        finish({
          kind: 'error',
          text: `The authorization expired before ${started.provider} called back: ${started.integration} was not connected. Connect again.`
        });
        return;
      }
      timer = window.setTimeout(() => void tick(), POLL_MS);
    };
    timer = window.setTimeout(() => void tick(), POLL_MS);
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [waiting]);

  const connect = async (ev: React.FormEvent) => {
    ev.preventDefault();
    const integration = name.trim();
    if (!provider) {
      setNote({ kind: 'error', text: 'provider: choose the OAuth provider to connect through' });
      return;
    }
    if (!integration) {
      setNote({
        kind: 'error',
        text: 'integration: the name the connected integration gets, e.g. "hubspot-sales" (nodes name it in their config)'
      });
      return;
    }
    // The tab opens now, within the click (a window opened after awaiting the server counts as
    // a popup and is blocked); it goes to the provider once the server has started. It gets no
    // handle on this page, and this page keeps one on it: to see it closed, or back with the
    // server's answer.
    const tab = window.open('', '_blank');
    if (tab) {
      tab.opener = null;
      tab.document.title = `Connecting ${integration}`;
      tab.document.body.textContent = `Opening ${provider}…`;
    }
    setBusy(true);
    setNote(null);
    try {
      const started = await api.oauthConnect(provider, integration);
      if (tab) {
        tab.location.href = started.authorization_url;
      }
      setWaiting({ started, tab });
    } catch (e) {
      tab?.close();
      setNote({ kind: 'error', text: errorText(e) });
    }
    setBusy(false);
  };

  const remove = async (item: Integration, revoke = true) => {
    const oauth = item.settings?.oauth;
    const question = !revoke
      ? `Remove ${item.name} without revoking its tokens at ${item.provider}? Revoke its access there yourself.`
      : oauth
        ? `Remove ${item.name}? Its tokens are revoked at ${item.provider} first; flows that use it fail until it is connected again.`
        : `Remove ${item.name}? Flows that use it fail until it is added again.`;
    if (!window.confirm(question)) {
      return;
    }
    setBusy(true);
    setRowError(null);
    setNote(null);
    try {
      const done = await api.removeIntegration(item.name, revoke);
      const revoked = done.revoked.length ? `; ${done.revoked.join(' and ')} revoked at ${item.provider}` : '';
      setNote({ kind: 'ok', text: `Removed ${item.name}${revoked}.` });
    } catch (e) {
      setRowError({ name: item.name, text: errorText(e), unreachable: e instanceof ApiError && e.status === 502 });
    }
    await load();
    setBusy(false);
  };

  return (
    <section className="fo-team-section" data-testid="team-integrations" data-waiting={waiting ? waiting.started.integration : ''}>
      {loadError ? (
        <div className="fo-p-banner fo-p-banner-error" role="alert">
          {loadError}
        </div>
      ) : null}
      {!editable ? (
        <div className="fo-p-muted fo-team-note" data-testid="integrations-read-only">
          Editors and admins connect and remove integrations; you are {props.me.role ? `a ${props.me.role}` : 'not a member'}, so this list is
          read-only.
        </div>
      ) : null}
      {items === null && !loadError ? <div className="fo-p-empty">Reading the integrations…</div> : null}
      {items ? (
        <table className="fo-dash-table fo-team-table">
          <thead>
            <tr>
              <th>name</th>
              <th>provider</th>
              <th>connected by</th>
              <th>when</th>
              <th>scope</th>
              <th title="the access token is refreshed when it is used">token expires</th>
              {editable ? <th /> : null}
            </tr>
          </thead>
          <tbody>
            {items.length === 0 ? (
              <tr>
                <td colSpan={editable ? 7 : 6} className="fo-p-muted" data-testid="integrations-empty">
                  No integrations yet.
                </td>
              </tr>
            ) : null}
            {items.map(item => {
              const oauth = item.settings?.oauth;
              return (
                <React.Fragment key={item.name}>
                  <tr data-testid="integration-row" data-name={item.name} data-provider={item.provider} data-oauth={oauth ? 'true' : 'false'}>
                    <td className="fo-team-nowrap">
                      <code>{item.name}</code>
                    </td>
                    <td>
                      {item.provider}
                      {oauth ? <span className="fo-p-muted"> (OAuth)</span> : null}
                    </td>
                    <td>
                      <code data-testid="integration-by">{oauth?.connected_by ?? item.created_by}</code>
                    </td>
                    <td>{fmtDateTime(item.updated_at)}</td>
                    <td data-testid="integration-scope">{oauth ? oauth.scope || '—' : '—'}</td>
                    <td data-testid="integration-expiry">{oauth ? fmtDateTime(oauth.expires_at) : '—'}</td>
                    {editable ? (
                      <td>
                        <button className="fo-pbtn" data-testid="integration-remove" disabled={busy} onClick={() => void remove(item)}>
                          Remove
                        </button>
                      </td>
                    ) : null}
                  </tr>
                  {rowError?.name === item.name ? (
                    <tr className="fo-team-row-error">
                      <td colSpan={7} className="fo-p-error-text" data-testid="integration-remove-error" role="alert">
                        {rowError.text}{' '}
                        {rowError.unreachable ? (
                          <button
                            className="fo-pbtn fo-pbtn-small"
                            data-testid="integration-remove-anyway"
                            disabled={busy}
                            onClick={() => void remove(item, false)}
                          >
                            Remove without revoking
                          </button>
                        ) : null}
                      </td>
                    </tr>
                  ) : null}
                </React.Fragment>
              );
            })}
          </tbody>
        </table>
      ) : null}
      {editable ? (
        <ConnectForm
          providers={providers}
          providersError={providersError}
          provider={provider}
          name={name}
          busy={busy || waiting !== null}
          onProvider={setProvider}
          onName={setName}
          onSubmit={ev => void connect(ev)}
          onReloadProviders={() => void loadProviders()}
        />
      ) : null}
      {waiting ? (
        <div className="fo-p-banner" data-testid="integration-waiting">
          Waiting for {waiting.started.provider}… allow access in the{' '}
          {waiting.tab ? (
            'tab that opened'
          ) : (
            <>
              consent page (the browser blocked the new tab:{' '}
              <a href={waiting.started.authorization_url} target="_blank" rel="noopener noreferrer">
                open it
              </a>
              )
            </>
          )}
          ; valid until {fmtDateTime(waiting.started.expires_at)}.{' '}
          <button className="fo-pbtn fo-pbtn-small" data-testid="integration-cancel" onClick={() => setWaiting(null)}>
            Stop waiting
          </button>
          {pollError ? <div className="fo-p-error-text">{pollError}</div> : null}
        </div>
      ) : null}
      {note ? (
        <div
          className={`fo-p-banner${note.kind === 'error' ? ' fo-p-banner-error' : ' fo-p-banner-ok'}`}
          data-testid={note.kind === 'error' ? 'integration-error' : 'integration-done'}
          role={note.kind === 'error' ? 'alert' : 'status'}
        >
          {note.text}
        </div>
      ) : null}
    </section>
  );
}

function ConnectForm(props: {
  providers: OAuthProvider[] | null;
  providersError: string | null;
  provider: string;
  name: string;
  busy: boolean;
  onProvider: (p: string) => void;
  onName: (n: string) => void;
  onSubmit: (ev: React.FormEvent) => void;
  onReloadProviders: () => void;
}): JSX.Element {
  if (props.providersError) {
    return (
      <div className="fo-p-banner fo-p-banner-error" role="alert">
        {props.providersError}
      </div>
    );
  }
  if (props.providers === null) {
    return <div className="fo-p-empty">Reading the OAuth providers…</div>;
  }
  if (props.providers.length === 0) {
    return (
      <div className="fo-p-banner fo-team-connect-empty" data-testid="oauth-no-providers">
        <b>No OAuth provider is registered</b>, so there is nothing to connect through yet. Register one from a notebook, with this
        server's callback URL <code>{api.oauthCallbackUrl()}</code> in the provider's app registration:
        <pre className="fo-team-code">
          {`import floworch as fo
fo.integrations.register_oauth_provider(
    "hubspot", authorize_url="https://...", token_url="https://...",
    revocation_url="https://...", client_id="...", client_secret="...",
    scopes=["crm.objects.contacts.write"])`}
        </pre>
        <button className="fo-pbtn" data-testid="oauth-providers-reload" onClick={props.onReloadProviders}>
          Look again
        </button>
      </div>
    );
  }
  const chosen = props.providers.find(p => p.name === props.provider);
  return (
    <form className="fo-team-add" data-testid="integration-connect-form" onSubmit={props.onSubmit}>
      <b>Connect</b>
      <select className="fo-p-input" data-testid="integration-provider" value={props.provider} onChange={e => props.onProvider(e.target.value)}>
        {props.providers.map(p => (
          <option key={p.name} value={p.name}>
            {p.name}
          </option>
        ))}
      </select>
      <input
        className="fo-p-input"
        data-testid="integration-name"
        placeholder="integration name, e.g. hubspot-sales"
        value={props.name}
        onChange={e => props.onName(e.target.value)}
      />
      <button className="fo-pbtn" type="submit" data-testid="integration-connect" disabled={props.busy}>
        Connect
      </button>
      {chosen ? (
        <span className="fo-p-muted">
          opens {new URL(chosen.authorize_url).host} in a new tab{chosen.scopes.length ? `; asks for ${chosen.scopes.join(' ')}` : ''}
        </span>
      ) : null}
    </form>
  );
}

/** What the consent tab shows once it is back at the server's callback route, else null (still at
 * the provider, whose pages this page may not read, or closed). */
function callbackPage(tab: Window | null): { connected: boolean; text: string } | null {
  try {
    if (!tab || tab.closed || tab.location.origin !== window.location.origin || !tab.location.pathname.endsWith(CALLBACK_PATH)) {
      return null;
    }
    const doc = tab.document;
    if (doc.readyState !== 'complete') {
      return null;
    }
    const title = doc.querySelector('h1')?.textContent ?? '';
    return { connected: title.startsWith('Connected'), text: doc.querySelector('p')?.textContent ?? title };
  } catch {
    return null; // another origin's page: not readable from here
  }
}
