"""Stored credentials of external providers, from a notebook::

    fo.integrations.add("openai-main", "openai", api_key="sk-...")
    fo.integrations.list()
    fo.integrations.remove("openai-main")

Nodes name an integration in their config; the secret itself is encrypted in the store and
only decrypted by the activity that uses it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from floworch_server.integrations import Integrations

from ._service import service, user


def _integrations() -> Integrations:
    svc = service()
    return Integrations.from_settings(svc.settings, store=svc.store)


def add(name: str, provider: str, *, settings: dict | None = None, **secret: Any) -> dict:
    """Store (or replace) an integration; keyword arguments are its secret fields."""
    record = _integrations().add(name, provider, secret, by=user(), settings=settings)
    return {k: record[k] for k in ("name", "provider", "settings")}


def list() -> pd.DataFrame:  # noqa: A001 - fo.integrations.list() reads naturally
    rows = _integrations().list()
    return pd.DataFrame(rows, columns=["name", "provider", "settings", "created_by", "updated_at"])


def remove(name: str) -> None:
    _integrations().remove(name, by=user())
