"""The FlowOrchestrator store: workflows, published versions, runs, logs and audit log.

SQLite by default (one file shared by every local process), Postgres for teams; the schema is
migrated by Alembic when a ``Store`` opens.
"""

from .models import FINAL_STATUSES, RUN_STATUSES
from .repo import NotFound, Store

__all__ = ["FINAL_STATUSES", "RUN_STATUSES", "NotFound", "Store"]
