"""Dead letters over REST (thin handlers over ``FlowService.dead_letters`` and ``retry_runs``).

- ``GET /dead-letters?workflow_id&node_type&error_kind&limit&include_retried``: the tenant's
  failed runs not retried yet, newest first, with the failed node, its type, the error's kind
  and message and the run's input (``include_retried=true``: retried ones too, with their retry).
- ``POST /dead-letters/retry`` ``{"run_ids": [...], "mode": "start"|"resume", "version":
  "same"|"latest"}`` -> 201, one entry per run with the run that retries it. Every run is checked
  before any starts; the same retry again answers with the same run.
"""

from __future__ import annotations

from typing import ClassVar

from tornado import web

from floworch_server.deadletters import MAX_LIMIT
from floworch_server.errors import BadRequest

from .handlers import FlowOrchHandler, optional, required, whole_number


class DeadLettersHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        retried = self.get_query_argument("include_retried", "false")
        if retried not in ("true", "false"):
            raise BadRequest(f"must be true or false, got {retried!r}", field="include_retried")
        limit = whole_number(self.get_query_argument("limit", "100"), "limit", 1, MAX_LIMIT)
        service = await self.service()
        letters = await service.dead_letters(
            self.get_query_argument("workflow_id", None),
            node_type=self.get_query_argument("node_type", None),
            error_kind=self.get_query_argument("error_kind", None),
            limit=limit,
            include_retried=retried == "true",
        )
        self.reply(letters)


class RetryHandler(FlowOrchHandler):
    # Starts runs: an editor's right, like starting one.
    permissions: ClassVar[dict[str, str | None]] = {"post": "edit"}

    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        run_ids = required(body, "run_ids", (list,), "a list of the failed runs' ids")
        mode = optional(body, "mode", (str,), "'start' or 'resume'", default="start")
        version = optional(body, "version", (str,), "'same' or 'latest'", default="same")
        service = await self.service()
        self.reply(await service.retry_runs(run_ids, mode=mode, version=version, by=self.user_name), 201)


DEAD_LETTER_ROUTES: list[tuple[str, type]] = [
    ("/dead-letters", DeadLettersHandler),
    ("/dead-letters/retry", RetryHandler),
]
