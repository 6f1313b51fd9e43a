"""Debugging routes of the Run panel (thin handlers over :mod:`floworch_server.debug`).

- ``POST /runs/{run_id}/nodes/{node_id}/try`` ``{"config"?, "input"?, "call"?}``: "Try here" in
  the inspector. The node runs again on a worker, as a test run of its own (trigger "test",
  version "draft"), on the resolved config and inputs it had in the run, with the given config
  fields merged over that config and inputs (by upstream node id) over its inputs. The real run
  is never touched. The answer is the try's output, error, logs and test run id.
- ``GET /runs/{run_id}/diff/{other_run_id}``: the other run compared with this one.
"""

from __future__ import annotations

from typing import ClassVar

from tornado import web

from .handlers import FlowOrchHandler, optional


class TryNodeHandler(FlowOrchHandler):
    permissions: ClassVar[dict[str, str | None]] = {"post": "edit"}  # it starts a (test) run

    @web.authenticated
    async def post(self, run_id: str, node_id: str) -> None:
        body = self.json_body()
        config = optional(body, "config", (dict,), "an object of config fields to change")
        given = optional(body, "input", (dict,), "an object of inputs by upstream node id")
        call = optional(body, "call", (str,), 'a call of the node in a loop, e.g. "2"')
        service = await self.service()
        self.reply(await service.try_node(run_id, node_id, config=config, input=given, call=call, by=self.user_name))


class RunDiffHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self, run_id: str, other_run_id: str) -> None:
        self.reply(await (await self.service()).diff_runs(run_id, other_run_id))


DEBUG_ROUTES: list[tuple[str, type]] = [
    ("/runs/{run_id}/nodes/{node_id}/try", TryNodeHandler),
    ("/runs/{run_id}/diff/{other_run_id}", RunDiffHandler),
]
