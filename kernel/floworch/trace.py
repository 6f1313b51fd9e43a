"""The Gantt chart of a run's trace, as a Plotly figure that can keep updating while it runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from floworch_server.trace import SEGMENT_COLUMNS

from ._html import STATUS_COLOURS


def frame(segments: list[dict]) -> pd.DataFrame:
    data = pd.DataFrame(segments, columns=SEGMENT_COLUMNS)
    for col in ("scheduled", "started", "ended"):
        data[col] = pd.to_datetime(data[col], utc=True)
    data["duration_ms"] = (data["ended"] - data["started"]).dt.total_seconds() * 1000
    return data


def _rows(data: pd.DataFrame) -> pd.DataFrame:
    shown = data[data["kind"] != "skipped"].copy()
    label = shown["node"] + shown["iteration"].map(lambda i: f" #{i}" if isinstance(i, str) and i else "")
    label = label + shown["attempt"].map(lambda a: f" (attempt {a})" if a and a > 1 else "")
    shown["label"] = label
    return shown


def figure(data: pd.DataFrame, title: str = "", widget: bool = False) -> Any:
    import plotly.graph_objects as go

    fig = go.FigureWidget() if widget else go.Figure()
    _draw(fig, data)
    fig.update_layout(
        title=title,
        barmode="overlay",
        xaxis={"type": "date", "title": "time"},
        yaxis={"autorange": "reversed", "title": None},
        height=max(240, 40 + 28 * max(1, data["node"].nunique())),
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 40},
        legend={"orientation": "h"},
    )
    return fig


def _draw(fig: Any, data: pd.DataFrame) -> None:
    import plotly.graph_objects as go

    rows = _rows(data)
    traces = []
    for status, part in rows.groupby("status", sort=False):
        durations = part["duration_ms"].clip(lower=1)  # an instant step still shows as a sliver
        traces.append(
            go.Bar(
                name=status,
                orientation="h",
                y=part["label"],
                base=part["started"].dt.tz_convert(None),
                x=durations,
                marker_color=STATUS_COLOURS.get(status, "#8a8f98"),
                customdata=part[["type", "kind", "attempt", "error"]].fillna("").values,
                hovertemplate="%{y}<br>%{customdata[0]} (%{customdata[1]})<br>%{x:.0f} ms<br>%{customdata[3]}<extra></extra>",
            )
        )
    with fig.batch_update() if hasattr(fig, "batch_update") else _nothing():
        fig.data = ()
        for t in traces:
            fig.add_trace(t)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def follow(fig: Any, fetch: Callable[[], tuple[pd.DataFrame, bool]], interval: float = 0.5) -> threading.Thread:
    """Redraw ``fig`` from ``fetch()`` until it says the run is over."""

    def loop() -> None:
        while True:
            data, over = fetch()
            _draw(fig, data)
            if over:
                return
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="floworch-trace", daemon=True)
    thread.start()
    return thread
