"""Small HTML renderings for notebook reprs (no JavaScript, so they also show in static views)."""

from __future__ import annotations

from collections.abc import Iterable, Set
from html import escape
from typing import Any

STATUS_COLOURS = {
    "idle": "#8a8f98",
    "queued": "#8a8f98",
    "running": "#2f81f7",
    "retrying": "#d29922",
    "waiting": "#a371f7",
    "success": "#2da44e",
    "failed": "#cf222e",
    "skipped": "#6e7781",
    "cancelled": "#6e7781",
    "compensating": "#d29922",
    "compensated": "#bf8700",
    "compensation_failed": "#cf222e",
}


def badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#8a8f98")
    return (
        f'<span style="background:{colour};color:#fff;border-radius:8px;padding:1px 7px;'
        f'font-size:0.85em">{escape(status)}</span>'
    )


def table(headers: list[str], rows: Iterable[list[Any]], raw: Set[int] = frozenset()) -> str:
    head = "".join(f"<th style='text-align:left'>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{cell if i in raw else escape('' if cell is None else str(cell))}</td>" for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def card(title: str, lines: list[str], inner: str = "") -> str:
    items = "".join(f"<div>{line}</div>" for line in lines)
    return (
        "<div style='border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;font-family:var(--jp-ui-font-family,sans-serif)'>"
        f"<div style='font-weight:600;margin-bottom:4px'>{title}</div>{items}{inner}</div>"
    )
