"""`WS /floworch/api/runs/{run_id}/logs`: a run's log lines, the backlog then live.

Each message is one JSON object: ``{"type": "log", "record": {...}}`` in store order (the record's
``id`` is the cursor), then ``{"type": "end", "after": <last id>}`` once the run has finished and
every line is out. A client that reconnects with ``?after=<last id it saw>`` gets exactly what
came after: no gap, no duplicate."""

from __future__ import annotations

import asyncio
import json

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler


# Lines are written by worker processes into the store; a short poll keeps delivery near-live.
POLL_SECONDS = 0.05
FINAL = ("success", "failed", "cancelled")


def _iso(value):
    return value.isoformat()


class RunLogsSocket(WebSocketMixin, WebSocketHandler, JupyterHandler):
    def set_default_headers(self) -> None:
        """JupyterHandler's headers make no sense on a websocket."""

    @ws_authenticated
    async def get(self, run_id: str) -> None:
        try:
            self.after = int(self.get_argument("after", "0"))
        except ValueError:
            raise web.HTTPError(400, "after must be a log record id (an integer)") from None
        self.run_id = run_id
        self.service = await self.settings["floworch"].service()
        await super().get(run_id=run_id)

    def open(self, run_id: str) -> None:  # type: ignore[override]
        super().open()
        self.pump = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        store = self.service.store
        try:
            while True:
                # Read the status first: lines written before a run ended are all in the store then.
                run = await asyncio.to_thread(store.get_run, self.run_id)
                rows = await asyncio.to_thread(store.list_logs, self.run_id, self.after)
                for row in rows:
                    await self.write_message(json.dumps({"type": "log", "record": row}, default=_iso))
                    self.after = row["id"]
                if not rows and run is not None and run["status"] in FINAL:
                    await self.write_message(json.dumps({"type": "end", "after": self.after, "status": run["status"]}))
                    self.close()
                    return
                if not rows:
                    await asyncio.sleep(POLL_SECONDS)
        except WebSocketClosedError:
            return

    def write_error(self, status_code: int, **kwargs) -> None:
        # Refusals before the upgrade answer like the rest of the API: JSON, not an HTML page.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message, "field": None, "problems": []}))

    def on_message(self, message) -> None:
        """Nothing to receive: the cursor travels in the URL."""

    def on_close(self) -> None:
        pump = getattr(self, "pump", None)
        if pump is not None and not pump.done():
            pump.cancel()
