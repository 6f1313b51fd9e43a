"""FlowOrchestrator's Jupyter server extension: the REST API under ``<base_url>/floworch/api/``,
and the webhook receiver at ``<base_url>/floworch/hooks/{hook_id}``.

The server holds one :class:`FlowService`, made on its event loop the first time it is needed
(at server start, or by the first request if the start hook did not run). With no Temporal
address configured and no live embedded services for the data directory, the extension starts
them itself and stops them again when the server shuts down; services someone else started
(``make test``, ``floworch-services``, another Jupyter server) are used, never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
from collections.abc import Callable

from jupyter_server.utils import url_path_join
from traitlets import Unicode
from traitlets.config import Configurable

from floworch_server import logging_json, tracing
from floworch_server.auth import Roles, SigningKeys, Tokens
from floworch_server.service import FlowService
from floworch_server.settings import Settings
from floworch_server.store import Store
from floworch_server.supervisor import Supervisor
from floworch_server.temporal import port_open

from .room_audit import RoomEdits

SYNC_INTERVAL = 2.0  # seconds between copies of Temporal's run states into the store
PURGE_INTERVAL = 3600.0  # seconds between retention purges
SERVICE = "floworch-jupyter"  # names this process's log lines and spans
# What FlowOrchestrator code logs inside the Jupyter server goes to <data_dir>/jupyter-server.log.
LOGGERS = ("floworch_ext", "floworch_server")


class FlowOrch(Configurable):
    """``c.FlowOrch.<name>`` in Jupyter config; each one overrides its FLOWORCH_<NAME> variable."""

    temporal_address = Unicode(
        None, allow_none=True, config=True, help="Temporal frontend host:port; empty runs the embedded dev server."
    )
    database_url = Unicode(
        None, allow_none=True, config=True, help="SQLAlchemy URL of the store; empty is SQLite in data_dir."
    )
    data_dir = Unicode(None, allow_none=True, config=True, help="State directory of the embedded services.")
    task_queue = Unicode(None, allow_none=True, config=True, help="Task queue of the interpreter workflow.")

    def settings(self) -> Settings:
        return Settings.from_env(
            temporal_address=self.temporal_address,
            database_url=self.database_url,
            data_dir=self.data_dir,
            task_queue=self.task_queue,
        )


def needs_embedded_services(settings: Settings) -> bool:
    """True when nothing serves this data directory yet: no Temporal address is configured and
    runtime.json is missing or stale (its supervisor died, or its Temporal port does not answer)."""
    if not settings.embedded:
        return False
    try:
        runtime = json.loads(settings.runtime_file.read_text())
        pid, address = int(runtime["pid"]), str(runtime["temporal_address"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return not (_alive(pid) and port_open(address))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class Runtime:
    """What the extension owns for one server: the service, its sync task, maybe the services."""

    def __init__(self, settings: Settings, log: logging.Logger) -> None:
        self.settings = settings
        self.log = log
        self.supervisor: Supervisor | None = None  # set only when this server started the services
        self._service: FlowService | None = None
        self._sync_task: asyncio.Task | None = None
        self._ops_task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        # Access tokens verify from the signing keys alone; refresh tokens and roles need the store.
        self.tokens = Tokens(SigningKeys.for_settings(settings), store=None, refresh_days=settings.refresh_token_days)
        self._roles: Roles | None = None
        self.room_edits = RoomEdits(self._tenant_store)

    @property
    def roles(self) -> Roles:
        if self._roles is None:
            raise RuntimeError("FlowOrchestrator services are not connected yet")
        return self._roles

    async def service(self) -> FlowService:
        if self._service is None:
            async with self._lock:  # concurrent first requests share one connection
                if self._service is None:
                    service = await self._connect()
                    self.tokens.store = service.store
                    self._roles = Roles(self.settings, service.store)
                    self._service = service
                    self._sync_task = asyncio.create_task(self._sync_forever(self._service))
                    self._ops_task = asyncio.create_task(self._operate_forever(self._service))
        return self._service

    def _tenant_store(self) -> Store:
        if self._service is None:
            raise RuntimeError("FlowOrchestrator services are not connected yet")
        return self._service.store

    async def _connect(self) -> FlowService:
        if needs_embedded_services(self.settings):
            self.log.info("FlowOrchestrator: starting the embedded Temporal and worker for %s", self.settings.data_path)
            supervisor = Supervisor(self.settings)
            # start() blocks until Temporal is healthy; the server keeps serving meanwhile.
            await asyncio.to_thread(supervisor.start)
            self.supervisor = supervisor
        return await FlowService.connect(self.settings)

    async def _sync_forever(self, service: FlowService) -> None:
        # Runs started or finished elsewhere (kernels, schedules, the Temporal CLI) reach the run
        # list this way. A failure (Temporal restarting, say) is reported once, then retried.
        last_error = None
        while True:
            try:
                await service.sync_runs()
                last_error = None
            except Exception as exc:  # noqa: BLE001 - never fatal, tried again next tick
                message = f"{type(exc).__name__}: {exc}"
                level = logging.DEBUG if message == last_error else logging.WARNING
                self.log.log(level, "FlowOrchestrator: could not sync runs from Temporal: %s", message)
                last_error = message
            await asyncio.sleep(SYNC_INTERVAL)

    async def _operate_forever(self, service: FlowService) -> None:
        # SLA alert rules every alert_interval_seconds, the retention purge hourly (first at start).
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        while True:
            try:
                await service.evaluate_alerts()
            except Exception as exc:  # noqa: BLE001 - never fatal, tried again next tick
                self.log.warning("FlowOrchestrator: could not evaluate alert rules: %s: %s", type(exc).__name__, exc)
            if loop.time() >= next_purge:
                next_purge = loop.time() + PURGE_INTERVAL
                try:
                    self.log.info("FlowOrchestrator: retention purge: %s", await service.purge())
                except Exception as exc:  # noqa: BLE001 - tried again next hour
                    self.log.warning("FlowOrchestrator: retention purge failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(max(self.settings.alert_interval_seconds, 1))

    async def stop(self) -> None:
        if self._ops_task is not None:
            self._ops_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ops_task
            self._ops_task = None
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        if self._service is not None:
            self.room_edits.flush_all()
            self._service.store.close()
            self._service = None
        if self.supervisor is not None:
            self.log.info("FlowOrchestrator: stopping the embedded services it started")
            await asyncio.to_thread(self.supervisor.stop)
            self.supervisor = None


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "floworch_ext"}]


def _load_jupyter_server_extension(serverapp) -> None:
    from . import collab_guard, identity
    from .handlers import handlers
    from .hooks import HOOK_PATTERN, WebhookHandler
    from .prometheus import METRICS_PATH, MetricsHandler

    settings = FlowOrch(parent=serverapp).settings()
    tracing.set_service(SERVICE)
    detach_logs = _attach_logs(serverapp, settings)
    runtime = Runtime(settings, logging.getLogger("floworch_ext"))
    serverapp.web_app.settings["floworch"] = runtime
    # FlowOrchestrator access tokens are accepted wherever Jupyter authenticates a user.
    identity.install(serverapp.identity_provider, runtime)
    # Viewers watch flows' collaboration rooms; their document updates are dropped.
    collab_guard.install()
    base_url = serverapp.web_app.settings["base_url"]
    # The API needs Jupyter authentication; the hook route is signed by its sender instead.
    serverapp.web_app.add_handlers(
        ".*$",
        [
            *handlers(base_url),
            (url_path_join(base_url, HOOK_PATTERN), WebhookHandler),
            (url_path_join(base_url, METRICS_PATH), MetricsHandler),
        ],
    )

    # Module extensions get no shutdown hook of their own (only ExtensionApps do), so the stop
    # rides on the server's extension cleanup, which runs on every orderly shutdown.
    cleanup_extensions = serverapp.cleanup_extensions

    async def cleanup_with_floworch() -> None:
        await runtime.stop()
        detach_logs()
        await cleanup_extensions()

    serverapp.cleanup_extensions = cleanup_with_floworch
    runtime.log.info(
        "FlowOrchestrator API at %sfloworch/api/ (data in %s)", serverapp.base_url, runtime.settings.data_path
    )


def _attach_logs(serverapp, settings: Settings) -> Callable[[], None]:
    """Send what the extension and the engine log in this server to jupyter-server.log (JSON
    unless FLOWORCH_LOG_FORMAT=text) and to the terminal: through Jupyter's own handlers, in its
    format, or as JSON on stderr with FLOWORCH_LOG_FORMAT=json. Returns what undoes it."""
    ours = [logging_json.file_handler(settings, settings.data_path / "jupyter-server.log", SERVICE)]
    shared: list[logging.Handler] = []
    if logging_json.log_format(settings) == "json":
        console = logging.StreamHandler()
        console.set_name("floworch:jupyter-console")
        console.setFormatter(logging_json.JsonFormatter(SERVICE))
        ours.append(console)
    else:
        shared = list(serverapp.log.handlers)
    for handler in ours:
        logging_json.attach(handler, *LOGGERS)
    for name in LOGGERS:
        for handler in shared:
            logging.getLogger(name).addHandler(handler)

    def detach() -> None:
        for handler in ours:
            logging_json.detach(handler, *LOGGERS)
        for name in LOGGERS:
            for handler in shared:  # Jupyter's: removed, not closed
                logging.getLogger(name).removeHandler(handler)

    return detach


async def _start_jupyter_server_extension(serverapp) -> None:
    # Everything imported so far lives as long as the server: moving it out of the collector's
    # view keeps full collections (200+ ms here) from stalling every collaboration room at once.
    gc.collect()
    gc.freeze()
    # Connect (and start the embedded services if needed) with the server, not on the first click.
    try:
        await serverapp.web_app.settings["floworch"].service()
    except Exception:  # the API answers 503 and retries on the next request
        serverapp.log.exception("FlowOrchestrator: services not available yet")
