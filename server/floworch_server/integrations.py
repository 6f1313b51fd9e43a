"""Integrations: named, encrypted credentials of external providers (OpenAI, Slack, a database).

A node names an integration in its config (``"integration": "slack-main"``); its activity
fetches the secret here when it runs. Secrets are never written to .flow files, plans,
Temporal payloads or logs."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .errors import BadRequest, NotFound
from .secrets import SecretBox, box_for
from .settings import Settings
from .store import Store


class Integrations:
    def __init__(self, store: Store, box: SecretBox, tenant: str = "default"):
        self.store = store
        self.box = box
        self.tenant = tenant

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None) -> "Integrations":
        return cls(store or Store(settings.store_url), box_for(settings), settings.tenant)

    def add(self, name: str, provider: str, secret: dict[str, Any], *, by: str, settings: dict | None = None) -> dict:
        if not isinstance(secret, dict) or not secret:
            raise BadRequest("must be a non-empty object, e.g. {\"token\": \"...\"}", field="secret")
        record = self.store.put_integration(
            name=name, provider=provider, secret=self.box.encrypt(secret), settings=settings, created_by=by, tenant=self.tenant
        )
        # The audit log names what was stored, never the secret.
        self.store.audit(by, "integration.put", name, {"provider": provider, "fields": sorted(secret)})
        return record

    def list(self) -> list[dict]:
        return self.store.list_integrations(self.tenant)

    def remove(self, name: str, *, by: str) -> None:
        try:
            self.store.delete_integration(name, tenant=self.tenant)
        except KeyError:
            raise NotFound("integration", name) from None
        self.store.audit(by, "integration.delete", name, None)

    def get(self, name: str, provider: str | None = None) -> tuple[dict, dict]:
        """(public record, decrypted secret) of an integration; checks its provider when given."""
        record = self.store.get_integration(name, tenant=self.tenant)
        if record is None:
            known = ", ".join(i["name"] for i in self.list()) or "none"
            raise NotFound("integration", name, f"known: {known}; add one with fo.integrations.add")
        if provider and record["provider"] != provider:
            raise BadRequest(f"integration '{name}' is for {record['provider']}, not {provider}", field="integration")
        secret = self.box.decrypt(record.pop("secret"), f"secret of integration '{name}'")
        return record, secret


@lru_cache(maxsize=1)
def _worker_integrations(data_dir: str, store_url: str, secret_key: str, tenant: str) -> Integrations:
    settings = Settings(data_dir=data_dir, database_url=store_url, secret_key=secret_key, tenant=tenant)
    return Integrations.from_settings(settings)


def lookup(name: str, provider: str | None = None) -> tuple[dict, dict]:
    """For activities: the integration ``name`` of this process's settings (cached store)."""
    s = Settings.from_env()
    return _worker_integrations(s.data_dir, s.store_url, s.secret_key, s.tenant).get(name, provider)
