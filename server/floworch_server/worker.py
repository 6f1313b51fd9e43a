"""A worker process: polls FlowOrchestrator's task queue(s) and runs plans and node activities.

    python -m floworch_server.worker [--task-queue EXTRA ...]

Configuration comes from ``FLOWORCH_*`` variables (see settings.py); the supervisor sets them,
and on another machine they point it at a shared cluster. Scaling out is starting more of
these. SIGTERM (or Ctrl-C) drains: no new tasks are taken, running activities get
``GRACEFUL_SHUTDOWN`` to finish, then the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import os
import signal
import socket
import sys
import time
from typing import Any
from collections.abc import Callable, Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from . import logging_json, temporal, tracing
from .interpreter import workflow_runner
from .settings import Settings

log = logging.getLogger("floworch_server.worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=5)
# Past the graceful period the process exits anyway: a worker must never outlive a stop.
HARD_EXIT_AFTER = GRACEFUL_SHUTDOWN.total_seconds() + 5
MAX_CONCURRENT_ACTIVITIES = 100
CONNECT_TIMEOUT = 30.0  # the server may still be starting (or restarting) when we start
SERVICE = "floworch-worker"  # names this process in log lines and spans


def default_registrations() -> tuple[list[type], list[Callable]]:
    """The interpreter workflow and the node activities: everything a FlowOrchestrator worker runs."""
    from .activities import activity_functions
    from .interpreter import FlowRun

    return [FlowRun], list(activity_functions())


def attach_log_store(settings: Settings) -> None:
    """Send node log lines to the store, where run logs are read from."""
    from . import activities, integrations
    from .store import store_for

    store = store_for(settings, settings.tenant)

    def add_log(*args: Any, **kwargs: Any) -> None:
        # Each line goes to the tenant of the run whose node wrote it.
        store.for_tenant(integrations.RUN_TENANT.get() or store.tenant).add_log(*args, **kwargs)

    activities.log_sink = add_log


async def connect_with_retry(settings: Settings, timeout: float = CONNECT_TIMEOUT) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await temporal.connect(settings, identity=f"{os.getpid()}@{socket.gethostname()}")
        except Exception as err:  # noqa: BLE001 - retried until the deadline
            if time.monotonic() > deadline:
                raise
            log.warning("Temporal not reachable yet: %s", err)
            await asyncio.sleep(1)


async def run(
    settings: Settings,
    task_queues: Sequence[str] = (),
    *,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Poll ``settings.task_queue`` and ``task_queues`` until ``stop`` is set.

    Every queue gets the same registrations, so a node's activity can be routed to any queue
    a worker was started with.
    """
    if workflows is None or activities is None:
        default_workflows, default_activities = default_registrations()
        workflows = default_workflows if workflows is None else workflows
        activities = default_activities if activities is None else activities
    queues = list(dict.fromkeys([settings.task_queue, *task_queues]))
    stop = stop or asyncio.Event()
    client = await connect_with_retry(settings)
    # Sync activities (HTTP calls, OCR) run on threads; async ones ignore the pool.
    with concurrent.futures.ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES) as pool:
        workers = [
            Worker(
                client,
                task_queue=queue,
                workflows=list(workflows),
                activities=list(activities),
                activity_executor=pool,
                max_concurrent_activities=MAX_CONCURRENT_ACTIVITIES,
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                workflow_runner=workflow_runner(),
            )
            for queue in queues
        ]
        runs = [asyncio.create_task(w.run()) for w in workers]
        log.info(
            "worker polling",
            extra={"fields": {"task_queues": queues, "namespace": settings.temporal_namespace,
                              "address": client.service_client.config.target_host}},
        )  # fmt: skip
        stopped = asyncio.create_task(stop.wait())
        # A fatal worker error ends the process (non-zero), and the supervisor restarts it.
        await asyncio.wait([stopped, *runs], return_when=asyncio.FIRST_COMPLETED)
        log.info("worker shutting down")
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        stopped.cancel()
        for task in runs:
            if task.done() and task.exception():
                raise task.exception()  # type: ignore[misc]
    log.info("worker stopped")


def main(
    argv: list[str] | None = None,
    *,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; ``workflows``/``activities`` replace the default registrations."""
    parser = argparse.ArgumentParser(
        prog="python -m floworch_server.worker", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--task-queue", action="append", default=[], metavar="Q",
        help="extra task queue to poll besides FLOWORCH_TASK_QUEUE (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging_json.setup(settings, SERVICE)
    logging_json.forward_temporal_core_logs()
    tracing.set_service(SERVICE)
    attach_log_store(settings)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signame: str) -> None:
            if stop.is_set():  # a second signal: the user does not want to wait
                os._exit(130)
            log.info("received %s", signame)
            stop.set()
            # Even if draining hangs (e.g. the server is gone), leave in bounded time.
            loop.call_later(HARD_EXIT_AFTER, os._exit, 1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
        await run(settings, args.task_queue, workflows=workflows, activities=activities, stop=stop)

    try:
        asyncio.run(amain())
    except Exception:
        log.exception("worker failed")
        return 1
    finally:
        # Spans of the last activities are still queued; the process ends by os._exit.
        tracing.shutdown()
    return 0


if __name__ == "__main__":
    # os._exit skips interpreter finalization, where the SDK's runtime threads can still call
    # into Python and abort the process (temporalio/sdk-python#300).
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
