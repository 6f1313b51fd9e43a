"""The SLO dashboard: one Plotly figure of six panels, refreshing itself in the notebook.

    fo.dashboard()                       # last 24 hours, refreshed every 30 s
    fo.dashboard("7d", refresh=False)    # a still picture

Panels: success rate per bucket with the SLO line; error-budget burn rates per window against
their alert thresholds (the budget left in the title); p95/p99 activity latency per node type;
throughput (runs per bucket, stacked by status); task-queue backlog; seconds since each worker
last polled.

The time range is an ipywidgets Dropdown above the figure, returned together in a VBox.
Plotly's own rangeselector was not used: it only zooms the x axis in the browser, while a new
range here means new SQL aggregates (latency and burn rates are not x-axis series at all).
"""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd

from floworch_server import metrics as _m

from ._html import STATUS_COLOURS
from ._loop import run_sync
from ._service import service

RANGES = {"1h": "last hour", "6h": "last 6 hours", "24h": "last 24 hours", "7d": "last 7 days", "30d": "last 30 days"}
PANELS = (
    "Success rate (%)",
    "Error-budget burn rate",
    "Activity latency p95 / p99 (ms)",
    "Throughput (runs per bucket)",
    "Task-queue backlog",
    "Workers: seconds since last poll",
)
HEALTHY, STALE = "#2da44e", "#cf222e"
SLO_COLOUR = "#d29922"


def collect(
    store, since: Any, until: Any, *, slo: float = _m.DEFAULT_SLO, bucket: Any = "auto", live: tuple | None = None
) -> dict:
    """Everything the figure shows (``metrics.dashboard_data``); ``live`` is a ``(queues,
    workers)`` pair, None when unknown. The widget reads it through ``FlowService.dashboard``."""
    return _m.dashboard_data(store, since, until, bucket=bucket, slo=slo, live=live)


def figure(data: dict, widget: bool = False) -> Any:
    """The dashboard figure of ``collect(...)`` data (a FigureWidget with ``widget=True``)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    base = make_subplots(rows=3, cols=2, subplot_titles=PANELS, vertical_spacing=0.12, horizontal_spacing=0.08)
    fig = go.FigureWidget(base) if widget else base
    fig.update_layout(
        height=900,
        barmode="group",
        margin={"l": 50, "r": 20, "t": 60, "b": 40},
        legend={"orientation": "h", "y": -0.06},
        hovermode="closest",
    )
    draw(fig, data)
    return fig


def draw(fig: Any, data: dict) -> None:
    """Replace the figure's traces and titles with ``data``'s (in place, for a live widget)."""
    traces = _traces(data)
    titles = _titles(data)
    with fig.batch_update():
        fig.data = ()
        for (row, col), trace in traces:
            fig.add_trace(trace, row=row, col=col)
        for annotation, text in zip(fig.layout.annotations, titles, strict=False):
            annotation.text = text
        fig.update_yaxes(title_text="%", row=1, col=1)
        fig.update_yaxes(title_text="ms", row=2, col=1)
        fig.update_xaxes(range=[_naive(data["since"]), _naive(data["until"])], row=1, col=1)
        fig.update_xaxes(range=[_naive(data["since"]), _naive(data["until"])], row=2, col=2)
        fig.update_layout(title=f"FlowOrchestrator SLO dashboard · {_when(data['since'])} – {_when(data['until'])} UTC")


def _traces(data: dict) -> list[tuple[tuple[int, int], Any]]:
    import plotly.graph_objects as go

    out: list[tuple[tuple[int, int], Any]] = []
    rate = data["success_rate"]
    x = _naive_series(rate["bucket"])
    out.append(((1, 1), go.Scatter(name="success rate", x=x, y=rate["success_rate"] * 100, mode="lines+markers",
                                   line={"color": STATUS_COLOURS["success"]}, customdata=rate[["success", "failed"]].values,
                                   hovertemplate="%{x}<br>%{y:.3f} %<br>%{customdata[0]} ok, %{customdata[1]} failed<extra></extra>")))  # fmt: skip
    out.append(((1, 1), go.Scatter(name=f"SLO {data['slo']:g} %", x=[_naive(data["since"]), _naive(data["until"])], y=[data["slo"]] * 2,
                                   mode="lines", line={"color": SLO_COLOUR, "dash": "dash"})))  # fmt: skip

    burn = data["burn_rates"]
    out.append(((1, 2), go.Bar(name="burn rate", x=burn["window"], y=burn["burn_rate"],
                               marker_color=[STALE if a else STATUS_COLOURS["running"] for a in burn["alerting"]],
                               customdata=burn[["failed", "total"]].values,
                               hovertemplate="%{x}: %{y:.2f}×<br>%{customdata[0]} failed of %{customdata[1]}<extra></extra>")))  # fmt: skip
    out.append(((1, 2), go.Scatter(name="alert threshold", x=burn["window"], y=burn["threshold"], mode="markers",
                                   marker={"symbol": "line-ew-open", "size": 28, "color": SLO_COLOUR, "line": {"width": 3}})))  # fmt: skip

    lat = data["latency"]
    out.append(((2, 1), go.Bar(name="p95", x=lat["node_type"], y=lat["p95_ms"], marker_color="#2f81f7", customdata=lat[["count"]].values,
                               hovertemplate="%{x} p95 %{y:.1f} ms<br>%{customdata[0]} samples<extra></extra>")))  # fmt: skip
    out.append(((2, 1), go.Bar(name="p99", x=lat["node_type"], y=lat["p99_ms"], marker_color="#a371f7", customdata=lat[["count"]].values,
                               hovertemplate="%{x} p99 %{y:.1f} ms<br>%{customdata[0]} samples<extra></extra>")))  # fmt: skip

    tput = data["throughput"]
    tx = _naive_series(tput["bucket"])
    for status in ("success", "failed", "cancelled", "running", "queued"):
        out.append(((2, 2), go.Scatter(name=status, x=tx, y=tput[status], mode="lines", stackgroup="runs",
                                       line={"width": 0.5, "color": STATUS_COLOURS[status]}, legendgroup="throughput")))  # fmt: skip

    queues, workers = data.get("queues"), data.get("workers")
    if queues is not None:
        labels = queues["task_queue"] + " · " + queues["type"]
        out.append(((3, 1), go.Bar(name="backlog", x=labels, y=queues["backlog"], marker_color="#8a8f98",
                                   customdata=queues[["backlog_age_s", "pollers"]].values,
                                   hovertemplate="%{x}: %{y} waiting<br>oldest %{customdata[0]:.1f} s<br>%{customdata[1]} pollers<extra></extra>")))  # fmt: skip
    if workers is not None:
        labels = workers["identity"] + " · " + workers["task_queue"] + " · " + workers["type"]
        out.append(((3, 2), go.Bar(name="since last poll", x=labels, y=workers["seconds_since_poll"],
                                   marker_color=[HEALTHY if h else STALE for h in workers["healthy"]],
                                   hovertemplate="%{x}<br>%{y:.1f} s since last poll<extra></extra>")))  # fmt: skip
    return out


def _titles(data: dict) -> list[str]:
    budget = data["budget"]
    remaining = budget["budget_remaining"]
    live = "" if data.get("queues") is not None else " (Temporal not reachable)"
    return [
        PANELS[0],
        f"{PANELS[1]} · {remaining * 100:.1f} % of {budget['window']} budget left",
        PANELS[2],
        PANELS[3],
        PANELS[4] + live,
        PANELS[5] + live,
    ]


def _naive(value: Any) -> Any:
    # Plotly shows tz-aware timestamps in the browser's zone; the panels say UTC.
    return pd.Timestamp(value).tz_convert("UTC").tz_localize(None)


def _naive_series(values: pd.Series) -> pd.Series:
    return values.dt.tz_convert("UTC").dt.tz_localize(None)


def _when(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------- the notebook widget
class Dashboard:
    """The widget's state: its range, its refresh thread and the figure it draws on."""

    def __init__(self, range: str, refresh: float | None, slo: float, task_queues: list[str] | None) -> None:
        import ipywidgets as widgets

        self.slo = slo
        self.task_queues = task_queues
        options = [(label, key) for key, label in RANGES.items()]
        if range not in RANGES:
            _m.duration(range)  # a typo fails here, not in the refresh thread
            options.append((f"last {range}", range))
        self.range = widgets.Dropdown(options=options, value=range, description="Range", layout={"width": "260px"})
        self.status = widgets.HTML()
        self.figure = figure(self.collect(), widget=True)
        self.widget = widgets.VBox([widgets.HBox([self.range, self.status]), self.figure])
        # Attached to the VBox, so the object a cell returns can be stopped and refreshed.
        self.widget.dashboard = self
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.range.observe(lambda _change: self.refresh(), names="value")
        self.thread = None
        if refresh:
            self.thread = threading.Thread(
                target=self._loop, args=(float(refresh),), name="floworch-dashboard", daemon=True
            )
            self.thread.start()

    def collect(self) -> dict:
        # The same data the REST dashboard route serves; without Temporal, the store panels
        # still draw and the titles say what is missing.
        return run_sync(service().dashboard(self.range.value, slo=self.slo, task_queues=self.task_queues))

    def refresh(self) -> None:
        with self._lock:  # the dropdown and the timer thread never draw at the same time
            try:
                draw(self.figure, self.collect())
                self.status.value = ""
            except Exception as exc:  # noqa: BLE001 - shown next to the dropdown, retried next tick
                self.status.value = f"<span style='color:{STALE}'>refresh failed: {type(exc).__name__}: {exc}</span>"

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self.widget.comm is None:  # closed in the notebook: nothing left to draw on
                return
            self.refresh()


def dashboard(
    range: str = "24h",
    refresh: float | bool | None = 30,
    slo: float = _m.DEFAULT_SLO,
    task_queues: list[str] | None = None,
):
    """The SLO dashboard as a VBox: a range Dropdown above a Plotly FigureWidget.

    ``refresh``: seconds between redraws (a daemon thread), or False for a still picture.
    The returned box has ``.dashboard`` with ``refresh()`` and ``stop()``."""
    interval = None if refresh is False else (30.0 if refresh is True else refresh)
    return Dashboard(range, interval, slo, task_queues).widget
