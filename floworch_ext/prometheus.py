"""``GET <base_url>/floworch/metrics``: FlowOrchestrator's metrics in the Prometheus text format.

Run counts by status and the SLO's burn rates and budget (from the store), activity latency
summaries per node type (from the recorded node timings), task-queue backlog and worker pollers
(from Temporal, now). What each one means is in :mod:`floworch_server.metrics`.

Jupyter authentication applies, as on every FlowOrchestrator route but the webhook receiver: a
scraper sends ``Authorization: token <token>`` (or a member's access token). Without it the answer
is 403, not a redirect to the login page. The figures are the deployment's own tenant's, so a
caller must be allowed to read there. Scrapes are not user activity: they do not keep an idle server from being culled.
"""

from __future__ import annotations

from jupyter_server.base.handlers import APIHandler
from tornado import web

from floworch_server.errors import FloworchError
from floworch_server.metrics import PROMETHEUS_CONTENT_TYPE

from . import identity

METRICS_PATH = "/floworch/metrics"


class MetricsHandler(APIHandler):
    _track_activity = False

    @web.authenticated
    async def get(self) -> None:
        runtime = self.settings["floworch"]
        try:
            service = await runtime.service()
        except Exception as exc:  # the store or Temporal is not up (yet)
            raise web.HTTPError(503, "FlowOrchestrator services are not available: %s", exc) from exc
        try:
            principal = identity.authorize(self, runtime, "read")
        except FloworchError as exc:
            raise web.HTTPError(exc.status, str(exc)) from None
        if principal.tenant != runtime.settings.tenant:
            raise web.HTTPError(
                403, f"these metrics are tenant '{runtime.settings.tenant}''s, not '{principal.tenant}''s"
            )
        text = await service.prometheus()
        self.set_header("Cache-Control", "no-store")
        self.finish(text, set_content_type=PROMETHEUS_CONTENT_TYPE)
