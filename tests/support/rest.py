"""A real Jupyter server with the extension, and a client that checks replies against openapi.json.

Every reply is checked against the OpenAPI document: its status must be documented for the
route, and its body must match the documented schema. So tests using ``api`` also keep the API
description true. Test modules use the fixtures by importing them::

    from support.rest import api, jp_server_config, runtime  # noqa: F401  (fixtures)

and declare ``pytest_plugins = ["pytest_jupyter.jupyter_server"]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from traitlets.config import Config

from conftest import flow_doc, wait_until
from floworch_ext.handlers import API_PREFIX, openapi_document


class Ada(IdentityProvider):
    """Token auth as usual, but the token's user is always Ada (the default is a random name)."""

    def generate_anonymous_user(self, handler):
        return User(username="ada", name="Ada Lovelace")


def server_config(**floworch: Any) -> Config:
    """The server's config: the extension on, Ada as the user, ``FlowOrch`` settings given."""
    config = {"ServerApp": {"jpserver_extensions": {"floworch_ext": True}, "identity_provider_class": Ada}}
    settings = {name: value for name, value in floworch.items() if value is not None}
    if settings:
        config["FlowOrch"] = settings
    return Config(config)


# ---------------------------------------------------------------------- fixtures
@pytest.fixture
def jp_server_config():
    return server_config()


@pytest.fixture
def api(jp_fetch, jp_base_url) -> Api:
    return Api(jp_fetch, openapi_document(jp_base_url))


@pytest.fixture
def runtime(jp_serverapp):
    return jp_serverapp.web_app.settings["floworch"]


# ---------------------------------------------------------------------- the client
@dataclass
class Reply:
    code: int
    json: Any


class Api:
    """Calls a route by its OpenAPI template and checks the reply against the document."""

    def __init__(self, fetch, document: dict) -> None:
        self.fetch = fetch
        self.document = document
        self.registry = Registry().with_resource(
            "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
        )

    async def __call__(
        self, method: str, template: str, body: Any = None, *, params=None, headers=None, **path
    ) -> Reply:
        url = template.format(**path)
        kwargs: dict[str, Any] = {"method": method, "raise_error": False, "headers": headers, "params": params}
        if body is not None or method in ("POST", "PUT"):
            kwargs["body"] = body if isinstance(body, str) else json.dumps(body if body is not None else {})
        response = await self.fetch(API_PREFIX + url, **kwargs)
        # Pages for a browser tab (the OAuth callback) are text; everything else is JSON.
        html = response.headers.get("Content-Type", "").startswith("text/html")
        body = response.body.decode() if html else (json.loads(response.body) if response.body else None)
        reply = Reply(response.code, body)
        self.check(method, template, reply)
        return reply

    def check(self, method: str, template: str, reply: Reply) -> None:
        responses = self.document["paths"][API_PREFIX + template][method.lower()]["responses"]
        code = str(reply.code)
        assert code in responses, f"{method} {template} answered {code}, which openapi.json does not list: {reply.json}"
        if "$ref" not in responses[code] and "content" not in responses[code]:
            assert reply.json is None, f"{method} {template} {code} is documented without a body: {reply.json}"
            return
        # Shared error responses are $refs into components; the others live under the operation.
        where = (
            responses[code].get("$ref") or f"#/paths/{_escape(API_PREFIX + template)}/{method.lower()}/responses/{code}"
        )
        media = "text~1html" if "text/html" in responses[code].get("content", {}) else "application~1json"
        self.conforms(reply.json, f"{where}/content/{media}/schema", f"{method} {template} {code}")

    def conforms(self, value: Any, pointer: str, what: str) -> None:
        """Assert ``value`` matches the schema at ``pointer`` in the document (``#/components/...``)."""
        validator = jsonschema.Draft202012Validator(
            {"$ref": f"urn:openapi{pointer}"}, registry=self.registry, format_checker=jsonschema.FormatChecker()
        )
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        assert error is None, f"{what} does not match openapi.json: {error.message} at {list(error.absolute_path)}"

    async def get(self, template: str, **kwargs: Any) -> Reply:
        return await self("GET", template, **kwargs)

    async def post(self, template: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self("POST", template, body, **kwargs)

    async def put(self, template: str, body: Any = None, **kwargs: Any) -> Reply:
        return await self("PUT", template, body, **kwargs)

    async def delete(self, template: str, **kwargs: Any) -> Reply:
        return await self("DELETE", template, **kwargs)


def _escape(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


# ---------------------------------------------------------------------- flows and runs through the API
async def create(api: Api, nodes: list[dict], edges: list, *, publish: bool = True) -> str:
    created = await api.post("/workflows", {"document": flow_doc(nodes, edges)})
    assert created.code == 201, created.json
    if publish:
        assert (await api.post("/workflows/{workflow_id}/publish", workflow_id=created.json["id"])).code == 201
    return created.json["id"]


async def run_until(api: Api, run_id: str, done, timeout: float = 30) -> dict:
    async def check():
        reply = await api.get("/runs/{run_id}", run_id=run_id)
        assert reply.code == 200, reply.json
        return reply.json if done(reply.json) else None

    return await wait_until(check, timeout, interval=0.1)


def statuses(run: dict) -> dict[str, str]:
    return {n["node"]: n["status"] for n in run["nodes"]}
