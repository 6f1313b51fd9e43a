/**
 * The `.flow` document in JupyterLab: its shared model (registered with jupyter-collaboration
 * as the `flow` document type, so the server's room `text:flow:<fileId>` is the one kernels
 * join), the document model, and the widget that shows the canvas on it.
 */
import { DocumentChange, YDocument } from '@jupyter/ydoc';
import type { ICollaborativeContentProvider } from '@jupyter/collaborative-drive';
import { ReactWidget } from '@jupyterlab/apputils';
import { ABCWidgetFactory, DocumentRegistry, DocumentWidget } from '@jupyterlab/docregistry';
import type { Contents } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';
import * as React from 'react';
import { FlowCanvas } from './Canvas';
import { Presence } from './presence';
import { SharedFlow, type Connection } from './sharedflow';

export const FLOW_CONTENT_TYPE = 'flow';
export const FLOW_FILE_FORMAT: Contents.FileFormat = 'text';

export class YFlowDoc extends YDocument<DocumentChange> {
  readonly version = '1.0.0';

  getSource(): string {
    const meta = this.ydoc.getMap('meta').toJSON();
    const nodes = this.ydoc.getMap('nodes').toJSON();
    const edges = this.ydoc.getMap('edges').toJSON();
    return JSON.stringify({ version: 1, meta, nodes: Object.values(nodes), edges: Object.values(edges) });
  }

  setSource(): void {
    // The server loads and saves the file (floworch_ext.ydoc.YFlow): the browser never replaces it.
    throw new Error('a .flow document is loaded by the server');
  }
}

/** The document model JupyterLab's context holds; the content lives in the shared model. */
export class FlowModel implements DocumentRegistry.IModel {
  readonly collaborative = true;
  readonly sharedModel: YFlowDoc;
  private _dirty = false;
  private _readOnly = false;
  private _disposed = false;
  private _contentChanged = new Signal<this, void>(this);
  private _stateChanged = new Signal<this, any>(this);

  constructor(options: DocumentRegistry.IModelOptions<YFlowDoc>) {
    this.sharedModel = options.sharedModel ?? new YFlowDoc();
    this.sharedModel.changed.connect(() => this._contentChanged.emit());
  }

  get contentChanged(): ISignal<this, void> {
    return this._contentChanged;
  }
  get stateChanged(): ISignal<this, any> {
    return this._stateChanged;
  }
  get dirty(): boolean {
    return this._dirty;
  }
  set dirty(value: boolean) {
    this._dirty = value;
  }
  get readOnly(): boolean {
    return this._readOnly;
  }
  set readOnly(value: boolean) {
    this._readOnly = value;
  }
  get isDisposed(): boolean {
    return this._disposed;
  }
  get defaultKernelName(): string {
    return '';
  }
  get defaultKernelLanguage(): string {
    return '';
  }
  toString(): string {
    return this.sharedModel.getSource();
  }
  fromString(): void {
    // Loaded by the server into the room; see YFlowDoc.setSource.
  }
  toJSON(): any {
    return JSON.parse(this.toString());
  }
  fromJSON(): void {
    // As fromString.
  }
  initialize(): void {
    // Nothing to do: the room brings the content.
  }
  dispose(): void {
    if (!this._disposed) {
      this._disposed = true;
      Signal.clearData(this);
    }
  }
}

export class FlowModelFactory implements DocumentRegistry.IModelFactory<FlowModel> {
  readonly name = 'floworch-flow-model';
  readonly contentType = FLOW_CONTENT_TYPE as Contents.ContentType;
  readonly fileFormat = FLOW_FILE_FORMAT;
  readonly collaborative = true;
  private _disposed = false;

  get isDisposed(): boolean {
    return this._disposed;
  }
  dispose(): void {
    this._disposed = true;
  }
  preferredLanguage(): string {
    return '';
  }
  createNew(options: DocumentRegistry.IModelOptions<YFlowDoc>): FlowModel {
    return new FlowModel(options);
  }
}

/** The room's websocket status, read from jupyter-collaboration's provider for this file. */
class ProviderConnection implements Connection {
  private listeners = new Set<() => void>();
  private provider: any = null;
  private _online = true;

  constructor(contentProvider: ICollaborativeContentProvider | null, path: () => string) {
    const attach = () => {
      const key = `${FLOW_FILE_FORMAT}:${FLOW_CONTENT_TYPE}:${path()}`;
      const ws = (contentProvider?.providers.get(key) as any)?.wsProvider;
      if (ws && ws !== this.provider) {
        this.provider = ws;
        this.set(!!ws.wsconnected);
        ws.on('status', ({ status }: { status: string }) => this.set(status === 'connected'));
      }
    };
    attach();
    // The provider is made while the document opens, after this widget may exist.
    const timer = window.setInterval(() => {
      attach();
      if (this.provider) {
        window.clearInterval(timer);
      }
    }, 200);
  }

  private set(online: boolean): void {
    if (online !== this._online) {
      this._online = online;
      this.listeners.forEach(l => l());
    }
  }

  get online(): boolean {
    return this._online;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export class FlowWidgetFactory extends ABCWidgetFactory<DocumentWidget<ReactWidget, FlowModel>, FlowModel> {
  constructor(
    options: DocumentRegistry.IWidgetFactoryOptions,
    private contentProvider: ICollaborativeContentProvider | null,
    private openRunPanel: (runId: string) => void
  ) {
    super(options);
  }

  protected createNewWidget(context: DocumentRegistry.IContext<FlowModel>): DocumentWidget<ReactWidget, FlowModel> {
    const connection = new ProviderConnection(this.contentProvider, () => context.path);
    const model = context.model.sharedModel;
    const shared = new SharedFlow(model.ydoc, connection);
    const presence = new Presence(model.awareness);
    const content = ReactWidget.create(
      React.createElement(FlowCanvas, { shared, presence, path: context.path, openRunPanel: this.openRunPanel })
    );
    content.addClass('fo-document');
    const widget = new DocumentWidget({ content, context });
    widget.title.iconClass = 'fo-flow-icon';
    return widget;
  }
}
