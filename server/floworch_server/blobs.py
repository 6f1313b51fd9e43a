"""Documents by reference: a content-addressed file store under ``<data dir>/blobs/``.

Large values (scanned documents, images) must not travel in Temporal payloads, so a caller puts
the bytes here and passes the id ``blob:<sha256>`` instead; a node reads them back with `path`.
The id is the SHA-256 of the content, so putting the same bytes twice stores them once, and a
retried activity always reads exactly what was put.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from .settings import Settings

PREFIX = "blob:"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def root(settings: Settings | None = None) -> Path:
    return (settings or Settings.from_env()).data_path / "blobs"


def put(data: bytes, filename: str = "", *, settings: Settings | None = None) -> str:
    """Store ``data`` and return its id, ``blob:<sha256>``. ``filename`` is kept as a hint of the
    format (the first name given for some content wins; the content is what the id names)."""
    digest = hashlib.sha256(data).hexdigest()
    folder = root(settings)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / digest
    if not target.exists():
        _write_atomically(target, data)
    meta = folder / f"{digest}.json"
    if not meta.exists():
        _write_atomically(meta, json.dumps({"filename": os.path.basename(filename or ""), "size": len(data)}).encode())
    return PREFIX + digest


def path(blob_id: str, *, settings: Settings | None = None) -> Path:
    """Where the blob's bytes are (it may not exist). Refuses anything but ``blob:<sha256 hex>``,
    so an id taken from a flow can never point outside the blob folder."""
    return root(settings) / _digest(blob_id)


def filename(blob_id: str, *, settings: Settings | None = None) -> str:
    """The file name given when the blob was put ("" if none or unknown)."""
    try:
        return json.loads((root(settings) / f"{_digest(blob_id)}.json").read_text()).get("filename", "")
    except (FileNotFoundError, ValueError):
        return ""


def is_blob_id(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _digest(blob_id: str) -> str:
    digest = blob_id[len(PREFIX) :] if isinstance(blob_id, str) and blob_id.startswith(PREFIX) else None
    if digest is None or not _DIGEST.fullmatch(digest):
        raise ValueError(
            f"not a blob id: {blob_id!r} (expected 'blob:' followed by a 64-character lowercase sha256 hex digest)"
        )
    return digest


def _write_atomically(target: Path, data: bytes) -> None:
    # Write beside the target and rename: a concurrent reader sees no file or the whole file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
