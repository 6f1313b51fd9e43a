"""The FlowOrchestrator store: workflows, published versions, runs, logs, audit log, members.

SQLite by default (one file shared by every local process), Postgres for teams; the schema is
migrated by Alembic when a ``Store`` opens. A ``Store`` is scoped to one tenant (see repo.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .models import FINAL_STATUSES, ROLES, RUN_STATUSES, TENANT_ID, check_tenant
from .repo import NotFound, Store

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["FINAL_STATUSES", "ROLES", "RUN_STATUSES", "TENANT_ID", "NotFound", "Store", "check_tenant", "store_for"]


def store_for(settings: Settings, tenant: str = "default") -> Store:
    """The store the settings name, scoped to ``tenant``: the application's URL
    (``FLOWORCH_DATABASE_URL``), migrated through ``FLOWORCH_DATABASE_OWNER_URL`` when set, with
    the reads that tolerate lag on ``FLOWORCH_DATABASE_READ_URL`` when set."""
    return Store(
        settings.store_url,
        tenant=tenant,
        owner_url=settings.database_owner_url or None,
        read_url=settings.database_read_url or None,
    )
