"""Retention: how long the store keeps run records, logs and stored documents, and the purge.

The policies are settings, in days, 0 meaning keep forever:

- ``run_retention_days`` (90): run records by end time, with their node timings. A run still
  queued or running is never purged, however long ago it started. Alerts cleared before the
  same cutoff go too.
- ``log_retention_days`` (30): log lines and metric samples, by their timestamp.
- ``blob_retention_days`` (0, keep): stored documents (blobs.py), by the age of their file. A
  blob is content-addressed and written once, so its age is that of its first upload: only set
  this longer than any run that may still read an old document.

The Jupyter server extension purges hourly; ``fo.purge()`` shows what would go.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from . import blobs
from .settings import Settings
from .store import Store
from .store.models import as_utc, utcnow

POLICIES = ("run_retention_days", "log_retention_days", "blob_retention_days")
_DIGEST = re.compile(r"[0-9a-f]{64}")  # a blob's file name (its sha256)


def cutoffs(settings: Settings, now: datetime | None = None) -> dict[str, datetime | None]:
    """What is older than these goes: ``{"runs": ..., "logs": ..., "blobs": ...}``, None keeps all."""
    now = as_utc(now) if now is not None else utcnow()
    found = {}
    for name, policy in zip(("runs", "logs", "blobs"), POLICIES, strict=True):
        days = getattr(settings, policy)
        if days < 0:
            raise ValueError(f"FLOWORCH_{policy.upper()} must be 0 (keep forever) or a number of days, got {days}")
        found[name] = now - timedelta(days=days) if days else None
    return found


def purge(store: Store, settings: Settings, *, dry_run: bool = False, now: datetime | None = None) -> dict:
    """Delete what the policies no longer keep; with ``dry_run`` only count it.

    Returns the count per kind (runs, node_timings, logs, alerts, metric_samples, blobs), plus
    ``dry_run`` and the ``before`` cutoffs that were applied."""
    before = cutoffs(settings, now)
    # The policies are the deployment's: they apply to every tenant's records alike.
    counts: dict = {}
    for tenant in dict.fromkeys([store.tenant, *store.tenants()]):
        for kind, count in (
            store.for_tenant(tenant)
            .purge(runs_ended_before=before["runs"], logs_before=before["logs"], dry_run=dry_run)
            .items()
        ):
            counts[kind] = counts.get(kind, 0) + count
    counts["blobs"] = _purge_blobs(blobs.root(settings), before["blobs"], dry_run)
    return {**counts, "dry_run": dry_run, "before": before}


def _purge_blobs(folder: Path, before: datetime | None, dry_run: bool) -> int:
    if before is None or not folder.is_dir():
        return 0
    count = 0
    for path in folder.iterdir():
        # Only the blobs themselves (named by their digest): their .json hint goes with them,
        # and temporary files of uploads in progress are left alone.
        if not _DIGEST.fullmatch(path.name) or not path.is_file():
            continue
        if path.stat().st_mtime >= before.timestamp():
            continue
        count += 1
        if not dry_run:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".json").unlink(missing_ok=True)
    return count
