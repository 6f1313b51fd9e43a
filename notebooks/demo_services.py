"""Local stand-ins for the outside world of the document-pipeline example (this machine has no
internet): an OpenAI-protocol server whose "model" reads invoice fields with regular
expressions, and a Slack-API server that records posted messages. FlowOrchestrator talks to them
with the real OpenAI SDK and the real Slack connector, exactly as it would to the real services.
Also draws invoice images to read, and stands in for a hotel's booking and payment API (the
debugging example)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIELDS = {
    "invoice_number": r"INVOICE\s*(?:No\.?|#)?\s*([A-Z0-9-]{3,})",
    "vendor": r"From:?\s*([A-Z][A-Za-z0-9&., ]+?)\s*(?:\n|$)",
    "total": r"Total\s*(?:due)?\s*:?\s*\$?\s*([0-9][0-9,]*\.[0-9]{2})",
    "date": r"(\d{4}-\d{2}-\d{2})",
}


def read_invoice(text: str) -> dict:
    """What the stand-in model answers: the fields it finds in the document text."""
    found = {}
    for name, pattern in FIELDS.items():
        m = re.search(pattern, text)
        found[name] = m.group(1).strip() if m else None
    if found["total"] is not None:
        found["total"] = float(found["total"].replace(",", ""))
    return found


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.requests: list[dict] = []
        handler.owner = self
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


class _Handler(BaseHTTPRequestHandler):
    owner: _Server

    def _json(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


class _ModelHandler(_Handler):
    def do_POST(self) -> None:
        body = self._json()
        self.owner.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if not self.path.endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        prompt = "\n".join(m["content"] for m in body.get("messages", []) if m.get("role") == "user" and isinstance(m.get("content"), str))
        answer = json.dumps(read_invoice(prompt))
        self._send(
            200,
            {
                "id": f"chatcmpl-{len(self.owner.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "invoice-reader"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(answer.split()), "total_tokens": len(prompt.split()) + len(answer.split())},
            },
        )


class _SlackHandler(_Handler):
    def do_POST(self) -> None:
        body = self._json()
        self.owner.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path != "/chat.postMessage":
            return self._send(200, {"ok": False, "error": "unknown_method"})
        self._send(200, {"ok": True, "channel": body.get("channel"), "ts": f"{time.time():.6f}", "message": {"text": body.get("text")}})


class _BookingHandler(_Handler):
    """Quotes, room reservations and card charges. Like a real payment API it applies each
    Idempotency-Key once, and it refuses an amount that is not a whole number of cents."""

    NIGHT_CENTS = 20625

    def _record(self, body) -> tuple[str, str | None]:
        path = urlsplit(self.path).path
        key = self.headers.get("Idempotency-Key")
        self.owner.requests.append({"method": self.command, "path": path, "key": key, "body": body})
        return path, key

    def do_GET(self) -> None:
        path, _ = self._record(None)
        if path != "/quote":
            return self._send(404, {"error": f"no route {path}"})
        time.sleep(self.owner.quote_delay)  # pricing asks the channel manager: it takes a while
        nights = int(parse_qs(urlsplit(self.path).query).get("nights", ["1"])[0])
        cents = self.NIGHT_CENTS * nights
        self._send(200, {"nights": nights, "total": cents / 100, "total_cents": cents, "currency": "USD"})

    def do_POST(self) -> None:
        body = self._json()
        path, key = self._record(body)
        with self.owner.lock:
            if key in self.owner.answers:
                return self._send(200, self.owner.answers[key])
            if path == "/rooms/reserve":
                answer = {"id": f"R{self.owner.next_id('R')}", "guest": body.get("guest")}
            elif path == "/rooms/release":
                answer = {"released": body.get("reservation")}
            elif path == "/payments/charge":
                amount = body.get("amount")
                if not isinstance(amount, int):
                    return self._send(422, {"error": f"amount must be an integer number of cents, got {amount!r}"})
                answer = {"id": f"ch_{self.owner.next_id('ch')}", "amount": amount, "reservation": body.get("reservation")}
            else:
                return self._send(404, {"error": f"no route {path}"})
            self.owner.answers[key] = answer
        self._send(200, answer)


class BookingServer(_Server):
    """A hotel's API: ``GET /quote?nights=N``, ``POST /rooms/reserve``, ``/rooms/release`` and
    ``/payments/charge``. ``requests`` lists every call; ``calls()`` counts them by path."""

    def __init__(self, quote_delay: float = 0.0):
        self.quote_delay = quote_delay
        self.lock = threading.Lock()
        self.answers: dict[str, dict] = {}
        self._ids: Counter = Counter()
        super().__init__(type("BookingHandler", (_BookingHandler,), {}))

    def next_id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def calls(self) -> dict[str, int]:
        return dict(Counter(r["path"] for r in self.requests))


def booking_server(quote_delay: float = 0.0) -> BookingServer:
    return BookingServer(quote_delay)


def model_server() -> _Server:
    return _Server(type("ModelHandler", (_ModelHandler,), {}))


def slack_server() -> _Server:
    return _Server(type("SlackHandler", (_SlackHandler,), {}))


def _font(size: int):
    from PIL import ImageFont

    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"):
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size=size)


def draw_invoice(path: str | Path, number: str, vendor: str, total: float, date: str) -> Path:
    """An invoice-like PNG with large, clear text."""
    from PIL import Image, ImageDraw

    lines = [f"INVOICE {number}", f"From: {vendor}", f"Date: {date}", "Consulting services", f"Total due: ${total:,.2f}"]
    image = Image.new("RGB", (900, 80 + 70 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 40 + 70 * i), line, fill="black", font=_font(40))
    path = Path(path)
    image.save(path)
    return path


# ---------------------------------------------------------------------- a collaboration server
def collaboration_server(root: str | Path = ".") -> str:
    """The URL of a Jupyter server with real-time collaboration serving ``root``.

    In JupyterLab (``make run``) that is the server running this notebook, found as `fo.Flow`
    finds it. Where the notebook runs without one (nbval, a plain kernel), a Jupyter server is
    started here for the rest of the session, and this kernel is pointed at it."""
    import atexit
    import os
    import secrets
    import socket
    import subprocess
    import sys
    import tempfile
    import urllib.request

    from floworch import collab

    root = Path(root).resolve()
    if os.environ.get("FLOWORCH_JUPYTER_URL", "").strip().lower() not in ("off", "none", "0", "false"):
        found = collab.find_server(root / "probe.flow")
        if found is not None:
            return found.url
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}/"
    state = tempfile.mkdtemp(prefix="floworch-collab-")
    args = [
        sys.executable, "-m", "jupyter_server", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        # The server's own state stays out of the notebooks folder.
        f"--SQLiteYStore.db_path={state}/ystore.db", f"--BaseFileIdManager.db_path={state}/fileid.db",
        f"--YDocExtension.session_store_path={state}/sessions.json",
    ]
    if os.getuid() == 0:
        args.append("--allow-root")
    log = open(Path(state) / "server.log", "wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    atexit.register(process.terminate)
    deadline = time.monotonic() + 60
    while True:
        try:
            request = urllib.request.Request(url + "api/status", headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(request, timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the collaboration server did not start; see {Path(state) / 'server.log'}") from None
            time.sleep(0.2)
    os.environ.update(FLOWORCH_JUPYTER_URL=url, FLOWORCH_JUPYTER_TOKEN=token, FLOWORCH_JUPYTER_ROOT=str(root))
    return url
