"""ai.llm with the official OpenAI and Anthropic SDKs against a small HTTP server in the test that
speaks both protocols (POST /v1/chat/completions and POST /v1/messages): requests, outputs,
structured output and its repair, error mapping, templates, where keys come from, and two runs
end to end through the engine on the session's Temporal."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest

from conftest import finished, flow_doc, nodes_by_id
from floworch_server.flowdoc import FlowDocument
from floworch_server.integrations import Integrations
from floworch_server.nodes.llm import LLM
from floworch_server.nodes.spec import NodeError
from floworch_server.settings import Settings
from floworch_server.validate import validate

TRIGGER = {"id": "start", "type": "trigger.manual"}
PERSON = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
}


# --------------------------------------------------------------------------- the model server
def openai_reply(text: str, model: str = "gpt-test", prompt_tokens: int = 12, completion_tokens: int = 5) -> dict:
    return {
        "body": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    }


def anthropic_reply(text: str, model: str = "claude-test", input_tokens: int = 20, output_tokens: int = 7) -> dict:
    return {
        "body": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
    }


def openai_error(status: int, message: str, headers: dict | None = None) -> dict:
    return {
        "status": status,
        "headers": headers or {},
        "body": {"error": {"message": message, "type": "invalid_request_error", "code": None}},
    }


def anthropic_error(status: int, message: str, kind: str = "authentication_error") -> dict:
    return {"status": status, "body": {"type": "error", "error": {"type": kind, "message": message}}}


class ModelServer:
    """Answers each POST with the next scripted response; records every request."""

    def __init__(self) -> None:
        self.script: deque[dict] = deque()
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                server.requests.append(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "json": body}
                )
                step = (
                    server.script.popleft()
                    if server.script
                    else {"status": 500, "body": {"error": {"message": "nothing scripted"}}}
                )
                time.sleep(step.get("delay", 0))
                data = json.dumps(step["body"]).encode()
                try:
                    self.send_response(step.get("status", 200))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in step.get("headers", {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args):
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"

    def answer(self, *steps: dict) -> ModelServer:
        self.script.extend(steps)
        return self

    def __enter__(self) -> ModelServer:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def model():
    with ModelServer() as server:
        yield server


# --------------------------------------------------------------------------- running the node
class FakeContext:
    run_id, node_id, attempt, idempotency_key = "run-1", "llm", 1, "run-1:llm"

    def __init__(self) -> None:
        self.logs: list[tuple[str, str, dict]] = []
        self.heartbeats = 0

    def heartbeat(self, *details: Any) -> None:
        self.heartbeats += 1

    def log(self, level: str, message: str, **extra: Any) -> None:
        self.logs.append((level, message, extra))


async def run_llm(config: dict, inputs: dict | None = None, ctx: FakeContext | None = None) -> Any:
    """What the activity does: check the resolved config against the schema, then execute."""
    jsonschema.Draft202012Validator(LLM.config_schema).validate(config)
    assert LLM.execute is not None
    return await LLM.execute(ctx or FakeContext(), config, inputs or {})


async def failure(config: dict, inputs: dict | None = None, ctx: FakeContext | None = None) -> NodeError:
    with pytest.raises(NodeError) as caught:
        await run_llm(config, inputs, ctx)
    return caught.value


def custom(model: ModelServer, **config: Any) -> dict:
    """A keyless OpenAI-compatible server at the test's URL."""
    return {"provider": "custom", "base_url": model.url + "/v1", "model": "local-model", "prompt": "Hi", **config}


def add_integration(service, provider: str, base_url: str | None, key: str = "sk-stored") -> str:
    name = f"{provider}-{uuid.uuid4().hex[:6]}"
    Integrations.from_settings(Settings.from_env(), store=service.store).add(
        name, provider, {"api_key": key}, by="tester", settings={"base_url": base_url} if base_url else None
    )
    return name


# --------------------------------------------------------------------------- requests and replies
async def test_an_openai_reply_becomes_the_output_against_a_local_openai_protocol_server(model, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", model.url + "/v1")
    model.answer(openai_reply("Bonjour, Ada!", model="gpt-test-2024", prompt_tokens=31, completion_tokens=4))
    ctx = FakeContext()
    out = await run_llm(
        {
            "model": "gpt-test",
            "system": "You translate to {{ language }}.",
            "prompt": "Greet {{ customer }}.",
            "variables": {"language": "French", "customer": "Ada"},
            "temperature": 0.2,
            "max_tokens": 50,
        },
        ctx=ctx,
    )
    (request,) = model.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-env"
    assert request["json"]["model"] == "gpt-test"
    assert request["json"]["messages"] == [
        {"role": "system", "content": "You translate to French."},
        {"role": "user", "content": "Greet Ada."},
    ]
    assert (request["json"]["temperature"], request["json"]["max_tokens"]) == (0.2, 50)
    assert "response_format" not in request["json"]
    assert out["text"] == "Bonjour, Ada!" and "json" not in out
    assert (out["model"], out["usage"], out["attempts"]) == (
        "gpt-test-2024",
        {"input_tokens": 31, "output_tokens": 4},
        1,
    )
    assert isinstance(out["latency_ms"], int) and out["latency_ms"] >= 0
    (level, message, extra) = ctx.logs[0]
    assert level == "info" and "31 in / 4 out tokens" in message
    assert extra["usage"] == {"input_tokens": 31, "output_tokens": 4} and extra["latency_ms"] == out["latency_ms"]


async def test_an_anthropic_reply_becomes_the_output_against_a_local_anthropic_protocol_server(model, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model.url)
    model.answer(anthropic_reply("Hello there", input_tokens=40, output_tokens=3))
    out = await run_llm(
        {
            "provider": "anthropic",
            "model": "claude-test",
            "system": "Be brief.",
            "prompt": "Say hello to {{ who }}",
            "variables": {"who": "Bo"},
        }
    )
    (request,) = model.requests
    assert request["path"] == "/v1/messages"
    # The anthropic SDK (2.x) sends the key as a bearer token, with the API version it speaks.
    assert request["headers"]["authorization"] == "Bearer sk-ant-env" and request["headers"]["anthropic-version"]
    # The system prompt is its own field in the Messages API; max_tokens is required there.
    assert request["json"]["system"] == "Be brief."
    assert request["json"]["messages"] == [{"role": "user", "content": "Say hello to Bo"}]
    assert (request["json"]["model"], request["json"]["max_tokens"]) == ("claude-test", 1024)
    assert "temperature" not in request["json"]
    assert (out["text"], out["model"], out["usage"], out["attempts"]) == (
        "Hello there",
        "claude-test",
        {"input_tokens": 40, "output_tokens": 3},
        1,
    )


async def test_a_temperature_for_anthropic_is_refused_naming_the_field(model):
    error = await failure(
        {"provider": "anthropic", "base_url": model.url, "model": "claude-test", "prompt": "Hi", "temperature": 0.2}
    )
    assert str(error).startswith("config.temperature:") and not error.retryable and model.requests == []


async def test_templates_see_the_variables_by_name_and_upstream_outputs_as_inputs(model):
    model.answer(openai_reply("ok"))
    await run_llm(
        custom(
            model,
            prompt="{% for item in inputs.fetch.tags %}{{ item | upper }};{% endfor %} for {{ name }}",
            variables={"name": "Ada"},
        ),
        inputs={"fetch": {"tags": ["a", "b"]}},
    )
    assert model.requests[0]["json"]["messages"][-1]["content"] == "A;B; for Ada"


# --------------------------------------------------------------------------- structured output
async def test_json_output_is_parsed_from_a_fenced_reply_and_checked_against_the_schema(model):
    model.answer(openai_reply('```json\n{"name": "Ada", "age": 36}\n```'))
    out = await run_llm(custom(model, system="Extract the person.", output_schema=PERSON))
    request = model.requests[0]["json"]
    assert request["response_format"] == {"type": "json_object"}
    system = request["messages"][0]["content"]
    assert system.startswith("Extract the person.") and "JSON Schema" in system and '"age"' in system
    assert out["json"] == {"name": "Ada", "age": 36} and out["attempts"] == 1


async def test_an_output_that_breaks_the_schema_is_repaired_by_showing_the_model_its_error(model):
    model.answer(
        openai_reply('{"name": "Ada", "age": "thirty-six"}', prompt_tokens=10, completion_tokens=8),
        openai_reply('{"name": "Ada", "age": 36}', prompt_tokens=30, completion_tokens=6),
    )
    ctx = FakeContext()
    out = await run_llm(custom(model, output_schema=PERSON), ctx=ctx)
    assert out["json"] == {"name": "Ada", "age": 36}
    assert (out["attempts"], out["usage"]) == (2, {"input_tokens": 40, "output_tokens": 14})
    repair = model.requests[1]["json"]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"name": "Ada", "age": "thirty-six"}'}
    assert repair[-1]["role"] == "user"
    assert (
        "$.age: 'thirty-six' is not of type 'integer'" in repair[-1]["content"]
        and "corrected JSON only" in repair[-1]["content"]
    )
    assert [level for level, *_ in ctx.logs] == ["info", "warning", "info"]


async def test_an_output_that_never_matches_fails_without_retry_carrying_the_last_reply(model):
    model.answer(openai_reply("not json"), openai_reply('{"name": 1}'), openai_reply('{"name": "Ada"}'))
    error = await failure(custom(model, output_schema=PERSON, repair_attempts=2))
    assert str(error) == "output did not match the schema after 2 repairs: at $: 'age' is a required property"
    assert not error.retryable
    assert error.details == {
        "last_output": '{"name": "Ada"}',
        "error": "at $: 'age' is a required property",
        "attempts": 3,
    }
    assert len(model.requests) == 3
    assert "the reply is not valid JSON" in model.requests[1]["json"]["messages"][-1]["content"]


# --------------------------------------------------------------------------- failures
async def test_a_429_with_a_short_retry_after_is_waited_out_inside_the_activity(model):
    model.answer(openai_error(429, "Rate limit reached", {"Retry-After": "1"}), openai_reply("done"))
    ctx = FakeContext()
    started = time.monotonic()
    out = await run_llm(custom(model), ctx=ctx)
    assert out["text"] == "done" and out["attempts"] == 1
    assert time.monotonic() - started >= 0.9 and ctx.heartbeats >= 1
    assert len(model.requests) == 2
    assert ctx.logs[0][0] == "warning" and "waiting 1s" in ctx.logs[0][1]


async def test_a_429_with_a_long_retry_after_is_left_to_the_retry_policy(model):
    model.answer(openai_error(429, "Rate limit reached", {"Retry-After": "120"}))
    error = await failure(custom(model))
    assert error.retryable and "429" in str(error) and "Retry-After 120s" in str(error)
    assert len(model.requests) == 1


async def test_a_server_slower_than_timeout_seconds_is_a_retryable_failure(model):
    model.answer({**openai_reply("too late"), "delay": 2})
    started = time.monotonic()
    error = await failure(custom(model, timeout_seconds=0.5))
    assert time.monotonic() - started < 1.8
    assert error.retryable and error.kind == "LlmTimeout"
    assert "did not answer within 0.5s (config.timeout_seconds)" in str(error)


async def test_a_5xx_is_retryable(model):
    model.answer(openai_error(503, "overloaded"))
    error = await failure(custom(model))
    assert error.retryable and "503" in str(error) and "overloaded" in str(error)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_401_fails_at_once_with_the_status_and_the_providers_message(service, model, provider):
    if provider == "openai":
        integration = add_integration(service, "openai", model.url + "/v1", key="sk-wrong")
        model.answer(openai_error(401, "Incorrect API key provided"))
    else:
        integration = add_integration(service, "anthropic", model.url, key="sk-ant-wrong")
        model.answer(anthropic_error(401, "invalid x-api-key"))
    error = await failure({"provider": provider, "model": "m", "prompt": "Hi", "integration": integration})
    assert not error.retryable and error.kind == "LlmStatus401" and error.details["status"] == 401
    assert f"{provider} answered 401" in str(error)
    assert ("Incorrect API key provided" if provider == "openai" else "invalid x-api-key") in str(error)
    assert f"integration '{integration}'" in str(error)


async def test_a_base_url_inside_the_workers_network_is_refused_by_the_outbound_guard():
    # The session allows only 127.0.0.1 (FLOWORCH_HTTP_ALLOW); a private address is refused before connecting.
    error = await failure({"provider": "custom", "base_url": "http://10.255.255.1:9/v1", "model": "m", "prompt": "Hi"})
    assert not error.retryable and error.kind == "AddressRefused"
    assert "a private address" in str(error) and "FLOWORCH_HTTP_ALLOW" in str(error)


# --------------------------------------------------------------------------- templates
async def test_an_undefined_template_variable_is_an_error_naming_it(model):
    error = await failure(custom(model, prompt="Write to {{ customer }}", variables={"order": 7}))
    assert str(error).startswith("prompt: 'customer' is undefined")
    assert "config.variables (order)" in str(error)
    assert not error.retryable and model.requests == []


@pytest.mark.parametrize(
    "template",
    ["{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}", "{{ ''.__class__.__base__.__subclasses__() }}"],
)
async def test_a_template_reaching_for_python_internals_is_refused(model, template):
    error = await failure(custom(model, system=template))
    assert str(error).startswith("system: the template tried something the sandbox forbids")
    assert not error.retryable and error.kind == "LlmTemplateUnsafe" and model.requests == []


# --------------------------------------------------------------------------- keys
async def test_the_key_comes_from_the_named_integration_before_the_environment(service, model, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    name = add_integration(service, "openai", model.url + "/v1", key="sk-stored")
    model.answer(openai_reply("hi"))
    await run_llm({"model": "gpt-test", "prompt": "Hi", "integration": name})
    assert model.requests[0]["headers"]["authorization"] == "Bearer sk-stored"


async def test_without_an_integration_the_key_comes_from_the_environment(model, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", model.url + "/v1")
    model.answer(openai_reply("hi"))
    await run_llm({"model": "gpt-test", "prompt": "Hi"})
    assert model.requests[0]["headers"]["authorization"] == "Bearer sk-env"


async def test_a_missing_key_says_how_to_add_one(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    error = await failure({"provider": "anthropic", "model": "claude-test", "prompt": "Hi"})
    assert not error.retryable
    assert "no API key for anthropic" in str(
        error
    ) and "fo.integrations.add('anthropic-main', 'anthropic', api_key=...)" in str(error)
    assert "ANTHROPIC_API_KEY" in str(error)


async def test_a_stored_key_is_never_sent_to_a_base_url_written_in_the_flow(service, model):
    name = add_integration(service, "openai", "https://llm-proxy.example/v1")
    error = await failure({"model": "gpt-test", "prompt": "Hi", "integration": name, "base_url": model.url + "/v1"})
    assert not error.retryable
    assert str(error).startswith(
        f"config.base_url: the key of integration '{name}' is only sent to its settings.base_url https://llm-proxy.example/v1"
    )
    assert model.requests == []


async def test_an_unknown_integration_names_the_field(service):
    error = await failure({"model": "gpt-test", "prompt": "Hi", "integration": "no-such-integration"})
    assert not error.retryable and str(error).startswith(
        "config.integration: no integration with id 'no-such-integration'"
    )


async def test_a_custom_provider_calls_any_openai_compatible_server_without_the_workers_key(model, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-must-not-leak")
    model.answer(openai_reply("local answer", model="llama-3.2-3b"))
    out = await run_llm(
        {"provider": "custom", "base_url": model.url + "/v1", "model": "llama-3.2-3b", "prompt": "Hi", "max_tokens": 20}
    )
    (request,) = model.requests
    assert request["path"] == "/v1/chat/completions" and request["json"]["model"] == "llama-3.2-3b"
    assert request["headers"]["authorization"] == "Bearer no-key"
    assert out["text"] == "local answer" and out["model"] == "llama-3.2-3b"


# --------------------------------------------------------------------------- validation
def llm_problems(config: dict) -> list:
    doc = FlowDocument.model_validate(
        flow_doc([TRIGGER, {"id": "llm", "type": "ai.llm", "config": config}], [("start", "llm")])
    )
    return [p for p in validate(doc) if p.node == "llm"]


def test_a_flow_with_prompt_templates_is_valid():
    # The engine leaves system and prompt raw for the node; they are Jinja2, not references.
    assert (
        llm_problems(
            {
                "model": "m",
                "system": "You are {{ role }}.",
                "prompt": "Summarise {{ text | truncate(100) }} for {{ inputs.start.who }}",
                "variables": {"role": "terse", "text": "{{ input.body }}"},
            }
        )
        == []
    )


def test_template_mistakes_show_before_the_flow_runs():
    problems = llm_problems(
        {
            "provider": "custom",
            "model": "m",
            "prompt": "Hi {{ customer }} {% if vip is defined %}!{% endif %}",
            "system": "{% if %}",
            "output_schema": {"type": "thing"},
        }
    )
    found = {(p.code, p.field) for p in problems}
    assert ("undefined-template-variable", "config.prompt") in found
    assert ("invalid-template", "config.system") in found
    assert ("missing-base-url", "config.base_url") in found
    assert ("invalid-output-schema", "config.output_schema") in found
    assert "'customer'" in next(p.message for p in problems if p.code == "undefined-template-variable")
    assert not any("'vip'" in p.message for p in problems)


# --------------------------------------------------------------------------- end to end
async def test_a_flow_calls_openai_through_an_integration_end_to_end(service, published, model):
    integration = add_integration(service, "openai", model.url + "/v1", key="sk-flow")
    model.answer(openai_reply("Dear Ada, your order 42 has shipped.", prompt_tokens=25, completion_tokens=9))
    llm = {
        "id": "llm",
        "type": "ai.llm",
        "config": {
            "provider": "openai",
            "integration": integration,
            "model": "gpt-test",
            "system": "You write short notices.",
            "prompt": "Tell {{ customer }} that order {{ order }} shipped.",
            "variables": {"customer": "{{ input.name }}", "order": "{{ input.order }}"},
            "temperature": 0,
        },
    }
    flow = await published([TRIGGER, llm], [("start", "llm")])
    run = await finished(service, (await service.start_run(flow, input={"name": "Ada", "order": 42}, by="t"))["run_id"])
    assert run["status"] == "success", run.get("error")
    out = run["result"]["outputs"]["llm"]
    assert out["text"] == "Dear Ada, your order 42 has shipped." and out["usage"] == {
        "input_tokens": 25,
        "output_tokens": 9,
    }
    (request,) = model.requests
    assert request["headers"]["authorization"] == "Bearer sk-flow"
    assert request["json"]["messages"][-1] == {"role": "user", "content": "Tell Ada that order 42 shipped."}
    # The key stays out of what Temporal and the store keep.
    assert "sk-flow" not in json.dumps(run, default=str)
    logs = service.store.list_logs(run["run_id"])
    assert [(e["node"], e["level"], e["extra"]["usage"]) for e in logs] == [
        ("llm", "info", {"input_tokens": 25, "output_tokens": 9})
    ]


async def test_a_flow_repairs_json_that_breaks_the_schema_end_to_end(service, published, model):
    integration = add_integration(service, "openai", model.url + "/v1")
    model.answer(openai_reply('{"name": "Ada"}'), openai_reply('{"name": "Ada", "age": 36}'))
    llm = {
        "id": "llm",
        "type": "ai.llm",
        "config": {
            "integration": integration,
            "model": "gpt-test",
            "prompt": "Extract the person from: {{ text }}",
            "variables": {"text": "{{ input.text }}"},
            "output_schema": PERSON,
        },
    }
    use = {"id": "use", "type": "transform", "config": {"output": "{{ nodes.llm.output.json.age }}"}}
    flow = await published([TRIGGER, llm, use], [("start", "llm"), ("llm", "use")])
    run = await finished(service, (await service.start_run(flow, input={"text": "Ada Lovelace, 36"}, by="t"))["run_id"])
    assert run["status"] == "success", run.get("error")
    assert run["result"]["outputs"] == {"use": 36}
    assert nodes_by_id(run)["llm"]["attempts"] == 1  # one activity attempt; the repair happened inside it
    assert len(model.requests) == 2
    assert "$: 'age' is a required property" in model.requests[1]["json"]["messages"][-1]["content"]
