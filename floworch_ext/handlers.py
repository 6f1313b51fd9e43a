"""The REST API: thin tornado handlers over :class:`~floworch_server.service.FlowService`.

Each handler reads and type-checks its request, calls one service method and writes the result.
Routes are declared once, as OpenAPI path templates (``ROUTES``): the tornado patterns are made
from them, and ``openapi.json`` describes exactly these paths.

Errors are JSON ``{"error": message, "field": where, "problems": [...]}`` with the status of the
service error (400 BadRequest / invalid flow, 404 NotFound, 409 Conflict; 503 when Temporal or
the store cannot be reached).

Every route here needs a signed-in user (Jupyter's identity, or a FlowOrchestrator access token)
whose role in the request's tenant allows it: each handler's ``permissions`` say what each method
needs (auth.PERMISSIONS; GET reads, the rest edit, unless a handler says otherwise), checked once
in ``prepare``. The handler then works on the service of that tenant only. Refreshing a token
needs no sign-in (the refresh token is the credential); the webhook receiver, signed by its
sender, lives in :mod:`floworch_ext.hooks`.
"""

from __future__ import annotations

import json
import re
from http.client import responses
from pathlib import Path
from typing import Any, ClassVar

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from floworch_server import members, metrics, ratelimit
from floworch_server.auth import Principal
from floworch_server.errors import BadRequest, FloworchError
from floworch_server.flowdoc import SCHEMA_PATH as FLOW_SCHEMA_PATH
from floworch_server.nodes.event import EVENT
from floworch_server.service import FlowService
from floworch_server.store import RUN_STATUSES

from . import identity
from .logs import RunLogsSocket
from .replies import dumps, error_body, error_status
from .status import RunStatusSocket

API_PREFIX = "/floworch/api"
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
MAX_RUNS = 1000
MAX_ALERTS = 1000
MAX_AUDIT = 1000
# Version numbers are small positive integers; nine digits keep a typo off the database's int column.
VERSION = re.compile(r"[0-9]{1,9}")
# The same rule the trigger.event node applies to its topic, so a typo is a 400, not a silent no-op.
TOPIC = re.compile(EVENT.config_schema["properties"]["topic"]["pattern"])


class Unavailable(FloworchError):
    status = 503


# ---------------------------------------------------------------------- JSON in
def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def optional(body: dict, name: str, kinds: tuple[type, ...], what: str, default: Any = None) -> Any:
    """``body[name]`` when it is one of ``kinds`` (null counts as absent), else a 400 naming it."""
    value = body.get(name)
    if value is None:
        return default
    # JSON true/false are Python ints too; never let them pass as numbers.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise BadRequest(f"must be {what}, got {_json_type(value)}", field=name)
    return value


def required(body: dict, name: str, kinds: tuple[type, ...], what: str) -> Any:
    if body.get(name) is None:
        raise BadRequest(f"is required: {what}", field=name)
    return optional(body, name, kinds, what)


def whole_number(raw: str, name: str, low: int, high: int) -> int:
    """A query argument that must be a whole number in ``[low, high]``, else a 400 naming it."""
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadRequest(f"must be a whole number from {low} to {high}, got {raw!r}", field=name)
    return value


# ---------------------------------------------------------------------- base handler
class FlowOrchHandler(APIHandler):
    # What a method needs: "read", "edit", "admin" (auth.PERMISSIONS), or None when the handler
    # checks the caller itself. Methods not listed: GET reads, every other method edits.
    permissions: ClassVar[dict[str, str | None]] = {}
    principal: Principal | None = None

    def permission(self) -> str | None:
        method = (self.request.method or "").lower()
        if method in self.permissions:
            return self.permissions[method]
        return "read" if method in ("get", "head") else "edit"

    async def prepare(self) -> None:  # type: ignore[override]
        # A token that did not verify says why (401), before Jupyter's own bare refusal.
        identity.refuse_bad_token(self)
        await super().prepare()
        if self._finished:
            return
        permission = self.permission()
        if permission is not None:
            await self.root_service()  # roles live in the store: 503 first if it is not there
            self.principal = identity.authorize(self, self.settings["floworch"], permission)
            # Per user, then per tenant (ratelimit.py); refused requests get 429 and when to come back.
            limits = ratelimit.RateLimits.from_settings(self.settings["floworch"].settings)
            refusal = limits.refuse_request(self.principal.tenant, self.principal.user)
            if refusal is not None:
                self.set_header("Retry-After", ratelimit.retry_after_header(refusal.wait))
                self.reply({"error": refusal.message(), "field": None, "problems": []}, 429)

    async def root_service(self) -> FlowService:
        try:
            return await self.settings["floworch"].service()
        except Exception as exc:
            raise Unavailable(f"FlowOrchestrator services are not available: {exc}") from exc

    async def service(self) -> FlowService:
        """The service of the request's tenant."""
        root = await self.root_service()
        return root.for_tenant(self.principal.tenant) if self.principal is not None else root

    @property
    def caller(self) -> Principal:
        """The principal ``prepare`` checked: every route that names a permission has one."""
        if self.principal is None:
            raise RuntimeError(f"{type(self).__name__} checks no permission, so it has no principal")
        return self.principal

    @property
    def user_name(self) -> str:
        if self.principal is not None:
            return self.principal.user
        return identity.user_name(self.current_user)

    def json_body(self) -> dict:
        """The request body as a JSON object; an empty body is ``{}``."""
        if not self.request.body or not self.request.body.strip():
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError as exc:
            raise BadRequest(f"is not valid JSON ({exc})", field="body") from None
        if not isinstance(body, dict):
            raise BadRequest(f"must be a JSON object, got {_json_type(body)}", field="body")
        return body

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(data))

    # Service errors are expected answers, not server faults: give them their own status and body.
    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        super().send_error(error_status(exc) or status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:
        if error_status(value) is not None:
            self.log.info("%s %s: %s", self.request.method, self.request.path, value)
        else:
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if error_status(exc) is not None:
            body = error_body(exc)
        else:
            if isinstance(exc, web.HTTPError):
                message = exc.log_message or exc.reason or responses.get(status_code, "error")
            elif exc is not None:
                message = f"internal error: {type(exc).__name__}: {exc}"
            else:
                message = responses.get(status_code, "error")
            body = {"error": message, "field": None, "problems": []}
        self.set_header("Content-Type", "application/json")
        self.finish(dumps(body))


# ---------------------------------------------------------------------- workflows
class WorkflowsHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply((await self.service()).list_workflows())

    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        document = required(body, "document", (dict,), "the .flow document, a JSON object")
        name = optional(body, "name", (str,), "a string")
        record = (await self.service()).create_workflow(document, by=self.user_name, name=name)
        self.reply(record, 201)


class WorkflowHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self, workflow_id: str) -> None:
        self.reply((await self.service()).get_workflow(workflow_id))

    @web.authenticated
    async def put(self, workflow_id: str) -> None:
        document = required(self.json_body(), "document", (dict,), "the .flow document, a JSON object")
        self.reply((await self.service()).save_draft(workflow_id, document, by=self.user_name))

    @web.authenticated
    async def delete(self, workflow_id: str) -> None:
        # Its triggers go first (schedules deleted, webhooks answer 404); run records stay.
        await (await self.service()).delete_workflow(workflow_id, by=self.user_name)
        self.set_status(204)
        self.finish()


class PublishHandler(FlowOrchHandler):
    @web.authenticated
    async def post(self, workflow_id: str) -> None:
        note = optional(self.json_body(), "note", (str,), "a string", default="")
        service = await self.service()
        self.reply(await service.publish(workflow_id, note=note, by=self.user_name), 201)


class UnpublishHandler(FlowOrchHandler):
    @web.authenticated
    async def post(self, workflow_id: str) -> None:
        self.reply(await (await self.service()).unpublish(workflow_id, by=self.user_name))


class VersionsHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self, workflow_id: str) -> None:
        self.reply((await self.service()).list_versions(workflow_id))


class VersionHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self, workflow_id: str, version: str) -> None:
        if not VERSION.fullmatch(version):
            raise BadRequest(f"must be a published version number (1, 2, ...), got {version!r}", field="version")
        self.reply((await self.service()).get_version(workflow_id, int(version)))


class ValidateHandler(FlowOrchHandler):
    permissions: ClassVar[dict[str, str | None]] = {"post": "read"}  # checks a document, stores nothing

    @web.authenticated
    async def post(self) -> None:
        # An invalid flow is the answer here, not a bad request: the canvas draws its problems.
        body = self.json_body()
        if "document" not in body:
            raise BadRequest("is required: the .flow document to check, any JSON value", field="document")
        self.reply({"problems": (await self.service()).validate_document(body["document"])})


class WorkflowRunsHandler(FlowOrchHandler):
    @web.authenticated
    async def post(self, workflow_id: str) -> None:
        body = self.json_body()
        version = optional(body, "version", (int, str), "a version number or 'draft'")
        key = optional(body, "idempotency_key", (str,), "a string")
        service = await self.service()
        run = await service.start_run(
            workflow_id, input=body.get("input"), version=version, by=self.user_name, idempotency_key=key
        )
        self.reply(run, 201)


# ---------------------------------------------------------------------- triggers
class EventsHandler(FlowOrchHandler):
    @web.authenticated
    async def post(self, topic: str) -> None:
        if not TOPIC.fullmatch(topic):
            raise BadRequest(
                f"must be 1 to 200 letters, digits or _ . : / - (send / as %2F), got {topic!r}", field="topic"
            )
        body = self.json_body()
        # The payload may be any JSON value, null included, but it must be there: an event sent
        # with the payload under another name would otherwise start runs with no input.
        if "payload" not in body:
            raise BadRequest("is required: the event payload, any JSON value", field="payload")
        event_id = optional(body, "event_id", (str,), "a string")
        service = await self.service()
        # 202: the runs have started, not finished; a flow that refused the payload says why.
        self.reply(await service.publish_event(topic, body["payload"], event_id=event_id, by=self.user_name), 202)


class SchedulesHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await (await self.service()).list_schedules())


class PauseSchedulesHandler(FlowOrchHandler):
    paused = True

    @web.authenticated
    async def post(self, workflow_id: str) -> None:
        service = await self.service()
        self.reply({"schedules": await service.pause_schedules(workflow_id, paused=self.paused, by=self.user_name)})


class ResumeSchedulesHandler(PauseSchedulesHandler):
    paused = False


class WebhooksHandler(FlowOrchHandler):
    permissions: ClassVar[dict[str, str | None]] = {"get": "edit"}  # the answer holds the signing secrets

    @web.authenticated
    async def get(self, workflow_id: str) -> None:
        # The engine knows paths under the server root; senders need them under this base URL.
        hooks = (await self.service()).webhooks(workflow_id)
        self.reply([{**hook, "path": url_path_join(self.base_url, hook["path"])} for hook in hooks])


# ---------------------------------------------------------------------- runs
class RunsHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        status = self.get_query_argument("status", None)
        if status is not None and status not in RUN_STATUSES:
            raise BadRequest(f"must be one of {', '.join(RUN_STATUSES)}, got {status!r}", field="status")
        limit = whole_number(self.get_query_argument("limit", "100"), "limit", 1, MAX_RUNS)
        workflow_id = self.get_query_argument("workflow_id", None)
        service = await self.service()
        self.reply(await service.list_runs(workflow_id=workflow_id, status=status, limit=limit))


class RunHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self, run_id: str) -> None:
        self.reply(await (await self.service()).get_run(run_id))


class NodeInspectHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self, run_id: str, node_id: str) -> None:
        self.reply(await (await self.service()).inspect(run_id, node_id))


class TraceHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self, run_id: str) -> None:
        self.reply({"segments": await (await self.service()).trace(run_id)})


class ApprovalHandler(FlowOrchHandler):
    @web.authenticated
    async def post(self, run_id: str, node_id: str) -> None:
        body = self.json_body()
        decision = required(body, "decision", (str,), "'approved' or 'rejected'")
        comment = optional(body, "comment", (str,), "a string", default="")
        service = await self.service()
        self.reply(await service.approve(run_id, node_id, decision=decision, by=self.user_name, comment=comment))


class CancelHandler(FlowOrchHandler):
    @web.authenticated
    async def post(self, run_id: str) -> None:
        # 202: Temporal has the request; the run reports "cancelled" once its workflow stops.
        self.reply(await (await self.service()).cancel(run_id, by=self.user_name), 202)


# ---------------------------------------------------------------------- dashboard, alerts
class DashboardHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        service = await self.service()
        data = await service.dashboard(
            self.get_query_argument("range", "24h"),
            until=self.get_query_argument("until", None),
            bucket=self.get_query_argument("bucket", "auto"),
            slo=self.get_query_argument("slo", str(metrics.DEFAULT_SLO)),
        )
        self.reply(metrics.to_json(data))


class AlertsHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        state = self.get_query_argument("open", None)
        if state not in (None, "true", "false"):
            raise BadRequest(f"must be true (open alerts) or false (cleared ones), got {state!r}", field="open")
        limit = whole_number(self.get_query_argument("limit", "100"), "limit", 1, MAX_ALERTS)
        service = await self.service()
        self.reply(service.list_alerts(open_only=state == "true", cleared_only=state == "false", limit=limit))


# ---------------------------------------------------------------------- identity, members, audit
class MeHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        p = self.caller
        self.reply({"user": p.user, "tenant": p.tenant, "role": p.role, "via": p.via})


class LoginHandler(FlowOrchHandler):
    """Tokens for the signed-in Jupyter user, for clients outside JupyterLab (fo.login)."""

    permissions: ClassVar[dict[str, str | None]] = {"post": "read"}

    @web.authenticated
    async def post(self) -> None:
        p = self.caller
        if p.via != "jupyter":
            raise BadRequest(
                "log in with your Jupyter credentials; an access token is refreshed, not logged in with",
                field="Authorization",
            )
        runtime = self.settings["floworch"]
        store = (await self.service()).store
        if store.get_member(p.user) is None and p.role is not None:
            # A role that came from being this server's Jupyter user (settings.jupyter_role)
            # becomes a membership: tokens act by membership, which admins can see and revoke.
            members.set_member(store, p.user, p.role, by=p.user)
            runtime.roles.forget()
        store.audit(p.user, "token.login", p.user, None)
        self.reply(runtime.tokens.login(p.user, p.tenant), 201)


class RefreshHandler(FlowOrchHandler):
    """A new token pair for a refresh token, which is the only credential this route takes."""

    permissions: ClassVar[dict[str, str | None]] = {"post": None}

    # No cookie authenticates this route, so there is nothing for a cross-site request to forge.
    def check_xsrf_cookie(self) -> None:
        pass

    @allow_unauthenticated
    async def post(self) -> None:
        token = required(self.json_body(), "refresh_token", (str,), "the refresh token of your last login or refresh")
        await self.root_service()
        self.reply(self.settings["floworch"].tokens.refresh(token), 201)


class TokensHandler(FlowOrchHandler):
    """An admin issues a login for a member (a service account, a colleague's script)."""

    permissions: ClassVar[dict[str, str | None]] = {"post": "admin"}

    @web.authenticated
    async def post(self) -> None:
        user = required(self.json_body(), "user", (str,), "the member's user name")
        service = await self.service()
        if service.store.get_member(user) is None:
            raise BadRequest(f"'{user}' is not a member of tenant '{service.tenant}': add them first", field="user")
        service.store.audit(self.user_name, "token.issue", user, None)
        self.reply(self.settings["floworch"].tokens.login(user, service.tenant), 201)


class MembersHandler(FlowOrchHandler):
    permissions: ClassVar[dict[str, str | None]] = {"get": "admin"}

    @web.authenticated
    async def get(self) -> None:
        self.reply(members.list_members((await self.service()).store))


class MemberHandler(FlowOrchHandler):
    permissions: ClassVar[dict[str, str | None]] = {"put": "admin", "delete": "admin"}

    @web.authenticated
    async def put(self, user: str) -> None:
        role = required(self.json_body(), "role", (str,), "admin, editor or viewer")
        record = members.set_member((await self.service()).store, user, role, by=self.user_name)
        self.settings["floworch"].roles.forget()
        self.reply(record)

    @web.authenticated
    async def delete(self, user: str) -> None:
        members.remove_member((await self.service()).store, user, by=self.user_name)
        self.settings["floworch"].roles.forget()
        self.set_status(204)
        self.finish()


class AuditHandler(FlowOrchHandler):
    permissions: ClassVar[dict[str, str | None]] = {"get": "admin"}

    @web.authenticated
    async def get(self) -> None:
        args = {name: self.get_query_argument(name, None) for name in ("actor", "action", "target")}
        since, until = (self._time(name) for name in ("since", "until"))
        limit = whole_number(self.get_query_argument("limit", "100"), "limit", 1, MAX_AUDIT)
        store = (await self.service()).store
        self.reply(store.list_audit(**args, since=since, until=until, limit=limit))

    def _time(self, name: str):
        raw = self.get_query_argument(name, None)
        if raw is None:
            return None
        try:
            return metrics.as_utc(raw)
        except (TypeError, ValueError):
            raise BadRequest(f"must be an ISO 8601 date-time, got {raw!r}", field=name) from None


# ---------------------------------------------------------------------- catalogue, description
class NodesHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply((await self.service()).catalogue())


class OpenAPIHandler(FlowOrchHandler):
    @web.authenticated
    async def get(self) -> None:
        self.reply(openapi_document(self.base_url))


def openapi_document(base_url: str) -> dict:
    document = json.loads(OPENAPI_PATH.read_text())
    # The paths hold the full API prefix; the server URL is this server's base URL.
    document["servers"] = [{"url": base_url.rstrip("/") or "/"}]
    document["components"]["schemas"]["FlowDocument"] = _flow_schema("#/components/schemas/FlowDocument")
    _add_common(document)
    return document


# What every operation of the API may answer whatever it does (FlowOrchHandler.prepare and the
# service's errors), so the file describes each operation's own answers only.
COMMON_RESPONSES = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "403": "Forbidden",
    "429": "TooManyRequests",
    "503": "Unavailable",
}


def _add_common(document: dict) -> None:
    """Every API path takes the tenant header; every operation the common responses (unless it
    describes one of them itself, as the OAuth callback's HTML pages do)."""
    for path, item in document["paths"].items():
        if not path.startswith(API_PREFIX + "/"):
            continue
        item.setdefault("parameters", []).append({"$ref": "#/components/parameters/tenant"})
        for method, operation in item.items():
            if method == "parameters":
                continue
            for code, name in COMMON_RESPONSES.items():
                operation["responses"].setdefault(code, {"$ref": f"#/components/responses/{name}"})


def _flow_schema(at: str) -> dict:
    """The .flow format's one JSON Schema (kept by the engine), to be placed at ``at``.

    Its inner references are rewritten to point from the document's root, and its own ``$id``
    dropped, because most OpenAPI tools do not resolve references against an embedded ``$id``."""
    text = FLOW_SCHEMA_PATH.read_text().replace('"#/$defs/', f'"{at}/$defs/')
    schema = json.loads(text)
    schema.pop("$id", None)
    schema.pop("$schema", None)
    return schema


ROUTES: list[tuple[str, type]] = [
    ("/workflows", WorkflowsHandler),
    ("/workflows/{workflow_id}", WorkflowHandler),
    ("/workflows/{workflow_id}/publish", PublishHandler),
    ("/workflows/{workflow_id}/versions", VersionsHandler),
    ("/workflows/{workflow_id}/versions/{version}", VersionHandler),
    ("/workflows/{workflow_id}/runs", WorkflowRunsHandler),
    ("/workflows/{workflow_id}/unpublish", UnpublishHandler),
    ("/workflows/{workflow_id}/webhooks", WebhooksHandler),
    ("/workflows/{workflow_id}/schedules/pause", PauseSchedulesHandler),
    ("/workflows/{workflow_id}/schedules/resume", ResumeSchedulesHandler),
    ("/schedules", SchedulesHandler),
    ("/events/{topic}", EventsHandler),
    ("/runs", RunsHandler),
    ("/runs/{run_id}", RunHandler),
    ("/runs/{run_id}/approvals/{node_id}", ApprovalHandler),
    ("/runs/{run_id}/cancel", CancelHandler),
    ("/runs/{run_id}/logs", RunLogsSocket),
    ("/runs/{run_id}/status", RunStatusSocket),
    ("/runs/{run_id}/nodes/{node_id}", NodeInspectHandler),
    ("/runs/{run_id}/trace", TraceHandler),
    ("/validate", ValidateHandler),
    ("/dashboard", DashboardHandler),
    ("/alerts", AlertsHandler),
    ("/nodes", NodesHandler),
    ("/me", MeHandler),
    ("/auth/login", LoginHandler),
    ("/auth/refresh", RefreshHandler),
    ("/auth/tokens", TokensHandler),
    ("/members", MembersHandler),
    ("/members/{user}", MemberHandler),
    ("/audit", AuditHandler),
    ("/openapi.json", OpenAPIHandler),
]

# OAuth "Connect" (start and callback); its handlers build on FlowOrchHandler above.
from .oauth import OAUTH_ROUTES  # noqa: E402

ROUTES += OAUTH_ROUTES

# Dead letters: failed runs and their retries.
from .deadletters import DEAD_LETTER_ROUTES  # noqa: E402

ROUTES += DEAD_LETTER_ROUTES

# Debugging a run: "Try here" on a node, run-vs-run diff.
from .debugging import DEBUG_ROUTES  # noqa: E402

ROUTES += DEBUG_ROUTES


def route_pattern(template: str) -> str:
    """``/runs/{run_id}`` -> ``/runs/(?P<run_id>[^/]+)``; everything else matched literally."""
    parts = re.split(r"\{(\w+)\}", template)
    return "".join(f"(?P<{p}>[^/]+)" if i % 2 else re.escape(p) for i, p in enumerate(parts))


def handlers(base_url: str) -> list[tuple[str, type[FlowOrchHandler]]]:
    return [(url_path_join(base_url, API_PREFIX + route_pattern(path)), handler) for path, handler in ROUTES]
