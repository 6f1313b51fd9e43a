"""`ai.llm`: one prompt to a chat model (OpenAI, Anthropic, or any OpenAI-compatible server such
as vLLM, Ollama or llama.cpp), optionally answered as JSON that must match a schema.

Templates. ``system`` and ``prompt`` are Jinja2 templates, rendered here in a sandbox. Their
``{{ }}`` would collide with the engine's own reference syntax, so they are expression fields: the
engine leaves them raw. What a template sees is ``config.variables`` (which the engine does
resolve, so ``{"customer": "{{ input.customer }}"}`` brings run data in) plus ``inputs``, the
upstream outputs by node id. A name that is not there is an error naming it.

Keys. A key comes from the integration named in ``config.integration``, else from the worker's
environment (OPENAI_API_KEY / ANTHROPIC_API_KEY); never from the .flow file. A key only goes to
the server it was stored for: an integration's key to its ``settings.base_url`` (or, without
one, to the provider's own API), an environment key to the provider's API. A ``base_url`` in
the flow with no integration is called without a key (local servers and keyless gateways).
Every connection goes through the outbound-address guard (`floworch_server.netguard`), as
action.http's do: a server on the worker's own network needs FLOWORCH_HTTP_ALLOW.

Retries. The SDKs' own retries are off: Temporal retries the activity, so every attempt shows
in the run's history. A short Retry-After on a 429 is waited out here instead of failing.
Each request first takes a turn at the deployment's limit for the provider (`ratelimit`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .. import ratelimit
from ..problems import Problem
from .spec import NodeError, NodeSpec, Port, RetryDefaults, register

PROVIDERS = ("openai", "anthropic", "custom")
ENV_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# The integration provider a key must be stored under; a custom server accepts any.
INTEGRATION_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "custom": None}
# Local servers and keyless gateways ignore the key, but both SDKs insist on one.
NO_KEY = "no-key"
# The Anthropic API needs max_tokens on every request.
DEFAULT_MAX_TOKENS = 1024
# A 429 whose Retry-After is at most this long is waited out inside the activity; a longer one
# fails the attempt so the node's retry policy (and its backoff) takes over.
MAX_INLINE_WAIT_SECONDS = 30.0
MAX_INLINE_WAITS = 3
# 408/409/425 are transient on these APIs (request timeout, lock contention); 5xx are server trouble.
RETRYABLE_STATUS = {408, 409, 425, 429}
TEMPLATE_FIELDS = ("system", "prompt")
# The Messages API version the anthropic SDK speaks (2026-10-21) rejects sampling parameters.
ANTHROPIC_NO_TEMPERATURE = "the Anthropic Messages API takes no temperature"
CUSTOM_URL_HINT = (
    "give the URL of an OpenAI-compatible server, e.g. http://localhost:11434/v1 (Ollama) or "
    "http://localhost:8000/v1 (vLLM), or name an integration whose settings hold base_url"
)


@dataclass
class _Reply:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    truncated: bool  # stopped at max_tokens


# --------------------------------------------------------------------------- templates
def _environment():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    # Prompts are text, not HTML: no autoescaping. Keep the trailing newline the author wrote.
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _render(field: str, source: str, context: dict[str, Any]) -> str:
    from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError
    from jinja2.sandbox import SecurityError

    try:
        return _environment().from_string(source).render(context)
    except SecurityError as exc:
        raise NodeError(
            f"{field}: the template tried something the sandbox forbids ({exc}); templates may only read "
            "config.variables and inputs",
            retryable=False,
            kind="LlmTemplateUnsafe",
        ) from None
    except UndefinedError as exc:
        raise NodeError(
            f"{field}: {exc.message}; the template sees config.variables ({_names(context)}) and inputs.<node id> "
            '- add the value to config.variables, e.g. {"customer": "{{ input.customer }}"}',
            retryable=False,
            kind="LlmTemplateUndefined",
        ) from None
    except TemplateSyntaxError as exc:
        raise NodeError(
            f"{field}: template syntax error on line {exc.lineno}: {exc.message}",
            retryable=False,
            kind="LlmTemplateSyntax",
        ) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
        raise NodeError(
            f"{field}: could not render the template: {exc}", retryable=False, kind="LlmTemplateError"
        ) from None


def _names(context: dict[str, Any]) -> str:
    names = [k for k in context if k != "inputs"]
    return ", ".join(names) if names else "none set"


# --------------------------------------------------------------------------- keys and URLs
def _norm_url(url: str | None) -> str:
    return (url or "").rstrip("/")


def _connection(provider: str, config: dict) -> tuple[str | None, str, str]:
    """(base URL or None for the SDK's default, API key, where the key came from)."""
    base_url = config.get("base_url")
    name = config.get("integration")
    if name:
        from ..errors import FloworchError
        from ..integrations import lookup

        try:
            record, secret = lookup(name, INTEGRATION_PROVIDER[provider])
        except FloworchError as exc:
            raise NodeError(f"config.integration: {exc}", retryable=False, kind="LlmIntegration") from None
        key = secret.get("api_key")
        if not key:
            raise NodeError(
                f"config.integration: integration '{name}' holds no api_key; store one with "
                f"fo.integrations.add({name!r}, {record['provider']!r}, api_key=...)",
                retryable=False,
                kind="LlmIntegration",
            )
        pinned = (record.get("settings") or {}).get("base_url")
        # A flow must not redirect a stored key to a server of its own choosing.
        if base_url and _norm_url(base_url) != _norm_url(pinned):
            where = f"its settings.base_url {pinned}" if pinned else f"the {provider} API"
            raise NodeError(
                f"config.base_url: the key of integration '{name}' is only sent to {where}; remove config.base_url, "
                f"or store the URL with the key: fo.integrations.add({name!r}, {record['provider']!r}, api_key=..., "
                f"settings={{'base_url': {base_url!r}}})",
                retryable=False,
                kind="LlmIntegration",
            )
        base_url = pinned or None
        if provider == "custom" and not base_url:
            raise NodeError(_custom_needs_url(), retryable=False, kind="LlmConfig")
        return base_url, key, f"integration '{name}'"
    if base_url or provider == "custom":
        if not base_url:
            raise NodeError(_custom_needs_url(), retryable=False, kind="LlmConfig")
        # The worker's own keys are for the provider's API, not for a URL written in a flow.
        return base_url, NO_KEY, "none (config.base_url without an integration)"
    env = ENV_KEYS[provider]
    key = os.environ.get(env)
    if not key:
        raise NodeError(
            f"no API key for {provider}: store one with fo.integrations.add('{provider}-main', '{provider}', api_key=...) "
            f"and set config.integration to '{provider}-main', or set {env} in the worker's environment",
            retryable=False,
            kind="LlmNoKey",
        )
    return None, key, f"environment variable {env}"


def _custom_needs_url() -> str:
    return f"config.base_url: the custom provider needs a server URL: {CUSTOM_URL_HINT}"


# --------------------------------------------------------------------------- provider calls
def _client(provider: str, base_url: str | None, key: str, timeout: float):
    kwargs: dict[str, Any] = {
        "api_key": key,
        "max_retries": 0,
        "timeout": timeout,
        "http_client": _guarded_http_client(timeout),
    }
    if base_url:
        kwargs["base_url"] = base_url
    if provider == "anthropic":
        import anthropic

        return anthropic, anthropic.AsyncAnthropic(**kwargs)
    import openai

    return openai, openai.AsyncOpenAI(**kwargs)


def _guarded_http_client(timeout: float) -> Any:
    """An httpx2 client (what both SDKs speak through) whose every connection, redirects included,
    goes through the outbound-address guard: a base_url is chosen by a flow author, so it must not
    reach the worker's own network unless FLOWORCH_HTTP_ALLOW lets it. This is
    `netguard.guarded_transport` for httpx2/httpcore2, which the SDKs use instead of httpx/httpcore."""
    import httpcore
    import httpcore2
    import httpx2

    from .. import netguard

    allow = netguard.allow_list()

    class GuardedBackend(httpcore2.AsyncNetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore2.AnyIOBackend()

        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> Any:
            try:
                addresses = await netguard.resolve(host, port, allow)  # raises AddressRefused
            except httpcore.ConnectError as exc:
                raise httpcore2.ConnectError(str(exc)) from exc
            failure: Exception | None = None
            for address in addresses:
                try:
                    # An IP literal: connected to without resolving the name again (no DNS rebinding).
                    return await self._inner.connect_tcp(
                        str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                    )
                except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                    failure = exc
            assert failure is not None
            raise failure

        async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            raise httpcore2.ConnectError("unix sockets are not reachable through the outbound-address guard")

        async def sleep(self, seconds: float) -> None:
            await self._inner.sleep(seconds)

    # No proxy: a client given a transport ignores proxy variables, and a proxy would resolve past the guard.
    transport = httpx2.AsyncHTTPTransport()
    pool = transport._pool
    if not isinstance(pool, httpcore2.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpx2/httpcore2 version cannot be guarded: its connection pool changed")
    pool._network_backend = GuardedBackend()
    return httpx2.AsyncClient(transport=transport, timeout=timeout, follow_redirects=True)


async def _openai_call(client: Any, config: dict, system: str | None, messages: list[dict], json_mode: bool) -> _Reply:
    request: dict[str, Any] = {
        "model": config["model"],
        "messages": ([{"role": "system", "content": system}] if system else []) + messages,
    }
    if "temperature" in config:
        request["temperature"] = config["temperature"]
    if "max_tokens" in config:
        request["max_tokens"] = config["max_tokens"]
    if json_mode:
        request["response_format"] = {"type": "json_object"}
    started = time.monotonic()
    response = await client.chat.completions.create(**request)
    latency = round((time.monotonic() - started) * 1000)
    if not response.choices:
        raise NodeError(f"{config['model']} answered with no choices", kind="LlmEmptyReply")
    choice = response.choices[0]
    refusal = getattr(choice.message, "refusal", None)
    if refusal:
        raise NodeError(f"{config['model']} refused: {refusal}", retryable=False, kind="LlmRefusal")
    usage = response.usage
    return _Reply(
        text=choice.message.content or "",
        model=response.model or config["model"],
        input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        output_tokens=getattr(usage, "completion_tokens", 0) or 0,
        latency_ms=latency,
        truncated=choice.finish_reason == "length",
    )


async def _anthropic_call(
    client: Any, config: dict, system: str | None, messages: list[dict], json_mode: bool
) -> _Reply:
    # Anthropic has no JSON mode; the schema instruction in the system prompt asks for JSON.
    request: dict[str, Any] = {
        "model": config["model"],
        "messages": messages,
        "max_tokens": config.get("max_tokens", DEFAULT_MAX_TOKENS),
    }
    if system:
        request["system"] = system
    started = time.monotonic()
    response = await client.messages.create(**request)
    latency = round((time.monotonic() - started) * 1000)
    usage = response.usage
    return _Reply(
        text="".join(getattr(block, "text", "") for block in response.content if getattr(block, "type", "") == "text"),
        model=response.model or config["model"],
        input_tokens=getattr(usage, "input_tokens", 0) or 0,
        output_tokens=getattr(usage, "output_tokens", 0) or 0,
        latency_ms=latency,
        truncated=response.stop_reason == "max_tokens",
    )


async def _call(
    ctx: Any,
    sdk: Any,
    provider: str,
    base_url: str | None,
    key_source: str,
    timeout: float,
    send: Callable[[], Awaitable[_Reply]],
) -> _Reply:
    """One request, with the SDK's errors turned into node errors that say whether to retry."""
    where = base_url or f"the {provider} API"
    for waited in range(MAX_INLINE_WAITS + 1):
        # The deployment's own limit for this provider, shared by every worker (ratelimit.py).
        await ratelimit.provider_turn(ctx, provider, f"{provider} at {where}")
        try:
            return await send()
        except sdk.RateLimitError as exc:
            delay = _retry_after(exc.response)
            message = f"{provider} rate limit (429) at {where}: {_provider_message(exc)}"
            if delay is None:
                raise NodeError(message, kind="LlmRateLimited") from None
            if delay > MAX_INLINE_WAIT_SECONDS or waited == MAX_INLINE_WAITS:
                raise NodeError(
                    f"{message}; Retry-After {delay:g}s, left to the node's retry policy", kind="LlmRateLimited"
                ) from None
            ctx.log(
                "warning",
                f"{provider} rate limit (429): waiting {delay:g}s as Retry-After asks",
                retry_after_seconds=delay,
            )
            await _sleep(ctx, delay)
        except sdk.APITimeoutError:
            raise NodeError(
                f"{provider} did not answer within {timeout:g}s (config.timeout_seconds) at {where}", kind="LlmTimeout"
            ) from None
        except sdk.APIConnectionError as exc:
            refused = _refusal(exc)
            if refused is not None:
                raise NodeError(
                    f"{where}: {refused}", retryable=False, kind=refused.kind, details=refused.details
                ) from None
            cause = exc.__cause__ or exc
            raise NodeError(f"could not reach {where}: {cause}", kind="LlmConnectionError") from None
        except sdk.APIStatusError as exc:
            status = exc.status_code
            raise NodeError(
                f"{provider} answered {status} at {where}: {_provider_message(exc)}{_status_hint(status, key_source)}",
                retryable=status in RETRYABLE_STATUS or status >= 500,
                kind=f"LlmStatus{status}",
                details={"status": status, "provider": provider},
            ) from None
        except sdk.APIError as exc:
            # e.g. a reply the SDK could not read: the server may answer properly next time.
            raise NodeError(f"{provider} at {where}: {exc}", kind="LlmError") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _refusal(exc: BaseException) -> Any:
    """The outbound guard's refusal behind an SDK connection error, if that is what it was."""
    from .. import netguard

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, netguard.AddressRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _status_hint(status: int, key_source: str) -> str:
    if status in (401, 403):
        return f" (API key from {key_source}: check it, or name another integration in config.integration)"
    if status == 404:
        return " (check config.model and the base URL)"
    return ""


def _provider_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error")
        inner = error if isinstance(error, dict) else body
        if inner.get("message"):
            return str(inner["message"])
    response = getattr(exc, "response", None)
    text = getattr(response, "text", "") if response is not None else ""
    return (text or str(exc))[:500]


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    if headers.get("retry-after-ms"):
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


async def _sleep(ctx: Any, seconds: float) -> None:
    # Small steps, so heartbeats go out and a cancellation is noticed while waiting.
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 1.0))
        ctx.heartbeat()


# --------------------------------------------------------------------------- structured output
_FENCED = re.compile(r"```(?:json|JSON)?[ \t]*\n(.*?)\n?[ \t]*```", re.S)


def _parse_json(text: str) -> Any:
    stripped = text.strip()
    fenced = _FENCED.search(stripped)
    # Models often wrap JSON in a ```json block, sometimes with a sentence around it.
    if fenced and not stripped.startswith(("{", "[")):
        stripped = fenced.group(1).strip()
    return json.loads(stripped)


def _schema_error(text: str, validator: Any, truncated: bool) -> tuple[Any, str | None]:
    """(parsed value, None) when the reply is JSON matching the schema, else (None, what is wrong)."""
    import jsonschema

    try:
        value = _parse_json(text)
    except ValueError as exc:
        cut = " (the reply was cut off at max_tokens)" if truncated else ""
        return None, f"the reply is not valid JSON{cut}: {exc}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return value, None
    return None, f"at {_json_path(error.absolute_path)}: {error.message}"


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _schema_instruction(schema: dict) -> str:
    return "Reply with JSON only - no prose, no code fences - matching this JSON Schema:\n" + json.dumps(
        schema, indent=2, sort_keys=True
    )


def _repair_message(error: str) -> str:
    return f"Your reply did not match the required JSON Schema: {error}\nReply with the corrected JSON only."


def _validator_class(schema: Any) -> Any:
    import jsonschema

    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def _schema_mistake(schema: Any) -> str | None:
    import jsonschema

    try:
        _validator_class(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        return exc.message
    return None


def _schema_validator(schema: Any) -> Any:
    mistake = _schema_mistake(schema)
    if mistake:
        raise NodeError(
            f"config.output_schema is not a valid JSON Schema: {mistake}", retryable=False, kind="LlmConfig"
        )
    return _validator_class(schema)(schema)


# --------------------------------------------------------------------------- the node
async def _execute(ctx: Any, config: dict, inputs: dict) -> Any:
    provider = config.get("provider", "openai")
    if provider == "anthropic" and "temperature" in config:
        raise NodeError(
            f"config.temperature: {ANTHROPIC_NO_TEMPERATURE}; remove it for the anthropic provider",
            retryable=False,
            kind="LlmConfig",
        )
    context = {**(config.get("variables") or {}), "inputs": inputs}
    system = _render("system", config["system"], context) if config.get("system") else None
    prompt = _render("prompt", config["prompt"], context)
    schema = config.get("output_schema")
    validator = _schema_validator(schema) if schema is not None else None
    if validator is not None and schema is not None:
        system = f"{system}\n\n{_schema_instruction(schema)}" if system else _schema_instruction(schema)
    repairs = config.get("repair_attempts", 2) if validator is not None else 0
    timeout = float(config.get("timeout_seconds", 60))

    base_url, key, key_source = _connection(provider, config)
    sdk, client = _client(provider, base_url, key, timeout)
    complete = _anthropic_call if provider == "anthropic" else _openai_call
    messages: list[dict] = [{"role": "user", "content": prompt}]
    replies: list[_Reply] = []
    parsed: Any = None
    async with client:
        for n in range(1 + repairs):
            reply = await _call(
                ctx,
                sdk,
                provider,
                base_url,
                key_source,
                timeout,
                lambda: complete(client, config, system, messages, validator is not None),  # noqa: B023 - _call awaits it in this iteration
            )
            replies.append(reply)
            usage = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}
            what = "reply" if n == 0 else f"repair {n}"
            ctx.log(
                "info",
                f"{reply.model} {what}: {reply.input_tokens} in / {reply.output_tokens} out tokens, {reply.latency_ms} ms",
                usage=usage,
                latency_ms=reply.latency_ms,
                model=reply.model,
            )
            if validator is None:
                break
            parsed, error = _schema_error(reply.text, validator, reply.truncated)
            if error is None:
                break
            if n == repairs:
                raise NodeError(
                    f"output did not match the schema after {repairs} repair{'s' if repairs != 1 else ''}: {error}",
                    retryable=False,
                    kind="LlmOutputInvalid",
                    details={"last_output": reply.text, "error": error, "attempts": len(replies)},
                )
            ctx.log("warning", f"{what} did not match config.output_schema ({error}); asking for a correction")
            messages += [
                {"role": "assistant", "content": reply.text},
                {"role": "user", "content": _repair_message(error)},
            ]

    last = replies[-1]
    output: dict[str, Any] = {"text": last.text}
    if validator is not None:
        output["json"] = parsed
    output.update(
        model=last.model,
        usage={
            "input_tokens": sum(r.input_tokens for r in replies),
            "output_tokens": sum(r.output_tokens for r in replies),
        },
        latency_ms=sum(r.latency_ms for r in replies),
        attempts=len(replies),
    )
    return output


# --------------------------------------------------------------------------- checks before a run
def _check(node: Any, doc: Any) -> list[Problem]:
    """Problems found when the flow is validated, so they show on the canvas before any run."""
    config = node.config
    problems: list[Problem] = []
    if config.get("provider") == "custom" and not config.get("base_url") and not config.get("integration"):
        problems.append(
            Problem(
                "missing-base-url",
                "the custom provider needs a server URL",
                node=node.id,
                field="config.base_url",
                hint=CUSTOM_URL_HINT,
            )
        )
    if config.get("provider") == "anthropic" and "temperature" in config:
        problems.append(
            Problem(
                "unsupported-field",
                ANTHROPIC_NO_TEMPERATURE,
                node=node.id,
                field="config.temperature",
                hint="remove temperature for the anthropic provider",
            )
        )
    variables = config.get("variables", {})
    known = set(variables) | {"inputs"} if isinstance(variables, dict) else None
    for field in TEMPLATE_FIELDS:
        source = config.get(field)
        if isinstance(source, str):
            problems += _template_problems(node.id, field, source, known)
    schema = config.get("output_schema")
    mistake = _schema_mistake(schema) if isinstance(schema, dict) else None
    if mistake:
        problems.append(
            Problem(
                "invalid-output-schema",
                f"not a valid JSON Schema: {mistake}",
                node=node.id,
                field="config.output_schema",
                hint="fix the schema (https://json-schema.org)",
            )
        )
    return problems


def _no_engine_expressions(config: dict) -> tuple:
    return ()


def _template_problems(node_id: str, field: str, source: str, known: set[str] | None) -> list[Problem]:
    from jinja2 import TemplateSyntaxError, meta, nodes

    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError as exc:
        return [
            Problem(
                "invalid-template",
                f"template syntax error on line {exc.lineno}: {exc.message}",
                node=node_id,
                field=f"config.{field}",
                hint="see https://jinja.palletsprojects.com/templates/",
            )
        ]
    if known is None:  # variables is itself a reference: its keys are known only at run time
        return []
    names = meta.find_undeclared_variables(tree)
    # `{% if x is defined %}` is the template handling a missing name itself.
    names -= {
        t.node.name
        for t in tree.find_all(nodes.Test)
        if t.name in ("defined", "undefined") and isinstance(t.node, nodes.Name)
    }
    return [
        Problem(
            "undefined-template-variable",
            f"the template uses '{name}', which is not in config.variables",
            node=node_id,
            field=f"config.{field}",
            hint=f'add it to config.variables, e.g. {{"{name}": "{{{{ input.{name} }}}}"}}, or read an upstream output as inputs.<node id>',
        )
        for name in sorted(names - known)
    ]


LLM = register(
    NodeSpec(
        type="ai.llm",
        category="AI",
        title="LLM prompt",
        description="Sends a prompt to a chat model (OpenAI, Anthropic or an OpenAI-compatible server); "
        "the output is the reply, optionally parsed and checked against a JSON Schema.",
        kind="activity",
        icon="sparkles",
        execute=_execute,
        retry=RetryDefaults(max_attempts=4, initial_interval_seconds=2.0, backoff=2.0, max_interval_seconds=60.0),
        # Room for the first call, the repairs and a short rate-limit wait.
        timeout_seconds=300,
        # Heartbeats carry cancellation to a long model call or rate-limit wait.
        heartbeat_seconds=30,
        outputs=(Port("out", "reply"),),
        # The engine leaves system and prompt raw (they are Jinja2, not references) and does not
        # read them as expressions of its own: _check looks at them instead.
        expression_fields=TEMPLATE_FIELDS,
        expressions=_no_engine_expressions,
        check=_check,
        config_schema={
            "type": "object",
            "required": ["model", "prompt"],
            "additionalProperties": False,
            "properties": {
                "provider": {
                    "enum": list(PROVIDERS),
                    "default": "openai",
                    "description": "custom: any OpenAI-compatible server (vLLM, Ollama, llama.cpp) at base_url.",
                },
                "model": {
                    "type": "string",
                    "minLength": 1,
                    "description": "e.g. gpt-4o-mini, claude-sonnet-4-5, or the name the custom server serves.",
                },
                "system": {"type": "string", "description": "System prompt; a Jinja2 template like prompt."},
                "prompt": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Jinja2 template over config.variables and inputs, e.g. Summarise: {{ text }}",
                },
                "variables": {
                    "type": "object",
                    "propertyNames": {"not": {"const": "inputs"}},
                    "description": 'Values the templates see by name; {{ }} references here are resolved first, e.g. {"text": "{{ input.body }}"}.',
                },
                "temperature": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 2,
                    "description": "openai and custom only: the Anthropic API takes none.",
                },
                "max_tokens": {
                    "type": "integer",
                    "minimum": 1,
                    "description": f"Reply length limit (Anthropic: {DEFAULT_MAX_TOKENS} when not set).",
                },
                "output_schema": {
                    "type": "object",
                    "description": "JSON Schema the reply must match; the output then has `json`.",
                },
                "repair_attempts": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 5,
                    "default": 2,
                    "description": "Follow-up calls that show the model its schema error.",
                },
                "integration": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Stored integration holding {api_key} and optionally settings.base_url.",
                },
                "base_url": {
                    "type": "string",
                    "pattern": "^(https?://|\\{\\{)",
                    "description": "Server URL (OpenAI style ends in /v1); with an integration it must be the integration's own.",
                },
                "timeout_seconds": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 60,
                    "description": "Per model call.",
                },
            },
        },
        docs=(
            "Templates (`system`, `prompt`) are Jinja2, rendered in a sandbox with `config.variables` by name "
            "and `inputs.<node id>` (upstream outputs); the engine resolves `{{ }}` references inside "
            '`variables` first, so `variables: {"text": "{{ input.body }}"}` with `prompt: "Summarise: {{ text }}"` '
            "brings run data in. An unknown name fails the node naming it.\n\n"
            'Key: from `integration` (`fo.integrations.add("openai-main", "openai", api_key=..., settings={"base_url": ...})`), '
            "else `OPENAI_API_KEY` / `ANTHROPIC_API_KEY` in the worker's environment; never from the flow. A key only goes "
            "to the URL stored with it (or the provider's API); a `base_url` without an integration is called without a key. "
            "Connections go through the outbound-address guard: a server on a private or loopback address (a local Ollama) "
            "needs its address in `FLOWORCH_HTTP_ALLOW` on the workers.\n\n"
            "Output: `{text, json (with output_schema), model, usage: {input_tokens, output_tokens}, latency_ms, attempts}`; "
            "`attempts` counts model replies including repairs, `usage` and `latency_ms` add up all of them. With `output_schema` the reply is parsed as JSON "
            "(a Markdown code fence around it is stripped) and validated; on a mismatch the model is shown the error up to "
            "`repair_attempts` times, then the node fails without retry, the last reply in the error details.\n\n"
            "429s wait out a Retry-After of up to 30 s inside the activity, else are retried by the policy, as are "
            "timeouts, connection errors and 5xx; 400/401/403/404 fail at once with the provider's message."
        ),
    )
)
