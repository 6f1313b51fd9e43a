/**
 * This page's role in its tenant (`GET /me`), as the canvas and the Team panel read it.
 *
 * The server is what enforces a role (REST routes answer 403, a viewer's document updates in a
 * room are dropped); the browser only reads it to show what one may do, so that a viewer is not
 * offered edits that would never reach anyone. It is read when a view opens, again when this
 * page is told the role may have changed (the Team panel changed a member, a request was
 * refused with 403), and when the page gets the focus back (an admin elsewhere may have changed it).
 */
import * as React from 'react';
import { api, type Me } from './api';

const ROLE_CHANGED = 'floworch:role-changed';

/** Tell every view of this page to read its role again. */
export function announceRoleChange(): void {
  window.dispatchEvent(new Event(ROLE_CHANGED));
}

/** True when `me` may change flows (an editor or an admin). Unknown (not read yet, or no
 * answer from an older server) counts as allowed: the server still refuses what is not. */
export function canEdit(me: Me | null): boolean {
  return me === null || me.role === 'editor' || me.role === 'admin';
}

export function useRole(): { me: Me | null; error: string | null; refresh: () => void } {
  const [me, setMe] = React.useState<Me | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const seq = React.useRef(0);
  const refresh = React.useCallback(() => {
    const n = ++seq.current;
    api.me().then(
      answer => {
        if (n === seq.current) {
          setMe(answer);
          setError(null);
        }
      },
      e => n === seq.current && setError(String(e.message ?? e))
    );
  }, []);
  React.useEffect(() => {
    refresh();
    window.addEventListener(ROLE_CHANGED, refresh);
    window.addEventListener('focus', refresh);
    return () => {
      // A counter, not a node: bumping the live value voids the answers still on the way.
      // eslint-disable-next-line react-hooks/exhaustive-deps
      seq.current++;
      window.removeEventListener(ROLE_CHANGED, refresh);
      window.removeEventListener('focus', refresh);
    };
  }, [refresh]);
  return { me, error, refresh };
}
