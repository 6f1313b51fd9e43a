/**
 * The Run panel (trace, logs, state inspector of one run), the Dashboard panel and the Team
 * panel (members, roles and the audit log): their widgets,
 * commands and launcher items. A Run panel's data lives in a `RunSession` owned by its widget, so
 * that it outlives the React tree (see session.ts).
 */
import type { JupyterFrontEnd } from '@jupyterlab/application';
import { InputDialog, MainAreaWidget, ReactWidget } from '@jupyterlab/apputils';
import type { ILauncher } from '@jupyterlab/launcher';
import { LabIcon } from '@jupyterlab/ui-components';
import * as React from 'react';
import { Dashboard, type OpenRun } from './Dashboard';
import { RunPanel } from './RunPanel';
import { RunSession } from './session';
import { TeamPanel } from './Team';

export { RunSession, type Inspection, type LogRecord, type Segment } from './session';
export type { AlertRecord, DashboardData } from './Dashboard';

const CATEGORY = 'FlowOrchestrator';
const CMD_OPEN_RUN = 'floworch:open-run';
const CMD_OPEN_RUN_PROMPT = 'floworch:open-run-prompt';
const CMD_DASHBOARD = 'floworch:dashboard';
const CMD_TEAM = 'floworch:open-team';

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

export const teamIcon = new LabIcon({
  name: 'floworch:team',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<circle cx="8" cy="8" r="3.5"/><circle cx="16.5" cy="9" r="3"/>' +
    '<path d="M1.5 20c0-3.6 2.9-6.5 6.5-6.5s6.5 2.9 6.5 6.5z"/><path d="M15.5 20c0-2.2-.8-4.2-2.1-5.7.9-.5 2-.8 3.1-.8 3 0 5.5 2.5 5.5 6.5z"/></g></svg>'
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
  constructor(private readonly openRun: OpenRun) {
    super();
    this.addClass('fo-dash-widget');
  }

  render(): JSX.Element {
    return React.createElement(Dashboard, { openRun: this.openRun });
  }
}

class TeamWidget extends ReactWidget {
  constructor() {
    super();
    this.addClass('fo-team-widget');
  }

  render(): JSX.Element {
    return React.createElement(TeamPanel);
  }
}

function domId(text: string): string {
  return text.replace(/[^A-Za-z0-9_-]/g, '_');
}

export function registerPanels(app: JupyterFrontEnd, launcher: ILauncher | null): void {
  const runPanels = new Map<string, MainAreaWidget<RunPanelWidget>>();
  let dashboard: MainAreaWidget<DashboardWidget> | null = null;
  let team: MainAreaWidget<TeamWidget> | null = null;

  // `node`: select it in the panel and bring its inspector into view (a failed run opened at
  // the node it failed at).
  const openRun = (runId: string, node?: string): MainAreaWidget<RunPanelWidget> => {
    const existing = runPanels.get(runId);
    if (existing && !existing.isDisposed) {
      app.shell.activateById(existing.id);
      if (node) {
        existing.content.session.focus(node);
      }
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
    if (node) {
      content.session.focus(node);
    }
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
    caption: 'The trace, logs and state of one run (args: runId, and node to select in it)',
    icon: runPanelIcon,
    execute: args => {
      const runId = typeof args.runId === 'string' ? args.runId.trim() : '';
      const node = typeof args.node === 'string' && args.node ? args.node : undefined;
      return runId ? openRun(runId, node) : promptForRun();
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
      const widget = new MainAreaWidget({ content: new DashboardWidget((runId, node) => void openRun(runId, node)) });
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

  app.commands.addCommand(CMD_TEAM, {
    label: 'Team',
    caption: 'Members and their roles (admins manage them), and the audit log',
    icon: teamIcon,
    execute: () => {
      if (team && !team.isDisposed) {
        app.shell.activateById(team.id);
        return team;
      }
      const widget = new MainAreaWidget({ content: new TeamWidget() });
      widget.id = 'floworch-team';
      widget.title.label = 'Team';
      widget.title.icon = teamIcon;
      widget.title.closable = true;
      widget.disposed.connect(() => {
        if (team === widget) {
          team = null;
        }
      });
      team = widget;
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
      return widget;
    }
  });

  if (launcher) {
    launcher.add({ command: CMD_OPEN_RUN_PROMPT, category: CATEGORY, rank: 2 });
    launcher.add({ command: CMD_DASHBOARD, category: CATEGORY, rank: 3 });
    launcher.add({ command: CMD_TEAM, category: CATEGORY, rank: 4 });
  }
}
