/**
 * Presence through Yjs awareness: who is here (their Jupyter identity: name and colour), where
 * their pointer is on the canvas, what they have selected, and which node they are editing.
 * A node someone edits is softly locked: others see who and since when, and may take it over
 * after confirming. The newest claim on a node holds it.
 */
import type { Awareness } from 'y-protocols/awareness';

export interface Identity {
  name: string;
  display_name?: string;
  color?: string;
  initials?: string;
  username?: string;
}

export interface PresenceState {
  cursor: { x: number; y: number } | null;
  selection: string[];
  editing: { node: string; since: number } | null;
}

export interface Peer {
  clientId: number;
  user: Identity;
  presence: PresenceState;
}

export interface Lock {
  clientId: number;
  user: Identity;
  since: number;
}

const FIELD = 'floworch';
const EMPTY: PresenceState = { cursor: null, selection: [], editing: null };

export function userName(user: Identity | undefined): string {
  return user?.display_name || user?.name || user?.username || 'anonymous';
}

export class Presence {
  constructor(readonly awareness: Awareness) {}

  get clientId(): number {
    return this.awareness.clientID;
  }

  local(): PresenceState {
    return { ...EMPTY, ...(this.awareness.getLocalState()?.[FIELD] ?? {}) };
  }

  set(change: Partial<PresenceState>): void {
    this.awareness.setLocalStateField(FIELD, { ...this.local(), ...change });
  }

  /** Everyone else in the room who has a canvas open. */
  peers(): Peer[] {
    const peers: Peer[] = [];
    this.awareness.getStates().forEach((state, clientId) => {
      if (clientId !== this.clientId && state?.[FIELD]) {
        peers.push({ clientId, user: state.user ?? { name: 'anonymous' }, presence: { ...EMPTY, ...state[FIELD] } });
      }
    });
    return peers;
  }

  /** Who holds each node: the newest claim, this client's own included. */
  locks(): Map<string, Lock> {
    const locks = new Map<string, Lock>();
    this.awareness.getStates().forEach((state, clientId) => {
      const editing = state?.[FIELD]?.editing;
      if (editing && typeof editing.node === 'string') {
        const held = locks.get(editing.node);
        if (!held || editing.since > held.since || (editing.since === held.since && clientId > held.clientId)) {
          locks.set(editing.node, { clientId, user: state.user ?? { name: 'anonymous' }, since: editing.since });
        }
      }
    });
    return locks;
  }

  /**
   * Calls `listener` when someone else's presence changed, or this client's claim on a node:
   * this client's own pointer moves (many a second while panning) redraw nothing.
   */
  onChange(listener: () => void): () => void {
    let editing = JSON.stringify(this.local().editing);
    const handler = (change: { added: number[]; updated: number[]; removed: number[] }) => {
      const others = [...change.added, ...change.updated, ...change.removed].some(id => id !== this.clientId);
      const mine = JSON.stringify(this.local().editing);
      if (others || mine !== editing) {
        editing = mine;
        listener();
      }
    };
    this.awareness.on('change', handler);
    return () => this.awareness.off('change', handler);
  }
}
