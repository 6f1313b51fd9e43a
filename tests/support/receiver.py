"""A small HTTP receiver a flow's action.http nodes call: it counts the calls of each path, and
one of its paths fails until the test "fixes" the cause. Used to see which nodes a retry calls.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def send_json(handler: BaseHTTPRequestHandler, status: int, payload) -> None:
    """Answer a request of a test's HTTP server with ``payload`` as JSON."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _Crowded(ThreadingHTTPServer):
    # Hundreds of requests connect at once (the default backlog of 5 would refuse most), and
    # answers to a sender that died meanwhile fail with a broken pipe: expected, not reported.
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler], *, crowded: bool = False) -> tuple[ThreadingHTTPServer, str]:
    """A started server on a free loopback port, and its base URL. ``crowded``: for hundreds of
    senders at once, some of which may die before their answer."""
    server = (_Crowded if crowded else ThreadingHTTPServer)(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class Receiver:
    """``/fetch`` answers 200; ``/charge`` 422 until ``fixed``; ``/charge-v2`` always 200."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.fixed = False
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                with receiver.lock:
                    receiver.calls[self.path] += 1
                if self.path == "/charge" and not receiver.fixed:
                    return self._answer(422, {"error": "card declined"})
                self._answer(200, {"path": self.path, "got": body})

            def _answer(self, status, payload):
                send_json(self, status, payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.calls)

    def start(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
