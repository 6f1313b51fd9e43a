"""Errors of the service layer. The REST API maps them to status codes, the kernel raises them."""

from __future__ import annotations


class FloworchError(Exception):
    status = 500


class NotFound(FloworchError):
    status = 404

    def __init__(self, kind: str, ident: str, hint: str | None = None):
        super().__init__(f"no {kind} with id '{ident}'" + (f" ({hint})" if hint else ""))
        self.kind = kind
        self.ident = ident


class BadRequest(FloworchError):
    """Input that cannot be used; ``field`` names where the problem is."""

    status = 400

    def __init__(self, message: str, field: str | None = None, problems: list | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.problems = problems or []


class Conflict(FloworchError):
    status = 409
