"""`WS /floworch/api/runs/{run_id}/logs`: a run's log lines, the backlog then live.

Each message is one JSON object: ``{"type": "log", "record": {...}}`` in store order (the record's
``id`` is the cursor), then ``{"type": "end", "after": <last id>}`` once the run has finished and
every line is out. A client that reconnects with ``?after=<last id it saw>`` gets exactly what
came after: no gap, no duplicate."""

from __future__ import annotations

import asyncio
import json

from jupyter_server.auth.decorator import ws_authenticated
from tornado import web
from tornado.websocket import WebSocketClosedError

from .sockets import RunSocket

# Lines are written by worker processes into the store; a short poll keeps delivery near-live.
POLL_SECONDS = 0.05
FINAL = ("success", "failed", "cancelled")


def _iso(value):
    return value.isoformat()


class RunLogsSocket(RunSocket):
    @ws_authenticated
    async def get(self, run_id: str) -> None:
        try:
            self.after = int(self.get_argument("after", "0"))
        except ValueError:
            raise web.HTTPError(400, "after must be a log record id (an integer)") from None
        self.run_id = run_id
        self.service = await self.flow_service()
        await super().get(run_id=run_id)

    async def pump(self) -> None:
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
