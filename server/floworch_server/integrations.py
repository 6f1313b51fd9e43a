"""Integrations: named, encrypted credentials of external providers (OpenAI, Slack, a database).

A node names an integration in its config (``"integration": "slack-main"``); its activity
fetches the secret here when it runs. Secrets are never written to .flow files, plans,
Temporal payloads or logs."""

from __future__ import annotations

from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from .errors import BadRequest, NotFound
from .secrets import SecretBox, box_for
from .settings import Settings
from .store import Store, store_for


class Integrations:
    def __init__(self, store: Store, box: SecretBox, tenant: str = "default"):
        self.store = store
        self.box = box
        self.tenant = tenant

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None) -> Integrations:
        return cls(store or store_for(settings, settings.tenant), box_for(settings), settings.tenant)

    def add(self, name: str, provider: str, secret: dict[str, Any], *, by: str, settings: dict | None = None) -> dict:
        if not isinstance(secret, dict) or not secret:
            raise BadRequest('must be a non-empty object, e.g. {"token": "..."}', field="secret")
        record = self.store.put_integration(
            name=name,
            provider=provider,
            secret=self.box.encrypt(secret),
            settings=settings,
            created_by=by,
            tenant=self.tenant,
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
    # from_env: the key settings (FLOWORCH_KEY_FILE, FLOWORCH_KMS_*) come along, fixed per process.
    settings = Settings.from_env(data_dir=data_dir, database_url=store_url, secret_key=secret_key, tenant=tenant)
    return Integrations.from_settings(settings)


# The tenant of the run whose activity is running (set by activities.NodeContext): a node only
# ever finds its own tenant's integrations, whatever name its config gives.
RUN_TENANT: ContextVar[str | None] = ContextVar("floworch_run_tenant", default=None)


def lookup(name: str, provider: str | None = None) -> tuple[dict, dict]:
    """For activities: the integration ``name`` of the running node's tenant (cached store)."""
    s = Settings.from_env()
    base = _worker_integrations(s.data_dir, s.store_url, s.secret_key, s.tenant)
    tenant = RUN_TENANT.get() or base.tenant
    scoped = base if tenant == base.tenant else Integrations(base.store.for_tenant(tenant), base.box, tenant)
    return scoped.get(name, provider)
