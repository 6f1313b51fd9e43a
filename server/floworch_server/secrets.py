"""Encryption of stored credentials (integration tokens, webhook secrets) with Fernet.

The key is FLOWORCH_SECRET_KEY, or else a key file created once in the data directory with
owner-only permissions. Every process of one deployment must use the same key."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from .settings import Settings


class SecretError(RuntimeError):
    pass


def load_key(settings: Settings) -> bytes:
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.data_path / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret.key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
        try:
            os.link(tmp, path)  # fails if another process made the key first: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return Path(path).read_bytes().strip()


class SecretBox:
    def __init__(self, key: bytes):
        try:
            self._fernet = Fernet(key)
        except ValueError as exc:
            raise SecretError(f"FLOWORCH_SECRET_KEY is not a valid Fernet key: {exc}") from None

    @classmethod
    def from_settings(cls, settings: Settings) -> "SecretBox":
        return cls(load_key(settings))

    def encrypt(self, value: Any) -> bytes:
        return self._fernet.encrypt(json.dumps(value).encode())

    def decrypt(self, token: bytes, what: str = "secret") -> Any:
        try:
            return json.loads(self._fernet.decrypt(bytes(token)))
        except InvalidToken:
            raise SecretError(
                f"cannot decrypt the stored {what}: it was encrypted with another key "
                "(FLOWORCH_SECRET_KEY or <data dir>/secret.key changed); store it again"
            ) from None


def box_for(settings: Settings) -> SecretBox:
    """The box of these settings' key; made once per key (reading the key file is I/O)."""
    return _box(settings.data_dir, settings.secret_key)


@lru_cache(maxsize=8)
def _box(data_dir: str, secret_key: str) -> SecretBox:
    return SecretBox(load_key(Settings(data_dir=data_dir, secret_key=secret_key)))
