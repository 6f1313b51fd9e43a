/**
 * A Run panel's data. It lives in a `RunSession`, owned by its widget rather than by React: the
 * status socket (or a poll every second), the trace refresh and the log tail keep running, and
 * the log cursor stays right, when JupyterLab unmounts and remounts the React tree (a tab moved
 * to another area).
 */
import { api, ApiError, isFinal, type NodeRun, type RunRecord } from '../api';
import { errorText } from './format';

const POLL_MS = 1000; // status (without the socket) and trace refresh while a run runs
const MAX_LOGS = 50_000; // kept in memory per panel; older lines are dropped first

/** One row of `GET /runs/{id}/trace` (server/floworch_server/trace.py `segments`). */
export interface Segment {
  node: string;
  type: string;
  kind: string; // trigger, activity, timer, approval, control, skipped
  iteration: string | null;
  attempt: number;
  scheduled: string | null;
  started: string | null;
  ended: string | null;
  status: string; // success, failed, running, waiting, cancelled, skipped
  error: string | null;
  ended_open?: boolean; // still open: `ended` is the time of the read
}

/** One message of the logs socket: `{"type": "log", "record": LogRecord}` (store.logs row). */
export interface LogRecord {
  id: number;
  timestamp: string;
  run_id: string;
  node: string;
  attempt: number | null;
  level: string;
  message: string;
  trace_id: string | null;
  extra: { [k: string]: unknown } | null;
}

/** trace.failure_chain: outermost first. */
interface FailureLink {
  message: string;
  type: string;
  stack_trace: string;
}

interface NodeCall {
  config: unknown;
  inputs: unknown;
  output: unknown;
  error: FailureLink[] | null;
}

/** `GET /runs/{id}/nodes/{node}` (FlowService.inspect). */
export interface Inspection {
  node: string;
  type: string;
  status: NodeRun;
  config: unknown;
  calls: { [activityId: string]: NodeCall };
  state: unknown;
  run?: {
    memo?: unknown;
    search_attributes?: { [k: string]: unknown };
    plan_hash?: string | null;
    version?: string | null;
  };
}

type LogState = 'connecting' | 'live' | 'reconnecting' | 'ended';

/**
 * Everything a Run panel shows, kept up to date: the run (status socket, or a poll every
 * second without it), the trace (every second until the run is final, then once more), the log
 * tail (cursor-based: a reconnect asks for what came after the last record it holds, so there
 * is no gap and no duplicate) and the inspected node.
 */
export class RunSession {
  run: RunRecord | null = null;
  runError: string | null = null;
  notFound = false;
  following: 'socket' | 'polling' | 'done' = 'socket';
  segments: Segment[] = [];
  traceLoaded = false;
  traceError: string | null = null;
  logs: LogRecord[] = [];
  logCursor = 0;
  logsDropped = 0;
  logState: LogState = 'connecting';
  logError: string | null = null;
  logReconnects = 0;
  selected: string | null = null;
  /** Set by `focus`: the inspector brings itself into view once it has read this node. */
  reveal: string | null = null;
  inspection: Inspection | null = null;
  inspectionError: string | null = null;
  inspecting = false;
  /** The run part of the last inspection (memo, search attributes, plan): run-wide. */
  runInfo: Inspection['run'] | null = null;

  private version = 0;
  private listeners = new Set<() => void>();
  private disposed = false;
  private started = false;
  private statusSocket: WebSocket | null = null;
  private logSocket: WebSocket | null = null;
  private logBackoff = 0;
  private timers = new Map<number, () => void>();
  private emitTimer: number | undefined;
  private inspectSeq = 0;
  private selectedStatus = '';

  constructor(readonly runId: string) {}

  get isDisposed(): boolean {
    return this.disposed;
  }

  get final(): boolean {
    return this.run !== null && isFinal(this.run.status);
  }

  start(): void {
    if (this.started || this.disposed) {
      return;
    }
    this.started = true;
    this.followStatus();
    void this.traceLoop();
    this.connectLogs();
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getVersion = (): number => this.version;

  select(node: string | null): void {
    if (node === this.selected && node !== null) {
      return;
    }
    this.selected = node;
    this.inspection = null;
    this.inspectionError = null;
    this.selectedStatus = this.nodeStatusKey(node);
    this.emit(true);
    if (node !== null) {
      void this.inspect();
    }
  }

  /** Select `node` and have the inspector come into view with it (e.g. the node a run failed at). */
  focus(node: string): void {
    this.reveal = node;
    if (node === this.selected) {
      this.emit(true);
      return;
    }
    this.select(node);
  }

  refreshInspection(): void {
    if (this.selected !== null) {
      void this.inspect();
    }
  }

  /** Reconnect the log tail now (after the cursor), e.g. from the panel's button. */
  reconnectLogs(): void {
    if (this.disposed || this.logState === 'ended') {
      return;
    }
    this.logBackoff = 0;
    const socket = this.logSocket;
    this.logSocket = null;
    socket?.close();
    this.connectLogs();
  }

  dispose(): void {
    if (this.disposed) {
      return;
    }
    this.disposed = true;
    this.statusSocket?.close();
    this.logSocket?.close();
    this.statusSocket = this.logSocket = null;
    this.timers.forEach((wake, id) => {
      window.clearTimeout(id);
      wake();
    });
    this.timers.clear();
    window.clearTimeout(this.emitTimer);
    this.listeners.clear();
  }

  // -------------------------------------------------------------- internals
  /** Tell the view; bursts (a log backlog) are coalesced into one render. */
  private emit(now = false): void {
    if (this.disposed) {
      return;
    }
    const fire = () => {
      this.emitTimer = undefined;
      this.version++;
      this.listeners.forEach(listener => listener());
    };
    if (now) {
      window.clearTimeout(this.emitTimer);
      fire();
    } else if (this.emitTimer === undefined) {
      this.emitTimer = window.setTimeout(fire, 40);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise(resolve => {
      const id = window.setTimeout(() => {
        this.timers.delete(id);
        resolve();
      }, ms);
      this.timers.set(id, resolve);
    });
  }

  private later(fn: () => void, ms: number): void {
    void this.sleep(ms).then(() => {
      if (!this.disposed) {
        fn();
      }
    });
  }

  private nodeStatusKey(node: string | null): string {
    const found = node === null ? undefined : this.run?.nodes?.find(n => n.node === node);
    return found ? JSON.stringify([found.status, found.attempts, found.ended, found.error]) : '';
  }

  private setRun(run: RunRecord): void {
    this.run = run;
    this.runError = null;
    if (this.selected !== null) {
      const key = this.nodeStatusKey(this.selected);
      if (key !== this.selectedStatus) {
        this.selectedStatus = key;
        void this.inspect(); // the node moved on: what it got and gave back may have too
      }
    }
    this.emit(true);
  }

  private followStatus(): void {
    let socket: WebSocket;
    try {
      socket = new WebSocket(api.runStatusSocket(this.runId));
    } catch (e) {
      void this.pollRun(errorText(e));
      return;
    }
    this.statusSocket = socket;
    socket.onmessage = ev => {
      let data: any;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (data && (data.type === 'error' || (data.error && !data.run_id && !data.run))) {
        this.runError = String(data.error);
        this.emit(true);
        return;
      }
      // {"type": "run", "run": {...}} (floworch_ext/status.py); a bare record is taken too.
      const run = data?.type === 'run' ? data.run : data;
      if (run && typeof run.status === 'string') {
        this.setRun(run as RunRecord);
      }
    };
    socket.onclose = ev => {
      if (this.statusSocket === socket) {
        this.statusSocket = null;
      }
      if (this.disposed) {
        return;
      }
      if (ev.code === 4404) {
        this.notFound = true;
        this.following = 'done';
        this.runError = this.runError ?? `there is no run '${this.runId}'`;
        this.emit(true);
        return;
      }
      if (this.final) {
        this.following = 'done';
        this.emit(true);
        return;
      }
      // Refused (a proxy without websockets, 503 before the services are up) or dropped.
      void this.pollRun();
    };
  }

  private async pollRun(reason?: string): Promise<void> {
    this.following = 'polling';
    if (reason) {
      this.runError = reason;
    }
    this.emit(true);
    while (!this.disposed) {
      try {
        this.setRun(await api.run(this.runId));
        if (this.final) {
          this.following = 'done';
          this.emit(true);
          return;
        }
      } catch (e) {
        if (this.disposed) {
          return;
        }
        this.runError = errorText(e);
        if (e instanceof ApiError && e.status === 404) {
          this.notFound = true;
          this.following = 'done';
          this.emit(true);
          return;
        }
        this.emit(true);
      }
      await this.sleep(POLL_MS);
    }
  }

  private async traceLoop(): Promise<void> {
    while (!this.disposed) {
      // A read that starts once the run is final is complete: it is the last one.
      const last = this.final || this.notFound;
      try {
        const data = await api.trace(this.runId);
        if (this.disposed) {
          return;
        }
        this.segments = (data?.segments ?? []) as Segment[];
        this.traceLoaded = true;
        this.traceError = null;
      } catch (e) {
        if (this.disposed) {
          return;
        }
        this.traceError = errorText(e);
      }
      this.emit(true);
      if (last) {
        return;
      }
      await this.sleep(POLL_MS);
    }
  }

  private connectLogs(): void {
    if (this.disposed || this.logState === 'ended') {
      return;
    }
    let socket: WebSocket;
    try {
      socket = new WebSocket(api.runLogsSocket(this.runId, this.logCursor));
    } catch (e) {
      this.logError = errorText(e);
      this.logState = 'reconnecting';
      this.emit(true);
      return;
    }
    this.logSocket = socket;
    socket.onopen = () => {
      if (this.logSocket !== socket) {
        return;
      }
      this.logState = 'live';
      this.logError = null;
      this.emit(true);
    };
    socket.onmessage = ev => {
      if (this.logSocket !== socket) {
        return;
      }
      let data: any;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (data?.type === 'log' && data.record) {
        const record = data.record as LogRecord;
        // Store order, ids increasing: anything at or below the cursor is already here.
        if (typeof record.id === 'number' && record.id > this.logCursor) {
          this.logs.push(record);
          this.logCursor = record.id;
          if (this.logs.length > MAX_LOGS) {
            const drop = this.logs.length - MAX_LOGS;
            this.logs.splice(0, drop);
            this.logsDropped += drop;
          }
        }
        this.logBackoff = 0;
        this.emit();
      } else if (data?.type === 'end') {
        if (typeof data.after === 'number' && data.after > this.logCursor) {
          this.logCursor = data.after;
        }
        this.logState = 'ended';
        this.emit(true);
      } else if (data?.error) {
        this.logError = String(data.error);
        this.emit(true);
      }
    };
    socket.onclose = ev => {
      if (this.logSocket !== socket) {
        return; // replaced by reconnectLogs
      }
      this.logSocket = null;
      if (this.disposed || this.logState === 'ended') {
        return;
      }
      this.logState = 'reconnecting';
      this.logReconnects++;
      if (ev.reason) {
        this.logError = ev.reason;
      }
      this.emit(true);
      const delay = Math.min(5000, 250 * 2 ** Math.min(this.logBackoff++, 5));
      this.later(() => this.connectLogs(), delay);
    };
  }

  private async inspect(): Promise<void> {
    const node = this.selected;
    if (node === null) {
      return;
    }
    const seq = ++this.inspectSeq;
    this.inspecting = true;
    this.emit(true);
    try {
      const found = (await api.inspect(this.runId, node)) as Inspection;
      if (this.disposed || seq !== this.inspectSeq) {
        return;
      }
      this.inspection = found;
      this.inspectionError = null;
      if (found.run) {
        this.runInfo = found.run;
      }
    } catch (e) {
      if (this.disposed || seq !== this.inspectSeq) {
        return;
      }
      this.inspectionError = errorText(e);
    }
    this.inspecting = false;
    this.emit(true);
  }
}
