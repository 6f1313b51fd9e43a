"""`fo.diff(run_a, run_b)`: two runs side by side, node by node, and where they first part ways."""

from __future__ import annotations

import json
from html import escape
from typing import Any

import pandas as pd

from . import _html
from ._loop import run_async, run_sync
from ._service import service

FRAME_COLUMNS = [
    "node", "type", "plan", "status_a", "status_b", "attempts_a", "attempts_b",
    "duration_ms_a", "duration_ms_b", "output_changes", "differs", "first",
]  # fmt: skip


def _run_id(run: Any) -> str:
    ident = getattr(run, "id", run)
    if not isinstance(ident, str):
        raise TypeError(f"fo.diff takes runs or run ids, got {type(run).__name__}")
    return ident


def diff(run_a: Any, run_b: Any) -> RunDiff:
    """Compare run ``run_b`` with ``run_a`` (Runs or run ids): plan differences, per node status,
    attempts, duration and output (a JSON diff), the first divergence; ``.frame``, ``.figure()``."""
    from floworch_server import debug

    return RunDiff(run_sync(debug.diff(service(), _run_id(run_a), _run_id(run_b))))


async def diff_async(run_a: Any, run_b: Any) -> RunDiff:
    from floworch_server import debug

    return RunDiff(await run_async(debug.diff(service(), _run_id(run_a), _run_id(run_b))))


class RunDiff:
    """The differences between run ``a`` and run ``b``.

    - ``frame``: one row per node (plan change, statuses, attempts, durations, the number of
      output paths that differ, what differs, and whether it is the first divergence);
    - ``first_divergence``: {node, reasons, output_changes} of the earliest node that differs, or None;
    - ``plan``: nodes and edges added, removed and changed; ``outputs(node)``: the node's JSON diff;
    - ``figure()``: both runs' traces as Gantt charts side by side."""

    def __init__(self, data: dict):
        self.data = data
        self.a: dict = data["a"]
        self.b: dict = data["b"]
        self.plan: dict = data["plan"]
        self.first_divergence: dict | None = data["first_divergence"]

    @property
    def same(self) -> bool:
        return self.first_divergence is None

    @property
    def frame(self) -> pd.DataFrame:
        first = (self.first_divergence or {}).get("node")
        rows = [
            {
                **r,
                "output_changes": len(r["output_changes"]),
                "differs": "; ".join(r["differs"]),
                "first": r["node"] == first,
            }
            for r in self.data["nodes"]
        ]
        return pd.DataFrame(rows, columns=FRAME_COLUMNS)

    def outputs(self, node_id: str) -> pd.DataFrame:
        """Where the node's output (the trigger's: the run input) differs: path, change, a, b."""
        row = next((r for r in self.data["nodes"] if r["node"] == node_id), None)
        if row is None:
            raise KeyError(
                f"no node '{node_id}' in either run; nodes: {', '.join(r['node'] for r in self.data['nodes'])}"
            )
        return pd.DataFrame(row["output_changes"], columns=["path", "change", "a", "b"])

    def figure(self) -> Any:
        """Both runs' traces side by side (time since each run's start), one row per node."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from . import trace

        order = [r["node"] for r in self.data["nodes"]]
        fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                            subplot_titles=(f"a: {self.a['run_id']}", f"b: {self.b['run_id']}"))  # fmt: skip
        seen: set[str] = set()
        for col, key in ((1, "a"), (2, "b")):
            data = trace.frame(self.data["segments"][key])
            data = data[data["kind"] != "skipped"]
            start = pd.to_datetime(self.data[key]["start_time"], utc=True)
            for status, part in data.groupby("status", sort=False):
                fig.add_trace(
                    go.Bar(
                        name=status,
                        legendgroup=status,
                        showlegend=status not in seen,
                        orientation="h",
                        y=part["node"],
                        base=(part["started"] - start).dt.total_seconds() * 1000,
                        x=part["duration_ms"].clip(lower=1),
                        marker_color=_html.STATUS_COLOURS.get(status, "#8a8f98"),
                        customdata=part[["type", "attempt", "error"]].fillna("").values,
                        hovertemplate="%{y}<br>%{customdata[0]} attempt %{customdata[1]}<br>%{x:.0f} ms<br>%{customdata[2]}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
                seen.add(status)
            fig.update_xaxes(title_text="ms since the run started", row=1, col=col)
        first = (self.first_divergence or {}).get("node")
        fig.update_yaxes(categoryorder="array", categoryarray=order, autorange="reversed")
        if first:
            for col in (1, 2):
                fig.add_hline(y=first, line_dash="dot", line_color="#cf222e", row=1, col=col)
        fig.update_layout(
            barmode="overlay",
            height=max(260, 60 + 28 * max(1, len(order))),
            margin={"l": 10, "r": 10, "t": 50, "b": 40},
            legend={"orientation": "h"},
            title=f"first divergence: {first}" if first else "no divergence",
        )
        return fig

    def __repr__(self) -> str:
        where = f"first divergence at '{self.first_divergence['node']}'" if self.first_divergence else "no divergence"
        return f"<RunDiff {self.a['run_id']} vs {self.b['run_id']}: {where}>"

    def _repr_html_(self) -> str:
        first = (self.first_divergence or {}).get("node")
        lines = [
            f"a <code>{escape(self.a['run_id'])}</code> {_html.badge(self.a['status'])} version {escape(str(self.a['version']))}"
            f" · b <code>{escape(self.b['run_id'])}</code> {_html.badge(self.b['status'])} version {escape(str(self.b['version']))}",
        ]
        if self.plan["same"]:
            lines.append("same plan")
        else:
            parts = [
                f"{label}: {', '.join(items)}"
                for label, items in (
                    ("nodes added", self.plan["nodes_added"]),
                    ("removed", self.plan["nodes_removed"]),
                    ("changed", [c["node"] for c in self.plan["nodes_changed"]]),
                    ("edges added", self.plan["edges_added"]),
                    ("edges removed", self.plan["edges_removed"]),
                )
                if items
            ]
            lines.append("plan differs: " + escape("; ".join(parts)))
        if first:
            lines.append(
                f"<span style='color:#cf222e;font-weight:600'>first divergence: {escape(first)}</span> — {escape('; '.join((self.first_divergence or {}).get('reasons', [])))}"
            )
        else:
            lines.append("<span style='color:#2da44e'>no divergence</span>")
        rows = []
        for r in self.data["nodes"]:
            style = "font-weight:600;color:#cf222e" if r["node"] == first else ""
            changes = "<br>".join(
                f"<code>{escape(c['path'])}</code> {escape(c['change'])}: {escape(_short(c['a']))} → {escape(_short(c['b']))}"
                for c in r["output_changes"][:5]
            )
            rows.append(
                [
                    f"<span style='{style}'>{escape(r['node'])}</span>",
                    escape(r["plan"]),
                    (_html.badge(r["status_a"]) if r["status_a"] else "—")
                    + " → "
                    + (_html.badge(r["status_b"]) if r["status_b"] else "—"),
                    f"{r['attempts_a'] if r['attempts_a'] is not None else '—'} → {r['attempts_b'] if r['attempts_b'] is not None else '—'}",
                    f"{_duration(r['duration_ms_a'])} → {_duration(r['duration_ms_b'])}",
                    changes,
                ]
            )
        inner = _html.table(
            ["node", "plan", "status", "attempts", "duration", "output differences"], rows, raw={0, 1, 2, 3, 4, 5}
        )
        return _html.card("Run diff", lines, inner)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _duration(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"
