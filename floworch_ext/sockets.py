"""What the API's WebSockets share: Jupyter authentication, JSON refusals, one sending task.

A socket's ``get`` checks the user (``ws_authenticated``: 403, never a redirect to the login
page) and reads its arguments; ``open`` starts ``pump``, the one coroutine that sends, and a
client that goes away cancels it."""

from __future__ import annotations

import asyncio
import json

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketHandler

from floworch_server.errors import FloworchError
from floworch_server.service import FlowService

from . import identity


class RunSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    def set_default_headers(self) -> None:
        """JupyterHandler's headers make no sense on a websocket."""

    async def flow_service(self) -> FlowService:
        """The service of the caller's tenant, once the caller may read there: runs of other
        tenants are unknown to it, as unknown ids are."""
        runtime = self.settings["floworch"]
        try:
            root = await runtime.service()
        except Exception as exc:  # Temporal or the store is not up (yet)
            raise web.HTTPError(503, f"FlowOrchestrator services are not available: {exc}") from exc
        try:
            principal = identity.authorize(self, runtime, "read")
            service = root.for_tenant(principal.tenant)
        except FloworchError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None
        return service

    def open(self, *args, **kwargs) -> None:
        super().open()
        self.pump_task = asyncio.ensure_future(self.pump())

    async def pump(self) -> None:
        raise NotImplementedError

    def write_error(self, status_code: int, **kwargs) -> None:
        # Refusals before the upgrade answer like the rest of the API: JSON, not an HTML page.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "field": None, "problems": []}))

    def on_message(self, message) -> None:
        """Nothing to receive: what a client asks for travels in the URL."""

    def on_close(self) -> None:
        pump = getattr(self, "pump_task", None)
        if pump is not None and not pump.done():
            pump.cancel()
