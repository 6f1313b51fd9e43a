/**
 * The notebook widget `fo.Canvas(flow)`: the same canvas, as an anywidget ESM. It joins the
 * flow's room from the browser, as a JupyterLab document does: asks jupyter-collaboration for
 * a session on the file, then speaks y-websocket to `text:flow:<fileId>`. Edits made by the
 * kernel (which joins the same room) show at once, even while a cell runs.
 */
import * as React from 'react';
import { createRoot } from 'react-dom/client';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { FlowCanvas } from './Canvas';
import { pageConfig, request } from './api';
import { Presence } from './presence';
import { SharedFlow, type Connection } from './sharedflow';

interface Model {
  get(name: string): any;
  on(event: string, cb: () => void): void;
}

class SocketConnection implements Connection {
  private listeners = new Set<() => void>();
  online: boolean;
  constructor(provider: WebsocketProvider) {
    // The provider may have connected already, before this listens.
    this.online = provider.wsconnected;
    provider.on('status', ({ status }: { status: string }) => {
      const online = status === 'connected';
      if (online !== this.online) {
        this.online = online;
        this.listeners.forEach(l => l());
      }
    });
  }
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

async function join(path: string): Promise<{ provider: WebsocketProvider; ydoc: Y.Doc }> {
  const session = await request<{ fileId: string; sessionId: string }>(`api/collaboration/session/${encodeURI(path)}`, {
    method: 'PUT',
    body: { format: 'text', type: 'flow' }
  });
  const ydoc = new Y.Doc();
  const { wsUrl, token } = pageConfig();
  const params: { [k: string]: string } = { sessionId: session.sessionId };
  if (token) {
    params.token = token;
  }
  const provider = new WebsocketProvider(new URL('api/collaboration/room', wsUrl).href, `text:flow:${session.fileId}`, ydoc, {
    params,
    disableBc: true
  });
  try {
    const me = await request<{ identity: any }>('api/me');
    provider.awareness.setLocalStateField('user', me.identity);
  } catch {
    // Presence without a name is still presence.
  }
  return { provider, ydoc };
}

function render({ model, el }: { model: Model; el: HTMLElement }): () => void {
  const path: string = model.get('path');
  const height: number = model.get('height') || 520;
  el.classList.add('fo-widget');
  el.style.height = `${height}px`;
  const root = createRoot(el);
  root.render(<div className="fo-muted fo-widget-loading">Joining {path}…</div>);
  let provider: WebsocketProvider | null = null;
  join(path).then(
    joined => {
      provider = joined.provider;
      const connection = new SocketConnection(joined.provider);
      const shared = new SharedFlow(joined.ydoc, connection);
      const presence = new Presence(joined.provider.awareness);
      root.render(<FlowCanvas shared={shared} presence={presence} path={path} compact />);
    },
    e => root.render(<div className="fo-banner fo-banner-error">Could not open {path} on the canvas: {String(e.message ?? e)}</div>)
  );
  return () => {
    provider?.destroy();
    root.unmount();
  };
}

export default { render };
