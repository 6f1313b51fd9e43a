/**
 * The Run panel (trace, logs, state inspector of one run) and the Dashboard panel: their widgets,
 * commands and launcher items. A Run panel's data lives in a `RunSession` owned by its widget, so
 * that it outlives the React tree (see session.ts).
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { InputDialog, MainAreaWidget, ReactWidget } from '@jupyterlab/apputils';
import type { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';
import * as React from 'react';
import { Dashboard } from './Dashboard';
import { RunPanel } from './RunPanel';
import { RunSession } from './session';

export { RunSession, type Inspection, type LogRecord, type Segment } from './session';
export type { AlertRecord, DashboardData } from './Dashboard';

const CATEGORY = 'FlowOrchestrator';
const CMD_OPEN_RUN = 'floworch:open-run';
const CMD_OPEN_RUN_PROMPT = 'floworch:open-run-prompt';
const CMD_DASHBOARD = 'floworch:dashboard';

export const runPanelIcon = new LabIcon({
  name: 'floworch:run-panel',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="4" width="9" height="3" rx="1"/><rect x="7" y="10" width="12" height="3" rx="1"/>' +
    '<rect x="13" y="16" width="9" height="3" rx="1"/><path d="M2 21h20v1H2z"/></g></svg>'
});

export const dashboardIcon = new LabIcon({
  name: 'floworch:dashboard',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="13" width="4" height="8" rx="1"/><rect x="10" y="8" width="4" height="13" rx="1"/>' +
    '<rect x="17" y="3" width="4" height="18" rx="1"/></g></svg>'
});

class RunPanelWidget extends ReactWidget {
  readonly session: RunSession;

  constructor(runId: string) {
    super();
    this.addClass('fo-rp-widget');
    this.session = new RunSession(runId);
    this.session.start();
  }

  render(): JSX.Element {
    return React.createElement(RunPanel, { session: this.session });
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.session.dispose();
    super.dispose();
  }
}

class DashboardWidget extends ReactWidget {
  constructor(private readonly openRun: (runId: string) => void) {
    super();
    this.addClass('fo-dash-widget');
  }

  render(): JSX.Element {
    return React.createElement(Dashboard, { openRun: this.openRun });
  }
}

function domId(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]/g, '_');
}

export function registerPanels(app: JupyterFrontEnd, launcher: ILauncher | null): void {
  const runPanels = new Map<string, MainAreaWidget<RunPanelWidget>>();
  let dashboard: MainAreaWidget<DashboardWidget> | null = null;

  const openRun = (runId: string): MainAreaWidget<RunPanelWidget> => {
    const existing = runPanels.get(runId);
    if (existing && !existing.isDisposed) {
      app.shell.activateById(existing.id);
      return existing;
    }
    const content = new RunPanelWidget(runId);
    const widget = new MainAreaWidget({ content });
    widget.id = `floworch-run-${domId(runId)}`;
    widget.title.label = `Run ${runId.slice(0, 12)}`;
    widget.title.caption = `Run ${runId}`;
    widget.title.icon = runPanelIcon;
    widget.title.closable = true;
    widget.addClass('fo-rp-main');
    const unsubscribe = content.session.subscribe(() => {
      const status = content.session.run?.status;
      widget.title.caption = `Run ${runId}${status ? ` — ${status}` : ''}`;
    });
    widget.disposed.connect(() => {
      unsubscribe();
      if (runPanels.get(runId) === widget) {
        runPanels.delete(runId);
      }
    });
    runPanels.set(runId, widget);
    app.shell.add(widget, 'main');
    app.shell.activateById(widget.id);
    return widget;
  };

  const promptForRun = async (): Promise<MainAreaWidget<RunPanelWidget> | undefined> => {
    const answer = await InputDialog.getText({
      title: 'Open Run',
      label: 'Run id',
      placeholder: 'run-…',
      okLabel: 'Open'
    });
    const runId = (answer.value ?? '').trim();
    if (!answer.button.accept || !runId) {
      return undefined;
    }
    return openRun(runId);
  };

  app.commands.addCommand(CMD_OPEN_RUN, {
    label: args => (args.runId ? `Run ${String(args.runId).slice(0, 12)}` : 'Open Run…'),
    caption: 'The trace, logs and state of one run',
    icon: runPanelIcon,
    execute: args => {
      const runId = typeof args.runId === 'string' ? args.runId.trim() : '';
      return runId ? openRun(runId) : promptForRun();
    }
  });

  app.commands.addCommand(CMD_OPEN_RUN_PROMPT, {
    label: 'Open Run…',
    caption: 'Open the trace, logs and state of a run by its id',
    icon: runPanelIcon,
    execute: () => promptForRun()
  });

  app.commands.addCommand(CMD_DASHBOARD, {
    label: 'Flow Dashboard',
    caption: 'Success rate, error budget, latency, throughput, task queues, workers and alerts',
    icon: dashboardIcon,
    execute: () => {
      if (dashboard && !dashboard.isDisposed) {
        app.shell.activateById(dashboard.id);
        return dashboard;
      }
      const widget = new MainAreaWidget({ content: new DashboardWidget(runId => void openRun(runId)) });
      widget.id = 'floworch-dashboard';
      widget.title.label = 'Flow Dashboard';
      widget.title.icon = dashboardIcon;
      widget.title.closable = true;
      widget.addClass('fo-dash-main');
      widget.disposed.connect(() => {
        if (dashboard === widget) {
          dashboard = null;
        }
      });
      dashboard = widget;
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
      return widget;
    }
  });

  if (launcher) {
    launcher.add({ command: CMD_OPEN_RUN_PROMPT, category: CATEGORY, rank: 2 });
    launcher.add({ command: CMD_DASHBOARD, category: CATEGORY, rank: 3 });
  }
}
