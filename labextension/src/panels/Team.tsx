/**
 * The Team panel: the members of this tenant and their roles (admins change them here), the
 * audit log (who changed what, newest first), and the tenant's integrations (everyone reads
 * them; editors connect them through OAuth and remove them, see Integrations.tsx). What the server refuses is shown where it was
 * asked for, in its own words (the tenant's last admin cannot be demoted or removed, say).
 */
import * as React from 'react';
import { api, type AuditEntry, type Me, type Member, type Role } from '../api';
import { announceRoleChange, useRole } from '../role';
import { errorText, fmtDateTime } from './format';
import { Integrations } from './Integrations';

const ROLES: Role[] = ['admin', 'editor', 'viewer'];
const ROLE_HELP: { [r in Role]: string } = {
  admin: 'everything, and manages members',
  editor: 'edits, publishes and runs flows',
  viewer: 'sees flows and runs, changes nothing'
};
// The families of audited actions (floworch_server: store.audit callers).
const ACTION_FAMILIES = ['member.', 'workflow.', 'run.', 'schedule.', 'event.', 'integration.', 'oauth.', 'token.'];
const AUDIT_LIMIT = 200;

type Tab = 'members' | 'audit' | 'integrations';
const TAB_LABELS: { [t in Tab]: string } = { members: 'Members', audit: 'Audit', integrations: 'Integrations' };

export function TeamPanel(): JSX.Element {
  const { me, error, refresh } = useRole();
  const [tab, setTab] = React.useState<Tab>('members');
  return (
    <div className="fo-team" data-testid="team-panel">
      <header className="fo-team-head">
        <b className="fo-dash-title">Team{me ? ` of ${me.tenant}` : ''}</b>
        {me ? (
          <span className="fo-p-muted" data-testid="team-me">
            you: <code>{me.user}</code> · {me.role ?? 'not a member'}
          </span>
        ) : null}
        <span className="fo-spacer-flex" />
        <div className="fo-team-tabs" role="tablist">
          {(['members', 'audit', 'integrations'] as Tab[]).map(t => (
            <button
              key={t}
              role="tab"
              aria-selected={tab === t}
              className={`fo-team-tab${tab === t ? ' fo-team-tab-active' : ''}`}
              data-testid={`team-tab-${t}`}
              onClick={() => setTab(t)}
            >
              {TAB_LABELS[t]}
            </button>
          ))}
        </div>
      </header>
      {error ? (
        <div className="fo-p-banner fo-p-banner-error" role="alert">
          Could not read your role: {error}
        </div>
      ) : null}
      {!me && !error ? <div className="fo-p-empty">Reading your role…</div> : null}
      {me && me.role !== 'admin' && tab !== 'integrations' ? (
        <div className="fo-p-banner fo-p-banner-warn" data-testid="team-not-admin">
          Only admins of {me.tenant} manage members and read the audit log; you are {me.role ? `${article(me.role)} ${me.role}` : 'not a member'}.
        </div>
      ) : null}
      {me?.role === 'admin' && tab === 'members' ? <Members me={me} onMeChanged={refresh} /> : null}
      {me?.role === 'admin' && tab === 'audit' ? <Audit /> : null}
      {me && tab === 'integrations' ? <Integrations me={me} /> : null}
    </div>
  );
}

function article(role: Role): string {
  return role === 'admin' || role === 'editor' ? 'an' : 'a';
}

function Members(props: { me: Me; onMeChanged: () => void }): JSX.Element {
  const [members, setMembers] = React.useState<Member[] | null>(null);
  const [loadError, setLoadError] = React.useState<string | null>(null);
  // What the server said about a member's last change, shown in that member's row.
  const [rowError, setRowError] = React.useState<{ user: string; text: string } | null>(null);
  const [busy, setBusy] = React.useState<string | null>(null);
  const [newUser, setNewUser] = React.useState('');
  const [newRole, setNewRole] = React.useState<Role>('editor');
  const [addError, setAddError] = React.useState<string | null>(null);

  const load = React.useCallback(async () => {
    try {
      setMembers(await api.members());
      setLoadError(null);
    } catch (e) {
      setLoadError(`Could not read the members: ${errorText(e)}`);
    }
  }, []);
  React.useEffect(() => void load(), [load]);

  const changed = (user: string) => {
    // Views of this page (canvases, this panel) read their role again if it was theirs.
    if (user === props.me.user) {
      props.onMeChanged();
    }
    announceRoleChange();
  };

  const setRole = async (user: string, role: Role) => {
    setBusy(user);
    setRowError(null);
    try {
      await api.setMember(user, role);
      changed(user);
    } catch (e) {
      setRowError({ user, text: errorText(e) });
    }
    await load(); // the list as stored, refused change or not
    setBusy(null);
  };

  const remove = async (user: string) => {
    if (!window.confirm(`Remove ${user} from ${props.me.tenant}? They lose their role here at once.`)) {
      return;
    }
    setBusy(user);
    setRowError(null);
    try {
      await api.removeMember(user);
      changed(user);
    } catch (e) {
      setRowError({ user, text: errorText(e) });
    }
    await load();
    setBusy(null);
  };

  const add = async (ev: React.FormEvent) => {
    ev.preventDefault();
    const user = newUser.trim();
    if (!user) {
      setAddError('user: the user name of the person to add (their Jupyter user name)');
      return;
    }
    setBusy('+');
    setAddError(null);
    try {
      await api.setMember(user, newRole);
      setNewUser('');
      changed(user);
    } catch (e) {
      setAddError(errorText(e));
    }
    await load();
    setBusy(null);
  };

  const listed = members?.some(m => m.user === props.me.user);
  return (
    <section className="fo-team-section" data-testid="team-members">
      {loadError ? (
        <div className="fo-p-banner fo-p-banner-error" role="alert">
          {loadError}
        </div>
      ) : null}
      {members && !listed ? (
        <div className="fo-p-muted fo-team-note" data-testid="team-default-role">
          You are {props.me.role} as this server's Jupyter user, with no membership of your own. Add yourself as an admin to stay one
          whatever the server's default role.
        </div>
      ) : null}
      {members === null && !loadError ? <div className="fo-p-empty">Reading the members…</div> : null}
      {members ? (
        <table className="fo-dash-table fo-team-table">
          <thead>
            <tr>
              <th>user</th>
              <th>role</th>
              <th>added by</th>
              <th>since</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {members.length === 0 ? (
              <tr>
                <td colSpan={5} className="fo-p-muted">
                  No members yet.
                </td>
              </tr>
            ) : null}
            {members.map(m => (
              <React.Fragment key={m.user}>
                <tr data-testid="member-row" data-user={m.user} data-role={m.role}>
                  <td>
                    <code>{m.user}</code>
                    {m.user === props.me.user ? <span className="fo-p-muted"> (you)</span> : null}
                  </td>
                  <td>
                    <select
                      className="fo-p-input"
                      data-testid="member-role"
                      value={m.role}
                      disabled={busy !== null}
                      title={ROLE_HELP[m.role]}
                      onChange={e => void setRole(m.user, e.target.value as Role)}
                    >
                      {ROLES.map(r => (
                        <option key={r} value={r}>
                          {r}
                        </option>
                      ))}
                    </select>
                  </td>
                  <td>
                    <code>{m.added_by}</code>
                  </td>
                  <td>{fmtDateTime(m.added_at)}</td>
                  <td>
                    <button className="fo-pbtn" data-testid="member-remove" disabled={busy !== null} onClick={() => void remove(m.user)}>
                      Remove
                    </button>
                  </td>
                </tr>
                {rowError?.user === m.user ? (
                  <tr className="fo-team-row-error">
                    <td colSpan={5} className="fo-p-error-text" data-testid="member-error" role="alert">
                      {rowError.text}
                    </td>
                  </tr>
                ) : null}
              </React.Fragment>
            ))}
            {rowError && !members.some(m => m.user === rowError.user) ? (
              <tr className="fo-team-row-error">
                <td colSpan={5} className="fo-p-error-text" data-testid="member-error" role="alert">
                  {rowError.user}: {rowError.text}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      ) : null}
      <form className="fo-team-add" onSubmit={ev => void add(ev)}>
        <b>Add a member</b>
        <input
          className="fo-p-input"
          data-testid="member-add-user"
          placeholder="user name"
          value={newUser}
          onChange={e => setNewUser(e.target.value)}
        />
        <select className="fo-p-input" data-testid="member-add-role" value={newRole} onChange={e => setNewRole(e.target.value as Role)}>
          {ROLES.map(r => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </select>
        <button className="fo-pbtn" type="submit" data-testid="member-add" disabled={busy !== null}>
          Add
        </button>
        <span className="fo-p-muted">{ROLE_HELP[newRole]}</span>
      </form>
      {addError ? (
        <div className="fo-p-error-text fo-team-add-error" data-testid="member-add-error" role="alert">
          {addError}
        </div>
      ) : null}
    </section>
  );
}

function Audit(): JSX.Element {
  const [actorDraft, setActorDraft] = React.useState('');
  const [actor, setActor] = React.useState('');
  const [action, setAction] = React.useState('');
  const [entries, setEntries] = React.useState<AuditEntry[] | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [loading, setLoading] = React.useState(false);
  const seq = React.useRef(0);

  const load = React.useCallback(async (filters: { actor: string; action: string }) => {
    const n = ++seq.current;
    setLoading(true);
    try {
      const got = await api.audit({ actor: filters.actor || undefined, action: filters.action || undefined, limit: AUDIT_LIMIT });
      if (n === seq.current) {
        setEntries(got);
        setError(null);
      }
    } catch (e) {
      if (n === seq.current) {
        setError(`Could not read the audit log: ${errorText(e)}`);
      }
    }
    if (n === seq.current) {
      setLoading(false);
    }
  }, []);

  React.useEffect(() => {
    void load({ actor, action });
    // A counter, not a node: bumping the live value voids the answers still on the way.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    return () => void seq.current++;
  }, [actor, action, load]);

  // The actor filter applies a moment after typing stops (or at once on Enter).
  React.useEffect(() => {
    const t = window.setTimeout(() => setActor(actorDraft.trim()), 400);
    return () => window.clearTimeout(t);
  }, [actorDraft]);

  return (
    <section className="fo-team-section" data-testid="team-audit" data-loading={loading ? 'true' : 'false'} data-actor={actor} data-action={action}>
      <div className="fo-team-filters">
        <label>
          <span className="fo-p-muted">actor </span>
          <input
            className="fo-p-input"
            data-testid="audit-actor"
            placeholder="any user"
            value={actorDraft}
            onChange={e => setActorDraft(e.target.value)}
            onKeyDown={e => e.key === 'Enter' && setActor(actorDraft.trim())}
          />
        </label>
        <label>
          <span className="fo-p-muted">action </span>
          <select className="fo-p-input" data-testid="audit-action" value={action} onChange={e => setAction(e.target.value)}>
            <option value="">any</option>
            {ACTION_FAMILIES.map(f => (
              <option key={f} value={f}>
                {f}*
              </option>
            ))}
          </select>
        </label>
        <button
          className="fo-pbtn"
          data-testid="audit-refresh"
          disabled={loading}
          onClick={() => {
            const a = actorDraft.trim();
            if (a !== actor) {
              setActor(a); // the effect reads it
            } else {
              void load({ actor, action });
            }
          }}
        >
          {loading ? 'Refreshing…' : 'Refresh'}
        </button>
        <span className="fo-p-muted">newest first, at most {AUDIT_LIMIT}</span>
      </div>
      {error ? (
        <div className="fo-p-banner fo-p-banner-error" role="alert">
          {error}
        </div>
      ) : null}
      {entries === null && !error ? <div className="fo-p-empty">Reading the audit log…</div> : null}
      {entries ? (
        <table className="fo-dash-table fo-team-table">
          <thead>
            <tr>
              <th>when</th>
              <th>actor</th>
              <th>action</th>
              <th>target</th>
              <th>detail</th>
            </tr>
          </thead>
          <tbody>
            {entries.length === 0 ? (
              <tr>
                <td colSpan={5} className="fo-p-muted" data-testid="audit-empty">
                  Nothing recorded{actor || action ? ' that matches the filters' : ''}.
                </td>
              </tr>
            ) : null}
            {entries.map(e => (
              <tr key={e.id} data-testid="audit-row" data-actor={e.actor} data-action={e.action} data-target={e.target}>
                <td>{fmtDateTime(e.timestamp)}</td>
                <td>
                  <code>{e.actor}</code>
                </td>
                <td>
                  <code>{e.action}</code>
                </td>
                <td>
                  <code>{e.target}</code>
                </td>
                <td className="fo-team-detail">{detailText(e.detail)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

/** A detail as one line: `role: viewer, was: editor`. */
function detailText(detail: AuditEntry['detail']): string {
  if (!detail) {
    return '';
  }
  return Object.entries(detail)
    .filter(([, v]) => v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0))
    .map(([k, v]) => `${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(', ');
}
