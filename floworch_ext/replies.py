"""What every reply of the API is made of: JSON with ISO 8601 times, and the one error body.

Errors are ``{"error": message, "field": where, "problems": [...]}``; the status is the service
error's (400 BadRequest or an invalid flow, 404 NotFound, 409 Conflict, 503 Unavailable).
The HTTP handlers and the WebSockets both answer this way.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from floworch_server.errors import FloworchError
from floworch_server.problems import FlowInvalid


def dumps(value: Any) -> str:
    return json.dumps(value, default=_encode)


def _encode(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def error_body(exc: BaseException) -> dict:
    # BadRequest names a field and may carry problems; FlowInvalid carries every problem of a flow.
    problems = getattr(exc, "problems", None) or []
    return {
        "error": str(exc),
        "field": getattr(exc, "field", None),
        "problems": [p.to_dict() if hasattr(p, "to_dict") else p for p in problems],
    }


def error_status(exc: BaseException | None) -> int | None:
    if isinstance(exc, FloworchError):
        return exc.status
    if isinstance(exc, FlowInvalid):
        return 400
    return None
