/**
 * FlowOrchestrator's JupyterLab plugin: the `.flow` file type and its collaborative canvas
 * editor, "New Flow" in the launcher and the file browser, and the Run, Dashboard and Team panels.
 */
import { ICollaborativeContentProvider } from '@jupyter/collaborative-drive';
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';
import { FLOW_CONTENT_TYPE, FLOW_FILE_FORMAT, FlowModelFactory, FlowWidgetFactory, YFlowDoc } from './document';
import { registerPanels } from './panels';

const FACTORY = 'Flow Canvas';
const CATEGORY = 'FlowOrchestrator';

export const flowIcon = new LabIcon({
  name: 'floworch:flow',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="4" width="7" height="5" rx="1.5"/><rect x="15" y="4" width="7" height="5" rx="1.5"/>' +
    '<rect x="8.5" y="15" width="7" height="5" rx="1.5"/>' +
    '<path d="M9 6h6v1.2H9zM18 9h1.2v3.5H12.6V15h-1.2v-3.7H18z"/></g></svg>'
});

function emptyFlow(name: string): string {
  // As the server saves a flow: sorted keys, two-space indent, trailing newline.
  const doc = { edges: [], meta: { id: crypto.randomUUID(), name }, nodes: [], version: 1 };
  return JSON.stringify(doc, null, 2) + '\n';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'floworch:plugin',
  description: 'The flow canvas, run panel and dashboard of FlowOrchestrator',
  autoStart: true,
  optional: [ICollaborativeContentProvider, ILauncher, IFileBrowserFactory],
  activate: (
    app: JupyterFrontEnd,
    contentProvider: ICollaborativeContentProvider | null,
    launcher: ILauncher | null,
    browsers: IFileBrowserFactory | null
  ) => {
    if (contentProvider) {
      contentProvider.sharedModelFactory.registerDocumentFactory(FLOW_CONTENT_TYPE as any, () => new YFlowDoc());
    } else {
      console.warn('FlowOrchestrator: real-time collaboration is off; .flow files open read-only in the canvas.');
    }
    app.docRegistry.addFileType({
      name: 'flow',
      displayName: 'Flow',
      extensions: ['.flow'],
      mimeTypes: ['application/x-floworch-flow+json'],
      contentType: FLOW_CONTENT_TYPE as any,
      fileFormat: FLOW_FILE_FORMAT,
      icon: flowIcon
    });
    app.docRegistry.addModelFactory(new FlowModelFactory() as any);
    const openRunPanel = (runId: string) => void app.commands.execute('floworch:open-run', { runId });
    const factory = new FlowWidgetFactory(
      {
        name: FACTORY,
        label: 'Flow Canvas',
        modelName: 'floworch-flow-model',
        fileTypes: ['flow'],
        defaultFor: ['flow'],
        contentProviderId: contentProvider ? 'rtc' : undefined
      } as any,
      contentProvider,
      openRunPanel
    );
    factory.widgetCreated.connect((_, widget) => {
      widget.title.icon = flowIcon;
    });
    app.docRegistry.addWidgetFactory(factory);

    app.commands.addCommand('floworch:new-flow', {
      label: args => (args.isLauncher ? 'New Flow' : 'New Flow'),
      caption: 'A new flow, edited on the collaborative canvas',
      icon: flowIcon,
      execute: async args => {
        const cwd = (args.cwd as string) ?? browsers?.tracker.currentWidget?.model.path ?? '';
        const contents = app.serviceManager.contents;
        const model = await contents.newUntitled({ path: cwd, type: 'file', ext: '.flow' });
        const name = model.name.replace(/\.flow$/, '');
        await contents.save(model.path, { type: 'file', format: 'text', content: emptyFlow(name) });
        return app.commands.execute('docmanager:open', { path: model.path, factory: FACTORY });
      }
    });
    if (launcher) {
      launcher.add({ command: 'floworch:new-flow', category: CATEGORY, rank: 1 });
    }
    app.contextMenu.addItem({ command: 'floworch:new-flow', selector: '.jp-DirListing-content', rank: 55 });
    registerPanels(app, launcher);
  }
};

export default plugin;
