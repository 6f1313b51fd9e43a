"""SaaS actions: Slack, HubSpot, Gmail and QuickBooks, each a `Connector` (how the provider's
API authenticates, pages, limits and fails), an operation (the requests one action makes)
and a node spec. The credentials come from the integration the config names, at run time.

Adding a provider is one more of each: a `Connector`, an operation function that uses
`connectors.call`, and an `_action(...)` registration.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from ..connectors import Auth, Connector, Idempotency, Pagination, RateLimit, account, call
from ..problems import Problem
from .spec import NodeError, NodeSpec, RetryDefaults, register

# Providers answer fast or are having a bad minute: a few attempts, spaced out.
SAAS_RETRY = RetryDefaults(max_attempts=5, initial_interval_seconds=2.0, backoff=2.0, max_interval_seconds=60.0)


def _action(
    type: str,
    connector: Connector,
    *,
    title: str,
    description: str,
    run: Callable,
    properties: dict,
    required: list[str],
    docs: str,
    icon: str,
    **extra: Any,
) -> NodeSpec:
    """A SaaS action spec: every one names its integration in config, and nothing secret."""
    schema = {
        "type": "object",
        "required": ["integration", *required],
        "additionalProperties": False,
        "properties": {
            "integration": {
                "type": "string",
                "minLength": 1,
                "description": f"Name of a stored {connector.title} integration ({connector.add_example('name')}); no token goes in the config.",
            },
            **properties,
        },
    }
    setup = f"Needs an integration of provider `{connector.provider}`: {connector.credential_help}. Its optional `settings.base_url` replaces `{connector.base_url}`."
    return register(
        NodeSpec(
            type=type,
            category="Actions",
            title=title,
            description=description,
            kind="activity",
            icon=icon,
            execute=run,
            retry=SAAS_RETRY,
            timeout_seconds=60,
            config_schema=schema,
            docs=f"{docs}\n\n{setup} 401/403 and other 4xx answers fail at once with the provider's message; "
            "429 is waited out as the provider asks; 5xx and network errors are retried.",
            **extra,
        )
    )


# ------------------------------------------------------------------ Slack
# Slack reports failures as HTTP 200 with {"ok": false, "error": "<code>"}: the code says what they mean.
SLACK_AUTH_ERRORS = {
    "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "no_permission",
    "missing_scope", "not_allowed_token_type", "access_denied", "ekm_access_denied", "team_access_not_granted",
}  # fmt: skip
SLACK_TRANSIENT_ERRORS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}


def _slack_status(status: int, body: Any) -> int:
    if not (200 <= status < 300 and isinstance(body, dict) and body.get("ok") is False):
        return status
    error = body.get("error")
    if error == "ratelimited":
        return 429
    if error in SLACK_AUTH_ERRORS:
        return 401
    return 503 if error in SLACK_TRANSIENT_ERRORS else 400


def _slack_message(body: Any) -> str | None:
    if isinstance(body, dict) and body.get("error"):
        needed = f" (needs scope {body['needed']})" if body.get("needed") else ""
        return f"{body['error']}{needed}"
    return None


SLACK = Connector(
    provider="slack",
    title="Slack",
    base_url="https://slack.com/api",
    auth=Auth("bearer"),
    rate_limit=RateLimit(remaining=None, reset=None),  # Slack only sends Retry-After, with its 429s
    pagination=Pagination(
        "cursor", next="response_metadata.next_cursor", param="cursor", limit_param="limit", page_size=200
    ),
    error_message=_slack_message,
    status_of=_slack_status,
    hints={
        "channel_not_found": "check config.channel (an id like C0123456789 or a #name) and that the Slack app can see the channel",
        "not_in_channel": "invite the Slack app to the channel (/invite @app) or give it the chat:write.public scope",
        "missing_scope": "add that scope to the Slack app, reinstall it and store the new token in the integration",
        "invalid_blocks": "check config.blocks against Slack's Block Kit reference",
    },
    credential_help="a bot token (xoxb-...) of a Slack app with the chat:write scope",
)


async def post_slack_message(ctx: Any, config: dict, inputs: dict) -> dict:
    body = {"channel": config["channel"], "text": config["text"]}
    for key in ("blocks", "thread_ts"):
        if config.get(key):
            body[key] = config[key]
    reply = await call(ctx, SLACK, config["integration"], "POST", "/chat.postMessage", json=body)
    return {"ok": True, "channel": reply.body.get("channel"), "ts": reply.body.get("ts")}


SLACK_MESSAGE = _action(
    "action.slack",
    SLACK,
    title="Slack message",
    description="Posts a message to a Slack channel or thread (chat.postMessage); the output is {ok, channel, ts}.",
    run=post_slack_message,
    properties={
        "channel": {"type": "string", "minLength": 1, "description": "Channel id (C0123456789) or #name."},
        "text": {
            "type": "string",
            "minLength": 1,
            "description": "The message; also the notification text when blocks are given.",
        },
        "blocks": {"type": "array", "items": {"type": "object"}, "description": "Block Kit blocks."},
        "thread_ts": {"type": "string", "description": "Reply in the thread of this message ts."},
    },
    required=["channel", "text"],
    docs='Slack takes no idempotency key: a retry after a lost answer may post twice. Reply in a thread with `thread_ts: "{{ nodes.<slack node>.output.ts }}"`.',
    icon="slack",
)


# ------------------------------------------------------------------ HubSpot
HUBSPOT = Connector(
    provider="hubspot",
    title="HubSpot",
    base_url="https://api.hubapi.com",
    auth=Auth("bearer"),
    rate_limit=RateLimit(remaining="X-HubSpot-RateLimit-Remaining", reset=None),
    pagination=Pagination("cursor", next="paging.next.after", param="after", limit_param="limit", page_size=100),
    hints={"MISSING_SCOPES": "grant the private app the crm.objects.contacts.read and .write scopes"},
    credential_help="a private app access token with the crm.objects.contacts.read and crm.objects.contacts.write scopes",
)


async def upsert_hubspot_contact(ctx: Any, config: dict, inputs: dict) -> dict:
    email = config["email"]
    properties = {**(config.get("properties") or {}), "email": email}
    created = await call(
        ctx,
        HUBSPOT,
        config["integration"],
        "POST",
        "/crm/v3/objects/contacts",
        json={"properties": properties},
        accept=(409,),
    )
    if created.status != 409:
        return {"id": created.body.get("id"), "created": True, "properties": created.body.get("properties", {})}
    # The email is taken: update that contact, addressed by its email.
    updated = await call(
        ctx,
        HUBSPOT,
        config["integration"],
        "PATCH",
        f"/crm/v3/objects/contacts/{quote(email, safe='@')}",
        params={"idProperty": "email"},
        json={"properties": properties},
    )
    return {"id": updated.body.get("id"), "created": False, "properties": updated.body.get("properties", {})}


HUBSPOT_CONTACT = _action(
    "action.hubspot",
    HUBSPOT,
    title="HubSpot contact",
    description="Creates a HubSpot contact, or updates the one with the same email; the output is {id, created, properties}.",
    run=upsert_hubspot_contact,
    properties={
        "email": {
            "type": "string",
            "minLength": 3,
            "description": "The contact's email: the key that decides create or update.",
        },
        "properties": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
            "description": 'Contact properties by internal name, e.g. {"firstname": "Ada", "lifecyclestage": "lead"}.',
        },
    },
    required=["email"],
    docs="Creates the contact; when HubSpot answers 409 (the email exists), updates it by email instead. "
    "`created` is false for an update, also when an earlier attempt had created it.",
    icon="user-plus",
)


# ------------------------------------------------------------------ Gmail
def _google_status(status: int, body: Any) -> int:
    # Google reports rate limits as 403 with reason rateLimitExceeded: a pause, not a refusal.
    if status == 403 and isinstance(body, dict) and isinstance(body.get("error"), dict):
        reasons = {e.get("reason") for e in body["error"].get("errors") or [] if isinstance(e, dict)}
        if reasons & {"rateLimitExceeded", "userRateLimitExceeded"}:
            return 429
    return status


def _google_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("message") or error.get("status")
        if isinstance(error, str):  # OAuth endpoints: {"error": "invalid_grant", "error_description": ...}
            return f"{error}: {body['error_description']}" if body.get("error_description") else error
    return None


GMAIL = Connector(
    provider="gmail",
    title="Gmail",
    base_url="https://gmail.googleapis.com",
    auth=Auth("bearer"),
    rate_limit=RateLimit(remaining=None, reset=None),
    pagination=Pagination("cursor", next="nextPageToken", param="pageToken", limit_param="maxResults", page_size=100),
    error_message=_google_message,
    status_of=_google_status,
    hints={"Invalid To header": "check config.to: one address or a list of addresses"},
    credential_help="an OAuth access token with the https://www.googleapis.com/auth/gmail.send scope",
)


def _addresses(value: str | list[str]) -> str:
    return ", ".join(value) if isinstance(value, list) else value


def gmail_message(config: dict) -> EmailMessage:
    """The RFC 822 message of a config: plain text, HTML, or both as alternatives."""
    message = EmailMessage()
    for header, key in (("To", "to"), ("Cc", "cc"), ("Subject", "subject")):
        if config.get(key):
            try:
                message[header] = _addresses(config[key])
            except ValueError as exc:  # e.g. a line break, which would inject headers
                raise NodeError(f"config.{key}: {exc}", retryable=False, kind="InvalidConfig") from None
    text, html = config.get("text"), config.get("html")
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html or "", subtype="html")
    return message


async def send_gmail(ctx: Any, config: dict, inputs: dict) -> dict:
    raw = base64.urlsafe_b64encode(gmail_message(config).as_bytes()).decode()
    reply = await call(ctx, GMAIL, config["integration"], "POST", "/gmail/v1/users/me/messages/send", json={"raw": raw})
    return {"id": reply.body.get("id"), "threadId": reply.body.get("threadId")}


def _check_gmail_body(node: Any, doc: Any) -> list[Problem]:
    if "text" in node.config or "html" in node.config:
        return []
    return [
        Problem(
            "invalid-config",
            "the email has no body",
            node=node.id,
            field="config.text",
            hint="set config.text, config.html or both",
        )
    ]


# One address or a list of them (minLength applies to a string, items and minItems to a list).
_ADDRESSES = {"type": ["string", "array"], "minLength": 3, "items": {"type": "string", "minLength": 3}, "minItems": 1}

GMAIL_SEND = _action(
    "action.gmail",
    GMAIL,
    title="Gmail email",
    description="Sends an email from the integration's Gmail account; the output is {id, threadId}.",
    run=send_gmail,
    properties={
        "to": {**_ADDRESSES, "description": "One address or a list."},
        "cc": {**_ADDRESSES, "description": "One address or a list."},
        "subject": {"type": "string", "description": "The subject line."},
        "text": {"type": "string", "description": "Plain-text body."},
        "html": {"type": "string", "description": "HTML body; with text, both are sent as alternatives."},
    },
    required=["to", "subject"],
    docs="Give `text`, `html` or both. Gmail takes no idempotency key: a retry after a lost answer may send twice.",
    icon="mail",
    check=_check_gmail_body,
)


# ------------------------------------------------------------------ QuickBooks
def _quickbooks_message(body: Any) -> str | None:
    # {"Fault": {"Error": [{"Message", "Detail"}]}}; authentication faults come in lower case.
    if not isinstance(body, dict):
        return None
    fault = body.get("Fault") or body.get("fault")
    if not isinstance(fault, dict):
        return None
    parts = []
    for error in fault.get("Error") or fault.get("error") or []:
        message, detail = error.get("Message") or error.get("message"), error.get("Detail") or error.get("detail")
        parts.append(f"{message}: {detail}" if message and detail and detail != message else message or detail)
    return "; ".join(p for p in parts if p) or fault.get("type")


QUICKBOOKS = Connector(
    provider="quickbooks",
    title="QuickBooks",
    base_url="https://quickbooks.api.intuit.com",
    auth=Auth("bearer"),
    # Intuit replays the first answer to a repeated requestid (unique per company, up to 50 characters).
    idempotency=Idempotency(param="requestid", max_length=50),
    rate_limit=RateLimit(remaining=None, reset=None),
    pagination=None,  # list reads go through its query endpoint, whose paging is part of the query text
    error_message=_quickbooks_message,
    hints={
        "Invalid Reference Id": "check config.customer_id and each line's item_id: they must be ids in this company"
    },
    credential_help="an OAuth access token with the com.intuit.quickbooks.accounting scope, and settings={'realm_id': '<company id>'}",
)


async def create_quickbooks_invoice(ctx: Any, config: dict, inputs: dict) -> dict:
    acct = await account(QUICKBOOKS, config["integration"])
    realm = config.get("realm_id") or acct.settings.get("realm_id")
    if not realm:
        raise NodeError(
            f"config.realm_id: no QuickBooks company id; set config.realm_id or store integration '{acct.name}' with settings={{'realm_id': '...'}}",
            retryable=False,
            kind="InvalidConfig",
        )
    invoice: dict[str, Any] = {
        "CustomerRef": {"value": str(config["customer_id"])},
        "Line": [_invoice_line(line) for line in config["lines"]],
    }
    if config.get("due_date"):
        invoice["DueDate"] = config["due_date"]
    if config.get("doc_number"):
        invoice["DocNumber"] = config["doc_number"]
    reply = await call(ctx, QUICKBOOKS, acct, "POST", f"/v3/company/{quote(str(realm), safe='')}/invoice", json=invoice)
    created = reply.body.get("Invoice") or {}
    return {"id": created.get("Id"), "doc_number": created.get("DocNumber"), "total": created.get("TotalAmt")}


def _invoice_line(line: dict) -> dict:
    detail: dict[str, Any] = {"ItemRef": {"value": str(line["item_id"])}}
    if "quantity" in line:
        detail["Qty"] = line["quantity"]
    if "unit_price" in line:
        detail["UnitPrice"] = line["unit_price"]
    out = {"DetailType": "SalesItemLineDetail", "Amount": line["amount"], "SalesItemLineDetail": detail}
    if line.get("description"):
        out["Description"] = line["description"]
    return out


QUICKBOOKS_INVOICE = _action(
    "action.quickbooks",
    QUICKBOOKS,
    title="QuickBooks invoice",
    description="Creates a QuickBooks Online invoice for a customer; the output is {id, doc_number, total}.",
    run=create_quickbooks_invoice,
    properties={
        "realm_id": {
            "type": "string",
            "minLength": 1,
            "description": "Company id; defaults to the integration's settings.realm_id.",
        },
        "customer_id": {"type": ["string", "integer"], "description": "Id of the QuickBooks customer billed."},
        "lines": {
            "type": "array",
            "minItems": 1,
            "description": "Invoice lines: {amount, item_id, description?, quantity?, unit_price?}.",
            "items": {
                "type": "object",
                "required": ["amount", "item_id"],
                "additionalProperties": False,
                "properties": {
                    "amount": {
                        "type": "number",
                        "description": "Line total (quantity x unit_price when both are given).",
                    },
                    "item_id": {"type": ["string", "integer"], "description": "Id of the product or service sold."},
                    "description": {"type": "string"},
                    "quantity": {"type": "number"},
                    "unit_price": {"type": "number"},
                },
            },
        },
        "due_date": {"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}$", "description": "YYYY-MM-DD."},
        "doc_number": {"type": "string", "description": "Invoice number; QuickBooks assigns one when omitted."},
    },
    required=["customer_id", "lines"],
    docs="Sends the node's idempotency key as Intuit's `requestid`, so a retry after a lost answer gets the same invoice back instead of a second one. "
    "For the sandbox, store the integration with `settings={'base_url': 'https://sandbox-quickbooks.api.intuit.com', 'realm_id': ...}`.",
    icon="receipt",
)
