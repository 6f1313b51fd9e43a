"""`WS /floworch/api/runs/{run_id}/status`: a run and the status of each node, pushed as they change.

Each message is one JSON object. ``{"type": "run", "run": {...}}`` carries the run exactly as
``GET /floworch/api/runs/{run_id}`` gives it (with ``nodes``, and ``result`` once it succeeded):
once when the socket opens, then again each time the run's status or any node's changes. After
the state of a finished run (success, failed or cancelled) the server closes with 1000.

A run that does not exist gets ``{"type": "error", "error": ..., "field": null, "problems": []}``
and a close with 4404; any other failure to read it the same message and a close with 1011.
(Browsers cannot read the HTTP status of a refused upgrade, so this is said after the upgrade.)
"""

from __future__ import annotations

import json
import logging

from jupyter_server.auth.decorator import ws_authenticated
from tornado.websocket import WebSocketClosedError

from floworch_server.errors import NotFound

from .replies import dumps, error_body
from .sockets import RunSocket

FINAL = ("success", "failed", "cancelled")
NOT_FOUND_CLOSE = 4404  # application close codes are 4000-4999; this one reads like HTTP's 404
ERROR_CLOSE = 1011  # "internal error" (RFC 6455)
# Fields of the run record that move when the store refreshes it (every read) or records its
# node timings, not when the run changes: a difference in them alone is not worth a message.
STORE_BOOKKEEPING = ("updated_at", "timings_at")

log = logging.getLogger(__name__)


class RunStatusSocket(RunSocket):
    @ws_authenticated
    async def get(self, run_id: str) -> None:
        self.run_id = run_id
        self.service = await self.flow_service()
        await super().get(run_id=run_id)

    async def pump(self) -> None:
        try:
            sent = await self._send_run(None)
            if sent["status"] not in FINAL:
                # watch polls Temporal and yields only when a node's status changed; each change
                # sends the whole run, which is what the canvas redraws from.
                async for _changed in self.service.watch(self.run_id):
                    sent = await self._send_run(sent)
                # The run can end on a poll where no node changed: its final state goes out here.
                await self._send_run(sent)
            self.close(1000)
        except WebSocketClosedError:
            return
        except Exception as exc:  # noqa: BLE001 - said to the client, then the socket closes
            missing = isinstance(exc, NotFound)
            if not missing:
                log.warning("run status socket of %s: %s: %s", self.run_id, type(exc).__name__, exc)
            try:
                await self.write_message(json.dumps({"type": "error", **error_body(exc)}))
            except WebSocketClosedError:
                return
            self.close(*((NOT_FOUND_CLOSE, "no such run") if missing else (ERROR_CLOSE, "could not read the run")))

    async def _send_run(self, previous: dict | None) -> dict:
        """Send the run unless it is what was sent last; returns what the client now has."""
        run = await self.service.get_run(self.run_id)
        if "nodes" not in run:  # a Temporal workflow, but not a FlowRun: not a run of ours
            raise NotFound("run", self.run_id)
        if previous is not None and _what_changes(previous) == _what_changes(run):
            return previous
        await self.write_message(dumps({"type": "run", "run": run}))
        return run


def _what_changes(run: dict) -> dict:
    return {key: value for key, value in run.items() if key not in STORE_BOOKKEEPING}
