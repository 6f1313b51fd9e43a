"""`Run`: one execution of a flow on Temporal, seen from a notebook."""

from __future__ import annotations

import asyncio
import time
from html import escape
from typing import Any

import pandas as pd

from floworch_server.errors import FloworchError

from . import _html
from ._loop import run_async, run_sync
from ._service import service, user

FINAL = ("success", "failed", "cancelled")
NODE_COLUMNS = ["node", "type", "status", "attempts", "started", "ended", "error"]


class RunFailed(FloworchError):
    """``run.result()`` of a run that failed or was cancelled."""


class RunError(str):
    """The error of a failed run: reads as its message; ``.chain`` holds each cause, outermost
    first, as {message, type, stack_trace}; ``.stack`` is the innermost stack trace."""

    chain: list[dict]

    def __new__(cls, message: str, chain: list[dict]):
        obj = super().__new__(cls, message)
        obj.chain = chain
        return obj

    @property
    def stack(self) -> str:
        traces = [c["stack_trace"] for c in self.chain if c.get("stack_trace")]
        return traces[-1] if traces else ""

    def _repr_html_(self) -> str:
        parts = [f"<div style='color:#cf222e;font-weight:600'>{escape(str(self))}</div>"]
        for link in self.chain[1:]:
            parts.append(f"<div>caused by <b>{escape(link['type'] or '')}</b>: {escape(link['message'])}</div>")
            if link.get("stack_trace"):
                parts.append(f"<pre style='font-size:0.8em'>{escape(link['stack_trace'])}</pre>")
        return "".join(parts)


class Run:
    def __init__(self, run_id: str, record: dict | None = None):
        self.id = run_id
        self._record = record or {}

    def __repr__(self) -> str:
        return f"<Run {self.id} {self._record.get('status', '?')}>"

    # ------------------------------------------------------------------ state
    def refresh(self) -> Run:
        self._record = run_sync(service().get_run(self.id))
        return self

    async def refresh_async(self) -> Run:
        self._record = await run_async(service().get_run(self.id))
        return self

    @property
    def status(self) -> str:
        """queued, running, success, failed or cancelled (asks Temporal unless already final)."""
        if self._record.get("status") not in FINAL:
            self.refresh()
        return self._record["status"]

    @property
    def record(self) -> dict:
        return dict(self._record)

    @property
    def trace_id(self) -> str | None:
        """The run's OpenTelemetry trace id (None with tracing off): find its spans by it."""
        if "trace_id" not in self._record:
            self.refresh()
        return self._record.get("trace_id")

    @property
    def error(self) -> RunError | None:
        """Why the run failed: the message, and (``.chain``) each cause with its stack trace."""
        if self._record.get("status") not in FINAL:
            self.refresh()
        if self._record.get("status") != "failed":
            return None
        chain = run_sync(service().error(self.id)) or []
        return RunError(self._record.get("error") or (chain[0]["message"] if chain else "failed"), chain)

    # ------------------------------------------------------------------ observability
    def trace_df(self) -> pd.DataFrame:
        """One row per segment: each activity attempt, timer, approval wait and control step."""
        from . import trace

        return trace.frame(run_sync(service().trace(self.id)))

    def trace(self):
        """A Gantt chart of the run (a Plotly FigureWidget), updating itself while the run runs."""
        from . import trace

        fig = trace.figure(self.trace_df(), title=f"Run {self.id}", widget=True)
        if self.status not in FINAL:

            def fetch():
                data = self.trace_df()
                return data, self.status in FINAL

            trace.follow(fig, fetch)
        return fig

    def logs(self, level: str | None = None, node: str | None = None) -> pd.DataFrame:
        """The log lines nodes wrote, oldest first."""
        rows = service().store.list_logs(self.id, limit=100_000)
        frame = pd.DataFrame(
            rows, columns=["id", "timestamp", "node", "attempt", "level", "message", "trace_id", "extra"]
        )
        if level:
            frame = frame[frame["level"] == level]
        if node:
            frame = frame[frame["node"].str.split("#").str[0] == node]
        return frame.reset_index(drop=True)

    def tail(self, timeout: float | None = None) -> None:
        """Print the run's log lines as they are written, until the run ends."""
        store = service().store
        after = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            final = self.status in FINAL  # read first: every line of a finished run is stored by then
            for row in store.list_logs(self.id, after_id=after):
                after = row["id"]
                print(
                    f"{row['timestamp']:%H:%M:%S} {row['level'].upper():7} {row['node']}: {row['message']}", flush=True
                )
            if final or (deadline is not None and time.monotonic() > deadline):
                return
            time.sleep(0.2)

    def inspect(self, node_id: str) -> dict:
        """A node's config, what each call of it got and gave back, its state, and the run's memo."""
        return run_sync(service().inspect(self.id, node_id))

    def node_status(self) -> pd.DataFrame:
        """One row per node: node, type, status, attempts, started, ended, error."""
        self.refresh()
        return _node_frame(self._record.get("nodes", []))

    async def node_status_async(self) -> pd.DataFrame:
        await self.refresh_async()
        return _node_frame(self._record.get("nodes", []))

    # ------------------------------------------------------------------ waiting
    def wait(self, timeout: float | None = None, progress: bool = True) -> Run:
        """Block until the run ends (or waits on an approval it cannot pass alone), showing progress."""
        display = _Progress(self) if progress else None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.refresh()
            if display:
                display.update()
            if self._record["status"] in FINAL:
                if display:
                    display.close()  # the returned Run shows the final state itself
                return self
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} still {self._record['status']} after {timeout}s")
            time.sleep(0.25)

    async def wait_async(self, timeout: float | None = None) -> Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            await self.refresh_async()
            if self._record["status"] in FINAL:
                return self
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id} still {self._record['status']} after {timeout}s")
            await asyncio.sleep(0.25)

    def wait_for(self, node_id: str, status: str = "waiting", timeout: float = 60) -> Run:
        """Block until a node reaches a status, e.g. an approval node is ``waiting``."""
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            st = next((n for n in self._record.get("nodes", []) if n["node"] == node_id), None)
            if st is None:
                raise KeyError(f"run {self.id} has no node '{node_id}'")
            if st["status"] == status:
                return self
            if self._record["status"] in FINAL:
                raise RunFailed(f"run {self.id} ended ({self._record['status']}) before '{node_id}' was {status}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node '{node_id}' still {st['status']} after {timeout}s")
            time.sleep(0.2)

    def result(self, timeout: float | None = None) -> Any:
        """The outputs of the flow's last nodes; waits for the run; raises RunFailed if it failed."""
        if self._record.get("status") not in FINAL:
            self.wait(timeout, progress=False)
        return self._result()

    async def result_async(self, timeout: float | None = None) -> Any:
        if self._record.get("status") not in FINAL:
            await self.wait_async(timeout)
        return self._result()

    def _result(self) -> Any:
        if self._record["status"] != "success":
            raise RunFailed(f"run {self.id} {self._record['status']}: {self._record.get('error') or ''}".rstrip(": "))
        return (self._record.get("result") or {}).get("outputs")

    # ------------------------------------------------------------------ debugging
    def replay(self, plan: Any = None) -> ReplayResult:
        """Replay this run's history against the current interpreter: is it deterministic, and
        where does it diverge if not. ``plan=flow.draft`` (a flow, a document or a compiled plan)
        asks whether the edited draft would still replay this run."""
        from floworch_server import debug

        return ReplayResult(run_sync(debug.replay(service(), self.id, _plan_of(plan) if plan is not None else None)))

    def node(self, node_id: str) -> RunNode:
        """One node of this run, to look at again or re-run here (``.rerun_here()``)."""
        return RunNode(self, node_id)

    # ------------------------------------------------------------------ actions
    def approve(self, node_id: str, by: str | None = None, comment: str = "") -> dict:
        return run_sync(service().approve(self.id, node_id, decision="approved", by=by or user(), comment=comment))

    def reject(self, node_id: str, by: str | None = None, comment: str = "") -> dict:
        return run_sync(service().approve(self.id, node_id, decision="rejected", by=by or user(), comment=comment))

    async def approve_async(
        self, node_id: str, by: str | None = None, comment: str = "", decision: str = "approved"
    ) -> dict:
        return await run_async(service().approve(self.id, node_id, decision=decision, by=by or user(), comment=comment))

    def cancel(self) -> dict:
        return run_sync(service().cancel(self.id, by=user()))

    async def cancel_async(self) -> dict:
        return await run_async(service().cancel(self.id, by=user()))

    def retry(self, mode: str = "start", version: str = "same") -> Run:
        """Retry this failed run: a new run from the start ("start") or from the failed node,
        reusing the recorded outputs of the nodes before it ("resume"); on the version it ran
        ("same") or the latest published one ("latest"). The same retry again returns the same run."""
        from .deadletters import retry

        return retry([self.id], mode=mode, version=version)[0]

    # ------------------------------------------------------------------ display
    def _repr_html_(self) -> str:
        r = self._record
        lines = [
            f"status {_html.badge(r.get('status', '?'))}",
            f"flow <code>{escape(str(r.get('workflow_id')))}</code> version {escape(str(r.get('version')))} "
            f"· plan <code>{escape(str(r.get('plan_hash', ''))[:12])}</code>",
        ]
        if r.get("error"):
            lines.append(f"<span style='color:#cf222e'>{escape(r['error'])}</span>")
        nodes = r.get("nodes") or []
        inner = _nodes_table(nodes) if nodes else ""
        return _html.card(f"Run <code>{escape(self.id)}</code>", lines, inner)


def _node_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[*NODE_COLUMNS, "detail"])[NODE_COLUMNS]
    for col in ("started", "ended"):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame


def _nodes_table(nodes: list[dict]) -> str:
    return _html.table(
        ["node", "type", "status", "attempts", "error"],
        [
            [
                escape(n["node"]),
                escape(n["type"]),
                _html.badge(n["status"]),
                n["attempts"],
                escape(n.get("error") or ""),
            ]
            for n in nodes
        ],
        raw={0, 1, 2, 4},
    )


class _Progress:
    """Live progress of a waiting run: one output area updated in place in a notebook."""

    def __init__(self, run: Run):
        self.run = run
        self.handle = None
        self.last: str | None = None
        try:
            from IPython import get_ipython

            if get_ipython() is not None and getattr(get_ipython(), "kernel", None) is not None:
                from IPython.display import HTML, display

                self.handle = display(HTML(""), display_id=True)
                self._html = HTML
        except ImportError:
            pass

    def close(self) -> None:
        if self.handle is not None:
            self.handle.update(self._html(""))

    def update(self) -> None:
        if self.handle is None:
            return
        html = self.run._repr_html_()
        if html != self.last:
            self.last = html
            self.handle.update(self._html(html))


# ---------------------------------------------------------------------- debugging
def _plan_of(plan: Any) -> dict:
    """The plan data of what ``replay(plan=...)`` was given: a Flow (its draft), a document or a plan."""
    from floworch_server.flowdoc import FlowDocument, parse_data
    from floworch_server.plan import Plan, compile_plan
    from floworch_server.problems import FlowInvalid

    draft = getattr(plan, "draft", None)
    if isinstance(draft, Plan):
        return draft.to_data()
    if isinstance(plan, Plan):
        return plan.to_data()
    if isinstance(plan, FlowDocument):
        return compile_plan(plan).to_data()
    if isinstance(plan, dict) and isinstance(plan.get("nodes"), list):  # a .flow document's JSON
        doc, problems = parse_data(plan)
        if problems or doc is None:
            raise FlowInvalid(problems, source="document")
        return compile_plan(doc).to_data()
    return plan


class ReplayResult:
    """What ``run.replay()`` found: ``deterministic`` (also its truth value), and ``divergence``
    ({event_id, node, draft_node, reason, message}) when the history does not replay."""

    def __init__(self, data: dict):
        self.data = data
        self.deterministic: bool = data["deterministic"]
        self.divergence: dict | None = data["divergence"]
        self.plan_changes: dict | None = data["plan_changes"]

    def __bool__(self) -> bool:
        return self.deterministic

    @property
    def node(self) -> str | None:
        """The node where the replay diverged (None when it replays)."""
        return (self.divergence or {}).get("node")

    def __repr__(self) -> str:
        if self.deterministic:
            return f"<ReplayResult {self.data['run_id']}: deterministic ({self.data['events']} events)>"
        return f"<ReplayResult {self.data['run_id']}: diverges: {(self.divergence or {}).get('reason')}>"

    def _repr_html_(self) -> str:
        d = self.data
        what = "with the given plan" if d["with_plan"] else "against the current interpreter"
        if self.deterministic:
            lines = [f"<span style='color:#2da44e'>✓ replays deterministically</span> {what} ({d['events']} events)"]
        else:
            div = self.divergence or {}
            lines = [f"<span style='color:#cf222e;font-weight:600'>✗ diverges</span> {what}", escape(div["reason"])]
            lines.append(f"<span style='font-size:0.85em;color:#57606a'>Temporal: {escape(div['message'])}</span>")
        changes = self.plan_changes
        if changes and not changes["same"]:
            parts = [
                f"{k.replace('_', ' ')}: {', '.join(v if isinstance(v[0], str) else [c['node'] for c in v])}"
                for k, v in changes.items()
                if k != "same" and v
            ]
            lines.append("plan changes: " + escape("; ".join(parts)))
        return _html.card(f"Replay of <code>{escape(d['run_id'])}</code>", lines)


class RunNode:
    """One node of a run (``run.node("extract")``)."""

    def __init__(self, run: Run, node_id: str):
        self.run = run
        self.id = node_id

    def __repr__(self) -> str:
        return f"<RunNode {self.id} of {self.run.id}>"

    def inspect(self) -> dict:
        return self.run.inspect(self.id)

    def rerun_here(self, config: dict | None = None, input: dict | None = None, call: str | None = None) -> RerunResult:
        """Run this node's activity here, in the kernel, on the resolved config and inputs it had
        in the run; ``config`` is merged over that config (and checked against the node's
        schema), ``input`` over its inputs (by upstream node id). The run itself is not touched.
        A loop body node re-runs its last failed call unless ``call`` names one (``"2"``)."""
        from floworch_server import debug

        return RerunResult(
            run_sync(debug.rerun_node(service(), self.run.id, self.id, config=config, input=input, call=call))
        )

    async def rerun_here_async(
        self, config: dict | None = None, input: dict | None = None, call: str | None = None
    ) -> RerunResult:
        from floworch_server import debug

        return RerunResult(
            await run_async(debug.rerun_node(service(), self.run.id, self.id, config=config, input=input, call=call))
        )


class RerunResult:
    """What a re-run gave: ``output``, ``error`` ({kind, message}) or None, ``logs`` (a DataFrame),
    ``status`` ("success" or "failed"); ``recorded`` is what the run's own call gave."""

    def __init__(self, data: dict):
        self.data = data
        self.status: str = data["status"]
        self.output: Any = data["output"]
        self.error: dict | None = data["error"]
        self.config: dict = data["config"]
        self.inputs: dict = data["inputs"]
        self.recorded: dict = data["recorded"]

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def logs(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.data["logs"], columns=["timestamp", "level", "message", "extra"])
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        return frame

    def __repr__(self) -> str:
        what = f"error {self.error['kind']}: {self.error['message']}" if self.error else f"output {self.output!r}"[:200]
        return f"<RerunResult {self.data['node']} of {self.data['run_id']} {self.status}: {what}>"

    def _repr_html_(self) -> str:
        import json

        d = self.data
        lines = [f"status {_html.badge(self.status)} · {d['duration_ms']:.0f} ms · re-run here, the run is unchanged"]
        if self.error:
            lines.append(
                f"<span style='color:#cf222e'><b>{escape(self.error['kind'])}</b>: {escape(self.error['message'])}</span>"
            )
        else:
            lines.append(f"<pre style='margin:0'>{escape(json.dumps(self.output, indent=2, default=str)[:4000])}</pre>")
        logs = d["logs"]
        inner = _html.table(["level", "message"], [[r["level"], r["message"]] for r in logs]) if logs else ""
        return _html.card(
            f"Node <code>{escape(d['node'])}</code> ({escape(d['type'])}) of <code>{escape(d['run_id'])}</code>",
            lines,
            inner,
        )
