"""The kernel in a `.flow` file's collaboration room: the same Yjs document the canvases edit.

    server = collab.find_server("hello.flow")          # jpserver-*.json, or FLOWORCH_JUPYTER_*
    room = collab.RoomClient(server, "hello.flow").start()
    room.wait_synced()
    with room.transaction() as flow:                   # a YFlow over room.doc
        flow.update_node("greet", label="Hi")
    room.close()

A `RoomClient` speaks the y-websocket protocol with jupyter-collaboration's room
``text:flow:<fileId>`` on the kernel's private event loop thread (`floworch._loop`), so a cell
that runs for minutes still sends and receives edits. The document layout is the registered
jupyter_ydoc type ``flow`` (`floworch_ext.ydoc.YFlow`), found through jupyter_ydoc's registry
as jupyter-collaboration finds it.

Protocol notes:

- Only local changes are sent: updates the server sent are applied in transactions whose
  origin is this client's, and the document observer skips those (a plain `pycrdt.Provider`
  sends every update back to the server, doubling its traffic).
- The server is sent our state vector (SYNC_STEP1) on every connection and answers with what
  we lack; it sends its own, and we answer with what it lacks. Edits made while offline stay
  in the local document and travel in that answer, where Yjs merges them with everything
  done meanwhile.
- Acknowledgements: y-websocket has none, but the server handles one client's messages in
  order and answers every SYNC_STEP1 with a SYNC_STEP2. A SYNC_STEP1 sent after some local
  updates is answered once the server applied them: that is how `pending` drops to 0. At most
  one such probe is in flight, so a burst of edits costs one extra round trip, not one each.
- TCP_NODELAY is set on the socket: without it the reply-after-receive paths of the protocol
  wait ~40 ms for a delayed ACK (Nagle). TCP_QUICKACK is set after each read, so the server's
  socket, which leaves Nagle on, is not held back waiting for our ACKs either.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import socket
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from pycrdt import (
    Decoder,
    Doc,
    Encoder,
    YMessageType,
    YSyncMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

from . import _loop

log = logging.getLogger(__name__)

RAW_MESSAGE = 2  # jupyter-collaboration's own message type (save requests, conflict notices)
DOC_TYPE = "flow"
FILE_FORMAT = "text"
RECONNECT_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)  # seconds, then 2 s between attempts
# A first connection that fails like this will not work by retrying: report it at once.
_PERMANENT_CLOSE_CODES = {1003, 4400, 4403, 4404, 4500}  # 4403: not a member of the tenant


class CollaborationUnavailable(RuntimeError):
    """No Jupyter server with real-time collaboration serves this file."""


def flow_document_type() -> type:
    """The registered ``flow`` document type (floworch_ext.ydoc.YFlow)."""
    from jupyter_ydoc import ydocs

    try:
        return ydocs[DOC_TYPE]
    except KeyError:
        raise CollaborationUnavailable(
            "the 'flow' collaborative document type is not registered: reinstall floworch (pip install -e .)"
        ) from None


# ---------------------------------------------------------------------- finding the server
@dataclass(frozen=True)
class Server:
    """A Jupyter server: its URL (with base URL), token, and root directory as seen from here."""

    url: str
    token: str = ""
    root_dir: str | None = None
    # A login (fo.login's Session) to act as instead of the token's user; default: this kernel's.
    session: Any = None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> Server:
        """From a jpserver-*.json record (`jupyter_server.serverapp.list_running_servers`)."""
        return cls(url=info["url"], token=info.get("token") or "", root_dir=info.get("root_dir"))

    def contents_path(self, path: str | os.PathLike) -> str | None:
        """The server's contents path of a local file, or None if the server does not serve it."""
        if self.root_dir is None:
            # No root known: the path is taken as one relative to the server's root.
            posix = PurePosixPath(Path(path).as_posix())
            return None if posix.is_absolute() or ".." in posix.parts else str(posix)
        try:
            rel = Path(path).resolve().relative_to(Path(self.root_dir).expanduser().resolve())
        except ValueError:
            return None
        return rel.as_posix()

    def http(self, route: str) -> str:
        return self.url.rstrip("/") + "/" + route.lstrip("/")

    def ws(self, route: str) -> str:
        parts = urlsplit(self.http(route))
        return urlunsplit(parts._replace(scheme="wss" if parts.scheme == "https" else "ws"))

    def headers(self) -> dict[str, str]:
        # A kernel logged in to this server (fo.login) acts as its login's user, not the token's.
        from .session import current

        session = self.session or current()
        if session is not None and session.url == self.url.rstrip("/") + "/":
            return session.headers()
        return {"Authorization": f"token {self.token}"} if self.token else {}


def _ca_certs() -> str | None:
    # A server on a self-signed certificate (make run TLS=1) names it here, for its kernels.
    return os.environ.get("FLOWORCH_JUPYTER_CA") or None


def find_server(path: str | os.PathLike | None = None) -> Server | None:
    """The Jupyter server to collaborate through, if any.

    ``FLOWORCH_JUPYTER_URL`` (with ``FLOWORCH_JUPYTER_TOKEN`` and ``FLOWORCH_JUPYTER_ROOT``, the
    server's root directory as seen here) names one explicitly; ``off`` turns rooms off.
    Otherwise the running servers' jpserver-*.json files are read: the server that started
    this kernel (``JPY_PARENT_PID``) if it serves ``path``, else the one with the deepest root
    directory holding ``path``.
    """
    url = os.environ.get("FLOWORCH_JUPYTER_URL", "").strip()
    if url.lower() in ("off", "none", "0", "false"):
        return None
    if url:
        return Server(
            url, os.environ.get("FLOWORCH_JUPYTER_TOKEN", ""), os.environ.get("FLOWORCH_JUPYTER_ROOT") or None
        )
    try:
        from jupyter_server.serverapp import list_running_servers

        running = [(Server.from_info(info), info.get("pid")) for info in list_running_servers()]
    except Exception as exc:  # noqa: BLE001 - no readable runtime dir: no server
        log.debug("could not list running Jupyter servers: %s", exc)
        return None
    if path is not None:
        running = [(server, pid) for server, pid in running if server.contents_path(path) is not None]
    if not running:
        return None
    parent = os.environ.get("JPY_PARENT_PID")
    for server, pid in running:
        if parent and str(pid) == parent:
            return server
    return max(running, key=lambda found: len(Path(found[0].root_dir or "/").resolve().parts))[0]


# ---------------------------------------------------------------------- the room client
class RoomClient:
    """One client of a `.flow` file's collaboration room.

    ``doc`` is the pycrdt document and ``document`` the YFlow over it. The document is shared
    with the connection's thread: read and write it inside ``with client.transaction():``
    (a lock and one Y transaction), which also makes each edit one update on the wire.
    """

    def __init__(
        self,
        server: Server,
        path: str,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        reconnect: bool = True,
    ) -> None:
        self.server = server
        self.path = path  # the server's contents path of the file
        self.doc: Doc = Doc()
        self.document = flow_document_type()(self.doc)
        self.file_id: str | None = None
        self.session_id: str | None = None
        self.error: BaseException | None = None  # the last connection failure, if any
        self._loop = loop or _loop.loop()
        self._reconnect = reconnect
        self._lock = threading.RLock()
        self._remote = _RemoteOrigin(id(self))
        self._remote_hash = hash(self._remote)
        self._ws: Any = None
        self._connected = False
        self._synced = False
        self._online = True  # wanted: False after disconnect() until reconnect()
        self._closed = False
        self._ever_synced = False
        self._local_seq = 0  # local updates made so far (counted on the editing thread)
        self._sent_seq = 0  # of which this many were handed to the connection, in order
        self._acked_seq = 0  # and this many applied by the server
        self._probes: deque[int] = deque()  # SYNC_STEP1s in flight: local_seq when each was sent
        self._probe_times: deque[float | None] = deque()  # and when (None: the connection's first)
        # Milliseconds from sending local edits to the server's answer confirming them: the
        # room's sync latency as this client sees it (newest last).
        self.sync_latencies: deque[float] = deque(maxlen=500)
        self.on_sync_latency: Callable[[float], None] | None = None  # called on the connection's thread
        self._saves: dict[int, concurrent.futures.Future] = {}
        self._save_ids = 0
        self._waiters: list[tuple[Callable[[], bool], concurrent.futures.Future]] = []
        self._wake: asyncio.Event | None = None
        self._task: concurrent.futures.Future | None = None
        self._subscription = self.doc.observe(self._on_transaction)

    # ------------------------------------------------------------------ public state
    @property
    def connected(self) -> bool:
        """True while the room socket is open."""
        return self._connected

    @property
    def synced(self) -> bool:
        """True once the server's content arrived over the current connection."""
        return self._connected and self._synced

    @property
    def pending(self) -> int:
        """Local changes the server has not confirmed yet (made offline, or sent and unanswered)."""
        return self._local_seq - self._acked_seq

    @property
    def local_updates(self) -> int:
        """Changes made in this client's document so far: the updates it sends (never the ones
        it receives)."""
        return self._local_seq

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def room_id(self) -> str | None:
        return f"{FILE_FORMAT}:{DOC_TYPE}:{self.file_id}" if self.file_id else None

    def __repr__(self) -> str:
        state = "connected" if self._connected else ("closed" if self._closed else "offline")
        return f"<RoomClient {self.path!r} {state}, {self.pending} pending>"

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """Hold the document (thread-safe) in one Y transaction; yields the YFlow."""
        with self._lock, self.doc.transaction():
            yield self.document

    def read(self) -> dict[str, Any]:
        """The document now, as the JSON value of its file."""
        with self._lock:
            return self.document.to_data()

    def text(self) -> str:
        """The document now, as the text of its file."""
        with self._lock:
            return self.document.get()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> RoomClient:
        """Connect in the background (and reconnect whenever the connection drops)."""
        if self._task is None:
            self._task = asyncio.run_coroutine_threadsafe(self._run(), self._loop)
        return self

    def disconnect(self) -> None:
        """Go offline: edits keep landing in the local document until `reconnect`."""
        self._loop.call_soon_threadsafe(self._set_online, False)

    def reconnect(self) -> None:
        self._loop.call_soon_threadsafe(self._set_online, True)

    def close(self, timeout: float = 5.0) -> None:
        """Leave the room, waiting up to ``timeout`` for the socket to close (0: do not wait).
        Changes not sent by then stay in ``doc`` only."""
        task = self._begin_close()
        if task is not None and timeout > 0 and not self._on_loop():
            with suppress(Exception):  # closing: the reason it stopped does not matter
                task.result(timeout)

    async def aclose(self, timeout: float = 5.0) -> None:
        """`close` for a caller on an event loop (which may be serving the other end)."""
        task = self._begin_close()
        if task is not None and not self._on_loop():
            with suppress(Exception):  # closing: the reason it stopped does not matter
                await asyncio.wait_for(asyncio.wrap_future(task), timeout)

    def _begin_close(self) -> concurrent.futures.Future | None:
        if self._closed:
            return None
        self._closed = True
        with self._lock, suppress(ValueError):
            self.doc.unobserve(self._subscription)
        if self._loop.is_closed():
            return None
        self._loop.call_soon_threadsafe(self._set_online, False)
        return self._task

    # ------------------------------------------------------------------ waiting
    def wait_synced(self, timeout: float = 10.0) -> None:
        """Block until connected, holding the server's content, with every local change applied
        by the server. Not from the client's own loop (use `wait_synced_async`)."""
        self._wait(self._is_settled, timeout, "synced")

    async def wait_synced_async(self, timeout: float = 10.0) -> None:
        await self._wait_async(self._is_settled, timeout, "synced")

    def wait_until(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate(document)`` holds (checked on each change from the room)."""
        self._wait(lambda: bool(predicate(self.document)), timeout, "the condition")

    async def wait_until_async(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> None:
        await self._wait_async(lambda: bool(predicate(self.document)), timeout, "the condition")

    def save(self, timeout: float = 10.0) -> str:
        """Ask the server to write the file now; returns its answer ("success", "skipped", ...)."""
        if self._on_loop():
            raise RuntimeError("RoomClient.save() blocks: call it from another thread")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._request_save, future)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the server did not save {self.path} within {timeout}s") from None

    def _is_settled(self) -> bool:
        return self._connected and self._synced and self.pending == 0

    def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        if self._on_loop():
            raise RuntimeError("this wait blocks: call it from another thread, or await the *_async form")
        future = self._waiter(predicate)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # so that it is dropped from the waiters
            raise TimeoutError(self._timeout_message(what, timeout)) from None

    async def _wait_async(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        future = self._waiter(predicate)
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            raise TimeoutError(self._timeout_message(what, timeout)) from None

    def _waiter(self, predicate: Callable[[], bool]) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._add_waiter, predicate, future)
        return future

    def _timeout_message(self, what: str, timeout: float) -> str:
        reason = f" (last error: {self.error})" if self.error else ""
        return f"room {self.path!r} not {what} within {timeout}s: connected={self._connected}, pending={self.pending}{reason}"

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    # ------------------------------------------------------------------ loop side
    def _add_waiter(self, predicate: Callable[[], bool], future: concurrent.futures.Future) -> None:
        self._waiters.append((predicate, future))
        self._notify()

    def _notify(self) -> None:
        if not self._waiters:
            return
        fatal = self._fatal()
        keep = []
        for predicate, future in self._waiters:
            if future.done():  # answered, or given up by its waiter
                continue
            if fatal is not None:
                _settle(future, exception=fatal)
                continue
            try:
                with self._lock:
                    done = predicate()
            except Exception as exc:  # noqa: BLE001 - the waiter sees its own predicate's error
                _settle(future, exception=exc)
                continue
            if done:
                _settle(future)
            else:
                keep.append((predicate, future))
        self._waiters = keep

    def _fatal(self) -> BaseException | None:
        # Before the first sync, a permanent failure ends every wait; later ones are retried.
        if self._closed and not self._connected:
            return ConnectionError(f"room client for {self.path!r} is closed")
        if not self._ever_synced and isinstance(
            self.error, (CollaborationUnavailable, FileNotFoundError, PermissionError)
        ):
            return self.error
        return None

    def _set_online(self, online: bool) -> None:
        self._online = online and not self._closed
        if not self._online and self._ws is not None:
            self._ws.close()
        if self._wake is not None:
            self._wake.set()
        self._notify()

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        attempt = 0
        while not self._closed:
            if not self._online:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._connection()
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept for the waiters, then retried
                self.error = exc
                log.debug("room %s: %s", self.path, exc)
            finally:
                self._connected = self._synced = False
                self._ws = None
                self._probes.clear()
                self._probe_times.clear()
                self._notify()
            if self._closed or self._fatal() is not None or (self._online and not self._reconnect):
                break
            if self._online:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                self._wake.clear()
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
        self._notify()

    async def _connection(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        await self._open_session()
        query = urlencode({"sessionId": self.session_id})
        request = HTTPRequest(
            self.server.ws(f"api/collaboration/room/{self.room_id}?{query}"),
            headers=self.server.headers(),
            connect_timeout=10,
            request_timeout=10,
            ca_certs=_ca_certs(),
        )
        ws = await websocket_connect(request, max_message_size=1024**3)
        stream = ws.protocol.stream if ws.protocol is not None else None
        assert stream is not None and stream.socket is not None, "a websocket just connected has its socket"
        sock = stream.socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._ws = ws
        self._connected = True
        self.error = None
        if not self._online:  # went offline while connecting
            ws.close()
            return
        with self._lock:
            first = create_sync_message(self.doc)
        self._probes.append(self._acked_seq)  # answers it acknowledge nothing new yet
        self._probe_times.append(None)
        ws.write_message(first, binary=True)
        while True:
            message = await ws.read_message()
            if message is None:
                break
            _quickack(sock)
            if isinstance(message, bytes) and message:
                self._handle(message)
        if ws.close_code in _PERMANENT_CLOSE_CODES and not self._ever_synced:
            raise CollaborationUnavailable(
                f"the server refused the room of {self.path!r}: {ws.close_code} {ws.close_reason}"
            )

    async def _open_session(self) -> None:
        from tornado.httpclient import AsyncHTTPClient, HTTPRequest

        response = await AsyncHTTPClient().fetch(
            HTTPRequest(
                self.server.http(f"api/collaboration/session/{quote(self.path)}"),
                method="PUT",
                body=json.dumps({"format": FILE_FORMAT, "type": DOC_TYPE}),
                headers={**self.server.headers(), "Content-Type": "application/json"},
                ca_certs=_ca_certs(),
                connect_timeout=10,
                request_timeout=10,
            ),
            raise_error=False,
        )
        if response.code in (200, 201):
            body = json.loads(response.body)
            self.file_id, self.session_id = body["fileId"], body["sessionId"]
            return
        if response.code == 599:
            raise ConnectionError(f"Jupyter server at {self.server.url} unreachable: {response.error}")
        message = _message(response.body)
        if response.code in (401, 403):
            raise PermissionError(f"Jupyter server at {self.server.url} refused the token ({response.code}): {message}")
        if response.code == 404 and "does not exist" in message:
            raise FileNotFoundError(f"{self.path} does not exist on the Jupyter server at {self.server.url}")
        if response.code == 404:
            raise CollaborationUnavailable(
                f"the Jupyter server at {self.server.url} has no real-time collaboration (jupyter-collaboration)"
            )
        raise ConnectionError(f"collaboration session for {self.path} failed: {response.code} {message}")

    def _handle(self, message: bytes) -> None:
        kind = message[0]
        if kind == YMessageType.SYNC:
            sync_type = message[1]
            if sync_type == YSyncMessageType.SYNC_STEP1:
                # The server's state: answer with what it lacks (offline edits included), then
                # probe, so that the answer to the probe confirms them.
                with self._lock:
                    reply = handle_sync_message(message[1:], self.doc)
                if reply is not None:
                    self._send(reply)
                self._maybe_probe(force=self._sent_seq > self._acked_seq)
            else:
                with self._lock, self.doc.transaction(origin=self._remote):
                    handle_sync_message(message[1:], self.doc)
                if sync_type == YSyncMessageType.SYNC_STEP2:
                    if self._probes:
                        confirmed = self._probes.popleft()
                        sent = self._probe_times.popleft() if self._probe_times else None
                        if sent is not None and confirmed > self._acked_seq:
                            self._record_latency((time.monotonic() - sent) * 1000)
                        self._acked_seq = max(self._acked_seq, confirmed)
                    self._synced = self._ever_synced = True
                    self._maybe_probe()
            self._notify()
        elif kind == RAW_MESSAGE:
            self._handle_raw(message)
        # Awareness (cursors, user names) is not used by the kernel.

    def _handle_raw(self, message: bytes) -> None:
        decoder = Decoder(message)
        decoder.read_var_uint()
        try:
            payload = json.loads(decoder.read_var_string())
        except ValueError:
            return
        if payload.get("type") == "save":
            future = self._saves.pop(payload.get("responseTo"), None)
            if future is not None and not future.done():
                future.set_result(payload.get("status"))
        elif payload.get("type") == "conflict":
            # The room was rebuilt from a file that changed while we were away, and our
            # history no longer fits it: reopen the flow to continue from the file.
            self.error = ConnectionError(f"{self.path} changed on disk while this client was offline; reopen it")
            warnings.warn(str(self.error), stacklevel=1)

    def _request_save(self, future: concurrent.futures.Future) -> None:
        if not self._connected:
            future.set_exception(ConnectionError(f"room {self.path!r} is not connected"))
            return
        self._save_ids += 1
        self._saves[self._save_ids] = future
        encoder = Encoder()
        encoder.write_var_uint(RAW_MESSAGE)
        encoder.write_var_string("save")
        encoder.write_var_uint(self._save_ids)
        self._send(encoder.to_bytes())

    def _on_transaction(self, event: Any) -> None:
        # Runs inside the commit, on whichever thread edited the document.
        if event.transaction.origin() == self._remote_hash:
            return  # came from the server: never sent back
        self._local_seq += 1
        with suppress(RuntimeError):  # the loop is gone (interpreter exit): the change stays in this document
            self._loop.call_soon_threadsafe(self._send_local, event.update)

    def _send_local(self, update: bytes) -> None:
        self._sent_seq += 1
        if self._connected and self._synced:
            self._send(create_update_message(update))
            self._maybe_probe()
        elif self._connected:
            # Before the server's state arrived: our answer to its SYNC_STEP1 carries it.
            self._send(create_update_message(update))
        # Offline: it stays in the document and goes with the next connection's answer.

    def _maybe_probe(self, force: bool = False) -> None:
        if not self._connected or (self._probes and not force):
            return
        if self._sent_seq > self._acked_seq and (not self._probes or self._probes[-1] < self._sent_seq):
            with self._lock:
                probe = create_sync_message(self.doc)
            self._probes.append(self._sent_seq)
            self._probe_times.append(time.monotonic())
            self._send(probe)

    def _record_latency(self, ms: float) -> None:
        self.sync_latencies.append(ms)
        if self.on_sync_latency is not None:
            try:
                self.on_sync_latency(ms)
            except Exception as exc:  # noqa: BLE001 - a report never breaks the room
                log.debug("room %s: sync latency report failed: %s", self.path, exc)

    def _send(self, message: bytes) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            ws.write_message(message, binary=True)
        except Exception as exc:  # noqa: BLE001 - the read loop sees the close and reconnects
            log.debug("room %s: send failed: %s", self.path, exc)


def _settle(future: concurrent.futures.Future, exception: BaseException | None = None) -> None:
    # The waiting thread may cancel it at any moment (its timeout): first come, first served.
    try:
        if exception is None:
            future.set_result(None)
        else:
            future.set_exception(exception)
    except concurrent.futures.InvalidStateError:
        pass


@dataclass(frozen=True)
class _RemoteOrigin:
    """Origin of the transactions applying what one client received."""

    client: int


def _quickack(sock: socket.socket) -> None:
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


def _message(body: bytes | None) -> str:
    try:
        return str(json.loads(body or b"{}").get("message") or "")
    except (ValueError, AttributeError):
        return (body or b"").decode("utf-8", "replace")[:200]


# ---------------------------------------------------------------------- for fo.Flow
def join(
    path: str | os.PathLike, *, server: Server | None = None, required: bool = False, timeout: float = 10.0
) -> RoomClient | None:
    """A synced room client for a local ``.flow`` file, or None when no server collaborates on it.

    With ``required``, the reason there is no room is raised instead. A server that has
    collaboration but fails to give the room is reported with a warning before falling back.
    """
    server = server or find_server(path)
    if server is None:
        if required:
            raise CollaborationUnavailable(
                f"no running Jupyter server serves {path} (set FLOWORCH_JUPYTER_URL to name one)"
            )
        return None
    contents_path = server.contents_path(path)
    if contents_path is None:
        if required:
            raise CollaborationUnavailable(
                f"{path} is outside the root directory {server.root_dir} of the Jupyter server at {server.url}"
            )
        return None
    client = RoomClient(server, contents_path).start()
    try:
        client.wait_synced(timeout)
    except CollaborationUnavailable:
        client.close()
        if required:
            raise
        return None
    except Exception as exc:
        client.close()
        if required:
            raise
        warnings.warn(
            f"could not join the collaboration room of {path} ({exc}); editing the file directly", stacklevel=3
        )
        return None
    with client.transaction():
        roots = set(client.doc.keys())
    if "source" in roots:
        # A server without the flow type opened the file as plain text (jupyter_ydoc's
        # fallback): edits in the flow layout would never reach the file.
        client.close(0)
        problem = CollaborationUnavailable(
            f"the Jupyter server at {server.url} does not know the 'flow' document type: install floworch in its environment"
        )
        if required:
            raise problem
        warnings.warn(f"{problem}; editing {path} directly", stacklevel=3)
        return None
    return client
