"""How FlowOrchestrator's processes write log lines: one JSON object per line, or readable text.

Workers, the supervisor and the Jupyter server extension all format their records here. A JSON
line holds ``timestamp`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``process`` (the
pid) and ``service`` (which kind of process), then, when the record belongs to a run,
``run_id``, ``node``, ``attempt``, ``trace_id`` and ``span_id``; ``exc`` carries the traceback
of a logged exception, and ``extra={"fields": {...}}`` adds fields of its own.

``FLOWORCH_LOG_FORMAT`` decides: ``auto`` (the default) writes JSON into log files (the data
directory's ``worker-<n>.log``, ``supervisor.log``, ``jupyter-server.log``), where tools read
them, and text to a terminal, where people do; ``json`` or ``text`` use that format everywhere.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from . import tracing
from .settings import Settings

FORMATS = ("auto", "json", "text")
CONTEXT_FIELDS = ("run_id", "node", "attempt", "trace_id", "span_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def context_of(record: logging.LogRecord) -> dict[str, Any]:
    """The run, node and trace a record belongs to, from its ``extra`` fields, Temporal's
    activity and workflow loggers, or the span it was logged in."""
    found = {key: getattr(record, key, None) for key in CONTEXT_FIELDS}
    activity = getattr(record, "temporal_activity", None)
    if isinstance(activity, dict):
        # FlowOrchestrator's run id is the Temporal workflow id; a node's activity id is its node id.
        found["run_id"] = found["run_id"] or activity.get("workflow_id")
        found["node"] = found["node"] or activity.get("activity_id")
        found["attempt"] = found["attempt"] or activity.get("attempt")
    workflow = getattr(record, "temporal_workflow", None)
    if isinstance(workflow, dict):
        found["run_id"] = found["run_id"] or workflow.get("workflow_id")
    if found["trace_id"] is None:
        ids = tracing.current_ids()
        if ids:
            found["trace_id"], found["span_id"] = ids
    return {k: v for k, v in found.items() if v is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, so log files can be parsed, filtered by run and joined to traces."""

    def __init__(self, service: str = "floworch") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "service": self.service,
            **context_of(record),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with the run and node a record belongs to at the end."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = context_of(record)
        context.pop("span_id", None)
        if not context:
            return line
        tail = " ".join(f"{k}={v}" for k, v in context.items())
        head, sep, rest = line.partition("\n")  # a traceback stays below the first line
        return f"{head} [{tail}]{sep}{rest}"


def log_format(settings: Settings) -> str:
    value = (settings.log_format or "auto").strip().lower()
    if value not in FORMATS:
        raise ValueError(f"FLOWORCH_LOG_FORMAT must be one of {', '.join(FORMATS)}; got {settings.log_format!r}")
    return value


def json_for_stream(settings: Settings, stream: IO) -> bool:
    """Whether lines written to ``stream`` are JSON: with ``auto``, unless it is a terminal."""
    chosen = log_format(settings)
    if chosen != "auto":
        return chosen == "json"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return True


def json_for_files(settings: Settings) -> bool:
    return log_format(settings) != "text"


def formatter(use_json: bool, service: str) -> logging.Formatter:
    return JsonFormatter(service) if use_json else TextFormatter()


def setup(settings: Settings, service: str, *, stream: IO | None = None, level: int = logging.INFO) -> logging.Handler:
    """Send every record of a process of our own (a worker, ``floworch-services``) to ``stream``
    (stderr): under the supervisor that is the process's log file, so JSON with ``auto``."""
    stream = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(json_for_stream(settings, stream), service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # Python's warnings too, instead of raw text on stderr
    return handler


def forward_temporal_core_logs(level: str = "WARN") -> None:
    """Temporal's Rust core writes its own lines to stderr; send them through Python logging
    (logger ``temporalio.core``) so they are formatted like every other line of the process.
    Call before the process's first Temporal client is made."""
    from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    config = LoggingConfig(filter=TelemetryFilter(core_level=level, other_level="ERROR"), forwarding=forwarding)
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=config)), error_if_already_set=False)


def file_handler(settings: Settings, path: Path, service: str) -> logging.Handler:
    """A handler appending to ``path`` (JSON unless ``FLOWORCH_LOG_FORMAT=text``); the file is
    made on the first record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.set_name(f"floworch:{path}")
    handler.setFormatter(formatter(json_for_files(settings), service))
    return handler


def attach(handler: logging.Handler, *loggers: str, level: int = logging.INFO) -> None:
    """Add ``handler`` to ``loggers``, replacing a handler of the same name added before (a
    server extension loaded again in one process must not write every line twice). A logger
    with no level of its own gets ``level``, so its INFO lines are written."""
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if handler.name and h.name == handler.name and h is not handler]:
            logger.removeHandler(old)
            old.close()
        if handler not in logger.handlers:
            logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)


def detach(handler: logging.Handler, *loggers: str) -> None:
    for name in loggers:
        logging.getLogger(name).removeHandler(handler)
    handler.close()


__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "attach",
    "context_of",
    "detach",
    "file_handler",
    "formatter",
    "forward_temporal_core_logs",
    "json_for_files",
    "json_for_stream",
    "log_format",
    "setup",
]
