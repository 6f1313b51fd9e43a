"""A worker process: polls FlowOrchestrator's task queue(s) and runs plans and node activities.

    floworch worker [--task-queue Q ...] [--concurrency N] [--build-id B]
    python -m floworch_server.worker [same options]

Configuration comes from ``FLOWORCH_*`` variables (see settings.py); the supervisor sets them,
and on another machine they point it at a shared cluster and store (with
``FLOWORCH_TEMPORAL_ADDRESS`` set, nothing of an embedded dev server is needed). Scaling out is
starting more of these. With a build id the worker is one version of a Temporal worker
deployment: runs started while it is current stay on it (pinned), so a new fleet takes new runs
while the old one finishes its own (``floworch worker-deployment``). SIGTERM (or Ctrl-C) drains:
no new tasks are taken, running activities get ``GRACEFUL_SHUTDOWN`` to finish, then the process
exits 0.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import temporalio.api.enums.v1 as enums
import temporalio.api.workflowservice.v1 as wf
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker, WorkerDeploymentConfig

from . import logging_json, temporal, tracing
from .interpreter import workflow_runner
from .settings import Settings

log = logging.getLogger("floworch_server.worker")

GRACEFUL_SHUTDOWN = timedelta(seconds=5)
# Past the graceful period the process exits anyway: a worker must never outlive a stop.
HARD_EXIT_AFTER = GRACEFUL_SHUTDOWN.total_seconds() + 5
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
        except Exception as err:  # retried until the deadline
            if time.monotonic() > deadline:
                raise
            log.warning("Temporal not reachable yet: %s", err)
            await asyncio.sleep(1)


def deployment_version(settings: Settings) -> WorkerDeploymentVersion | None:
    """The worker deployment version these settings run as; None: unversioned."""
    if not settings.worker_build_id:
        return None
    return WorkerDeploymentVersion(deployment_name=settings.worker_deployment, build_id=settings.worker_build_id)


async def run(
    settings: Settings,
    task_queues: Sequence[str] = (),
    *,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Poll ``task_queues`` (default: ``settings.task_queue``) until ``stop`` is set.

    Every queue gets the same registrations, so a node's activity can be routed to any queue
    a worker was started with. ``settings.worker_concurrency`` bounds, per queue, the activities
    and the workflow tasks running at once.
    """
    if workflows is None or activities is None:
        default_workflows, default_activities = default_registrations()
        workflows = default_workflows if workflows is None else workflows
        activities = default_activities if activities is None else activities
    queues = list(dict.fromkeys(task_queues or [settings.task_queue]))
    concurrency = settings.worker_concurrency
    version = deployment_version(settings)
    # PINNED: a run's workflow tasks stay on the version that started it, so the interpreter
    # (and the node code) never changes under a running plan; new runs go to the current version.
    versioning = (
        WorkerDeploymentConfig(
            version=version, use_worker_versioning=True, default_versioning_behavior=VersioningBehavior.PINNED
        )
        if version
        else None
    )
    stop = stop or asyncio.Event()
    client = await connect_with_retry(settings)
    # Sync activities (HTTP calls, OCR) run on threads; async ones ignore the pool.
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        workers = [
            Worker(
                client,
                task_queue=queue,
                workflows=list(workflows),
                activities=list(activities),
                activity_executor=pool,
                max_concurrent_activities=concurrency,
                max_concurrent_workflow_tasks=concurrency,
                graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
                workflow_runner=workflow_runner(),
                deployment_config=versioning,
            )
            for queue in queues
        ]
        runs = [asyncio.create_task(w.run()) for w in workers]
        log.info(
            "worker polling",
            extra={"fields": {"task_queues": queues, "namespace": settings.temporal_namespace, "concurrency": concurrency,
                              "deployment_version": f"{version.deployment_name}:{version.build_id}" if version else None,
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


# -- worker deployments: which version takes new runs (blue/green) ----------------------
@dataclass
class VersionState:
    build_id: str
    status: str  # current, ramping, draining (pinned runs still open), drained, inactive, created
    current_since: datetime | None
    running: int  # open runs pinned to this version


async def describe_deployment(client: Client, settings: Settings) -> tuple[str | None, list[VersionState]]:
    """``(current build id, every version newest first)`` of ``settings.worker_deployment``."""
    ns, name = settings.temporal_namespace, settings.worker_deployment
    try:
        resp = await client.workflow_service.describe_worker_deployment(
            wf.DescribeWorkerDeploymentRequest(namespace=ns, deployment_name=name)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ValueError(
                f"no worker deployment {name!r} in namespace {ns!r}: start a worker with --build-id first"
            ) from None
        raise
    info = resp.worker_deployment_info
    current = info.routing_config.current_deployment_version.build_id or None
    versions = []
    for summary in sorted(info.version_summaries, key=lambda v: v.create_time.ToDatetime(), reverse=True):
        build_id = summary.deployment_version.build_id
        # Pinned runs carry their version in this system search attribute ("<deployment>:<build id>").
        query = f"TemporalWorkerDeploymentVersion = '{name}:{build_id}' AND ExecutionStatus = 'Running'"
        running = (await client.count_workflows(query)).count
        status = (
            enums.WorkerDeploymentVersionStatus.Name(summary.status)
            .removeprefix("WORKER_DEPLOYMENT_VERSION_STATUS_")
            .lower()
        )
        since = summary.current_since_time.ToDatetime(UTC) if summary.HasField("current_since_time") else None
        versions.append(VersionState(build_id, status, since, running))
    return current, versions


async def set_current_version(client: Client, settings: Settings, build_id: str) -> str | None:
    """Make ``build_id`` the current version: new runs start on it, runs already started stay
    on theirs. Returns the build id that was current before (None: unversioned workers)."""
    try:
        resp = await client.workflow_service.set_worker_deployment_current_version(
            wf.SetWorkerDeploymentCurrentVersionRequest(
                namespace=settings.temporal_namespace,
                deployment_name=settings.worker_deployment,
                build_id=build_id,
                identity=client.identity,
            )
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.INVALID_ARGUMENT):
            raise ValueError(
                f"cannot make {build_id!r} current in worker deployment {settings.worker_deployment!r}: {err.message} "
                f"(is a worker with --build-id {build_id} polling?)"
            ) from None
        raise
    return resp.previous_deployment_version.build_id or None


def _queue_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a task queue name must not be empty")
    if text != text.strip():
        raise argparse.ArgumentTypeError(f"task queue name {text!r} has leading or trailing spaces")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's options, shared by ``floworch worker`` and ``python -m floworch_server.worker``."""
    parser.add_argument(
        "--task-queue", action="append", type=_queue_name, metavar="Q",
        help="a task queue to poll (repeatable); default FLOWORCH_TASK_QUEUE",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", type=_positive, metavar="N",
        help="activities, and workflow tasks, run at once per task queue (FLOWORCH_WORKER_CONCURRENCY, default 100)",
    )  # fmt: skip
    parser.add_argument(
        "--build-id", metavar="B",
        help="run as version B of the worker deployment (FLOWORCH_WORKER_BUILD_ID; default: unversioned)",
    )  # fmt: skip
    parser.add_argument(
        "--deployment", metavar="NAME",
        help="the worker deployment a build id belongs to (FLOWORCH_WORKER_DEPLOYMENT, default floworch)",
    )  # fmt: skip


def apply_arguments(settings: Settings, args: argparse.Namespace) -> Settings:
    """``settings`` with the worker options given on the command line, checked: ValueError
    says what is wrong before anything starts."""
    options = (
        ("worker_concurrency", args.concurrency),
        ("worker_build_id", args.build_id),
        ("worker_deployment", args.deployment),
    )
    settings = settings.replace(**{name: value for name, value in options if value is not None})
    if settings.worker_concurrency < 1:
        raise ValueError(f"FLOWORCH_WORKER_CONCURRENCY must be at least 1, got {settings.worker_concurrency}")
    for what, value in (
        ("build id (--build-id, FLOWORCH_WORKER_BUILD_ID)", settings.worker_build_id),
        ("deployment name (--deployment, FLOWORCH_WORKER_DEPLOYMENT)", settings.worker_deployment),
    ):
        if value != value.strip() or "." in value or len(value) > 255:
            raise ValueError(f"{what} {value!r}: use up to 255 characters, no dots and no surrounding spaces")
    if settings.worker_build_id and not settings.worker_deployment:
        raise ValueError("a build id needs a worker deployment name: FLOWORCH_WORKER_DEPLOYMENT is empty")
    try:
        settings.resolved_temporal_address()  # no address and no embedded server: say so now
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    return settings


def serve(
    settings: Settings,
    task_queues: Sequence[str] = (),
    *,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable] | None = None,
) -> int:
    """Run a worker in this process until SIGTERM/SIGINT; returns the exit code."""
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
        await run(settings, task_queues, workflows=workflows, activities=activities, stop=stop)

    try:
        asyncio.run(amain())
    except Exception:
        log.exception("worker failed")
        return 1
    finally:
        # Spans of the last activities are still queued; the process ends by os._exit.
        tracing.shutdown()
    return 0


def exit_process(code: int) -> None:
    """End a worker process. os._exit skips interpreter finalization, where the SDK's runtime
    threads can still call into Python and abort the process (temporalio/sdk-python#300)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parse_command_line(
    argv: list[str] | None, *, prog: str = "python -m floworch_server.worker", data_dir: str | None = None
) -> tuple[Settings, list[str]]:
    """``(settings, task queues)`` of a worker command line; bad input exits 2 with what is wrong."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)  # exits 2 on bad arguments
    try:
        settings = apply_arguments(Settings.from_env(data_dir=data_dir), args)
    except ValueError as exc:  # a bad FLOWORCH_* value, or no Temporal to reach
        parser.exit(2, f"{prog}: {exc}\n")
    return settings, args.task_queue or []


def main(
    argv: list[str] | None = None,
    *,
    workflows: Sequence[type] | None = None,
    activities: Sequence[Callable] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; ``workflows``/``activities`` replace the default registrations."""
    settings, queues = parse_command_line(argv)
    return serve(settings, queues, workflows=workflows, activities=activities)


if __name__ == "__main__":
    exit_process(main())
