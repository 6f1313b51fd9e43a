"""The webhook receiver: ``POST <base_url>/floworch/hooks/{hook_id}``.

The one route of the extension without Jupyter authentication: senders are other systems, which
have no Jupyter token or session. A request is authenticated by its HMAC signature instead,
checked by :class:`~floworch_server.webhooks.WebhookReceiver`; this handler only moves bytes
between HTTP and the receiver.

Because anyone can reach it, it says as little as possible: a bad signature or timestamp and an
unknown hook id are bare 401 and 404 answers, and a body larger than the hook allows is refused
from its Content-Length before it is read.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web
from tornado.log import app_log

from floworch_server.webhooks import Answer, WebhookReceiver

from .handlers import dumps

# The OpenAPI path template and the tornado pattern of the route (relative to the base URL).
# Hook ids are URL-safe tokens; anything else cannot be a hook and never reaches the handler.
HOOK_PATH = "/floworch/hooks/{hook_id}"
HOOK_PATTERN = "/floworch/hooks/(?P<hook_id>[A-Za-z0-9_.-]+)"


@web.stream_request_body
class WebhookHandler(web.RequestHandler):
    """Streams the body so that its size is checked before it is read, then hands it over."""

    SUPPORTED_METHODS = ("POST",)  # every other method is a 405 from tornado itself

    def initialize(self) -> None:
        self._receiver: WebhookReceiver | None = None
        self._chunks: list[bytes] = []
        self._received = 0
        self._limit = 0
        self._too_large = False

    # No cookie or session ever authenticates this route, so there is nothing for a cross-site
    # request to forge: the signature over the body is the proof of who sent it.
    def check_xsrf_cookie(self) -> None:
        pass

    def check_trusted_origin(self, origin: str) -> bool:
        return True

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:
        try:
            self._receiver = WebhookReceiver(await self.settings["floworch"].service())
        except Exception:  # noqa: BLE001 - the reason goes to the server log, not to the caller
            app_log.warning(
                "FlowOrchestrator: webhook %s refused, services not available", self.request.path, exc_info=True
            )
            return self.answer(Answer(503, {"error": "FlowOrchestrator is not available, try again later"}))
        self._limit = self._receiver.max_body(self.path_kwargs["hook_id"])
        declared = self.request.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._limit:
            # Answered before the body is read; tornado then drops the rest and closes the connection.
            self.answer(_too_large())

    def data_received(self, chunk: bytes) -> None:
        # A chunked body declares no length: stop keeping it once it passes the limit.
        if self._too_large:
            return
        self._received += len(chunk)
        if self._received > self._limit:
            self._too_large = True
            self._chunks.clear()
        else:
            self._chunks.append(chunk)

    @allow_unauthenticated
    async def post(self, hook_id: str) -> None:
        if self._too_large:
            return self.answer(_too_large())
        assert self._receiver is not None  # set by prepare(), which answered otherwise
        self.answer(await self._receiver.receive(hook_id, self.request.headers, b"".join(self._chunks)))

    def answer(self, answer: Answer) -> None:
        self.set_status(answer.status)
        if answer.body is None:
            # Bare answers (401, 404) carry nothing a caller could learn from.
            self.clear_header("Content-Type")
            self.finish()
        else:
            self.set_header("Content-Type", "application/json")
            self.finish(dumps(answer.body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # 405s and unexpected faults: no tornado error page, no traceback, nothing to learn from.
        if status_code == 405:
            self.set_header("Allow", "POST")
        self.clear_header("Content-Type")
        self.finish()


def _too_large() -> Answer:
    return Answer(413, {"error": "request body too large"})
