"""OpenTelemetry tracing of runs, through temporalio's ``TracingInterceptor``.

A run is one trace: the ``StartRun`` span of whoever started it (kernel, Jupyter server,
webhook), Temporal's ``StartWorkflow`` span under it, then in the worker the ``RunWorkflow``
span, a ``StartActivity`` span per node and, under each, the node's ``RunActivity`` span.
The trace id travels in Temporal headers, so the worker's spans join the starter's trace
whatever process or machine they run in; each run's trace id is kept on its run record and
on its node log lines.

``FLOWORCH_OTEL_EXPORTER`` picks where spans go (see docs/configuration.md): ``file`` (the
default) appends one JSON object per span to ``<data_dir>/traces.jsonl``, which needs no
collector; ``console`` prints the same lines to stdout; ``otlp`` sends them to a collector
(needs the ``opentelemetry-exporter-otlp-proto-http`` or ``-grpc`` package); ``none`` turns
tracing off, and then no interceptor is installed and no span is made.

The workflow side of the interceptor only adds headers to the commands the interpreter emits
and never makes spans while replaying, so histories recorded with or without tracing replay
either way (tests/test_telemetry.py checks both).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace as otel_trace

from .settings import Settings

EXPORTERS = ("file", "console", "otlp", "none")
# The file is kept to about this size: past it, it becomes traces.jsonl.1 (replacing the
# previous one) and a new file starts, so an always-on default cannot fill the disk.
MAX_FILE_BYTES = 100 * 1024 * 1024
# Local exporters are cheap, so spans reach the file about a second after they end.
LOCAL_EXPORT_DELAY_MS = 1000

_lock = threading.Lock()
_tracers: dict[tuple, tuple[Any, Any]] = {}  # config key -> (provider, TracingInterceptor)
_service = "floworch"


def set_service(name: str) -> None:
    """Name this process's spans (``service.name``): call before the first client connects."""
    global _service
    _service = name


def enabled(settings: Settings) -> bool:
    return _exporter_name(settings) != "none"


def client_interceptors(settings: Settings) -> list:
    """What ``Client.connect`` gets: the tracing interceptor, or nothing when tracing is off.
    Workers built on the client inherit it for workflows and activities."""
    found = _tracer_for(settings)
    return [found[1]] if found else []


@contextmanager
def run_span(settings: Settings, name: str, attributes: dict[str, Any]) -> Iterator[str | None]:
    """A span around starting a run; yields its trace id (32 hex digits), or None when tracing
    is off. Temporal's start call made inside it joins the same trace."""
    found = _tracer_for(settings)
    if found is None:
        yield None
        return
    tracer = found[1].tracer
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, kind=otel_trace.SpanKind.CLIENT, attributes=attrs) as span:
        yield format_trace_id(span.get_span_context().trace_id)


def format_trace_id(trace_id: int) -> str:
    return f"{trace_id:032x}"


def current_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the span this code runs in, if any (e.g. a node's activity)."""
    context = otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format_trace_id(context.trace_id), f"{context.span_id:016x}"


def current_trace_id() -> str | None:
    ids = current_ids()
    return ids[0] if ids else None


def flush(timeout_millis: int = 5000) -> None:
    """Export every finished span now (tests; processes about to exit)."""
    for provider, _ in list(_tracers.values()):
        provider.force_flush(timeout_millis)


def shutdown() -> None:
    """Flush and stop every exporter of this process. The worker exits through ``os._exit``,
    which skips the SDK's own at-exit flush."""
    with _lock:
        tracers = list(_tracers.values())
        _tracers.clear()
    for provider, _ in tracers:
        provider.shutdown()


# ---------------------------------------------------------------------- providers
def _exporter_name(settings: Settings) -> str:
    name = (settings.otel_exporter or "none").strip().lower()
    if name not in EXPORTERS:
        raise ValueError(
            f"FLOWORCH_OTEL_EXPORTER must be one of {', '.join(EXPORTERS)}; got {settings.otel_exporter!r}"
        )
    return name


def _tracer_for(settings: Settings) -> tuple[Any, Any] | None:
    """``(provider, interceptor)`` for these settings, made once per process and configuration."""
    name = _exporter_name(settings)
    if name == "none":
        return None
    key = (name, str(settings.traces_file) if name == "file" else settings.otel_endpoint)
    found = _tracers.get(key)
    if found is None:
        with _lock:
            found = _tracers.get(key)
            if found is None:
                found = _tracers[key] = _make_tracer(name, settings)
    return found


def _make_tracer(name: str, settings: Settings) -> tuple[Any, Any]:
    # The SDK is imported here, so a process with tracing off never loads it.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from temporalio.contrib.opentelemetry import TracingInterceptor

    provider = TracerProvider(resource=Resource.create({"service.name": _service, "process.pid": os.getpid()}))
    if name == "otlp":
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings.otel_endpoint)))
    else:
        exporter: Any = (
            JsonLinesSpanExporter(settings.traces_file) if name == "file" else _console_exporter()
        )  # a SpanExporter
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=LOCAL_EXPORT_DELAY_MS))
    return provider, TracingInterceptor(provider.get_tracer("floworch"))


def _console_exporter():
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    return ConsoleSpanExporter(formatter=lambda span: json.dumps(span_record(span), default=str) + "\n")


def _otlp_exporter(endpoint: str):
    kwargs = {"endpoint": endpoint} if endpoint else {}
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ValueError(
                "FLOWORCH_OTEL_EXPORTER=otlp needs an OTLP exporter: `pip install opentelemetry-exporter-otlp-proto-http` "
                "(or -grpc), or use FLOWORCH_OTEL_EXPORTER=file."
            ) from None
    return OTLPSpanExporter(**kwargs)


# ---------------------------------------------------------------------- the JSON-lines file
def span_record(span) -> dict[str, Any]:
    """One finished span as the JSON object written to traces.jsonl."""
    context = span.get_span_context()
    start, end = span.start_time, span.end_time
    resource = span.resource.attributes if span.resource else {}
    return {
        "name": span.name,
        "trace_id": format_trace_id(context.trace_id),
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "kind": span.kind.name.lower(),
        "start": _iso(start),
        "end": _iso(end),
        "duration_ms": round((end - start) / 1e6, 3) if start is not None and end is not None else None,
        "status": span.status.status_code.name.lower(),
        "error": span.status.description,
        "attributes": dict(span.attributes or {}),
        "events": [
            {"name": e.name, "time": _iso(e.timestamp), "attributes": dict(e.attributes or {})} for e in span.events
        ],
        "service": resource.get("service.name"),
        "pid": resource.get("process.pid"),
    }


def _iso(nanos: int | None) -> str | None:
    if nanos is None:
        return None
    return datetime.fromtimestamp(nanos / 1e9, UTC).isoformat(timespec="microseconds")


class JsonLinesSpanExporter:
    """Appends spans to a file, one JSON object a line.

    Every process of a data directory (workers, the Jupyter server, kernels) appends to the
    same file: each batch is one ``write`` on an ``O_APPEND`` descriptor, so lines of
    different processes never interleave, and the file is opened per batch, so after a
    rotation every process writes to the new file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def export(self, spans: Sequence) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        data = "".join(json.dumps(span_record(s), default=str, separators=(",", ":")) + "\n" for s in spans).encode()
        try:
            self._rotate_if_full()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _rotate_if_full(self) -> None:
        try:
            if self.path.stat().st_size < MAX_FILE_BYTES:
                return
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):  # another process rotated it first
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def read_spans(path: Path | str) -> list[dict[str, Any]]:
    """The spans of a traces.jsonl file (its complete lines), oldest first."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line still being written
    return out


__all__ = [
    "EXPORTERS",
    "JsonLinesSpanExporter",
    "client_interceptors",
    "current_ids",
    "current_trace_id",
    "enabled",
    "flush",
    "read_spans",
    "run_span",
    "set_service",
    "shutdown",
    "span_record",
]
