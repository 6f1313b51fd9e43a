"""Encryption of stored credentials (integration tokens, webhook secrets): envelope encryption.

Each secret is encrypted with its own random 256-bit data key (AES-256-GCM, 96-bit random
nonce); the data key is stored wrapped by a key-encryption key (KEK, see ``keys.py``: the local
key file by default, or AWS KMS). What is stored is a small JSON document, as bytes::

    {"v": 1, "alg": "A256GCM", "kek": "<KEK id>", "dek": "<wrapped data key, base64>",
     "iv": "<nonce, base64>", "ct": "<ciphertext and 16-byte tag, base64>"}

The ciphertext is bound to the format version (associated data), so it cannot be decrypted as
anything else; a changed byte anywhere fails authentication instead of yielding garbage.
Rotation re-wraps ``dek`` and changes ``kek``; ``iv`` and ``ct`` stay as they are.

Tokens written before this format (Fernet, one key: FLOWORCH_SECRET_KEY or
``<data dir>/secret.key``) still decrypt; ``floworch keys rotate`` re-encrypts them."""

from __future__ import annotations

import base64
import binascii
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .keys import LEGACY_ID, NONCE_BYTES, KeyRing, SecretError
from .settings import Settings

__all__ = ["SecretBox", "SecretError", "box_for"]

FORMAT_VERSION = 1
ALGORITHM = "A256GCM"
DATA_AAD = b"floworch-secret:v1"
BLOB_FIELDS = ("v", "alg", "kek", "dek", "iv", "ct")


class LegacyKey:
    """The Fernet key of tokens stored before envelope encryption; read only when one is met."""

    def __init__(self, settings: Settings):
        self.secret_key = settings.secret_key
        self.path = settings.data_path / "secret.key"

    def fernet(self, what: str):
        from cryptography.fernet import Fernet

        if self.secret_key:
            key = self.secret_key.encode()
        else:
            try:
                key = Path(self.path).read_bytes().strip()
            except FileNotFoundError:
                raise SecretError(
                    f"cannot decrypt the stored {what}: it is in the old Fernet format and its key is gone "
                    f"(neither FLOWORCH_SECRET_KEY nor {self.path}); restore that key, or store the secret again"
                ) from None
        try:
            return Fernet(key)
        except ValueError as exc:
            raise SecretError(
                f"FLOWORCH_SECRET_KEY is not a valid Fernet key ({exc}), so the stored {what} cannot be decrypted"
            ) from None


class SecretBox:
    """Encrypts values for storage and decrypts them; ``what`` names the value in errors."""

    def __init__(self, keyring: KeyRing, legacy: LegacyKey):
        self.keyring = keyring
        self.legacy = legacy

    @classmethod
    def from_settings(cls, settings: Settings, *, keyring: KeyRing | None = None) -> SecretBox:
        return cls(keyring or KeyRing(settings), LegacyKey(settings))

    def encrypt(self, value: Any) -> bytes:
        return _seal(value, *self.keyring.new_data_key())

    def decrypt(self, token: bytes, what: str = "secret") -> Any:
        token = bytes(token)
        if not _is_envelope(token):
            return self._decrypt_legacy(token, what)
        blob = _parse(token, what)
        data_key = self.keyring.unwrap(blob["kek"], blob["dek"], what)
        try:
            plaintext = AESGCM(data_key).decrypt(blob["iv"], blob["ct"], DATA_AAD)
        except InvalidTag:
            raise SecretError(
                f"cannot decrypt the stored {what}: it was altered or damaged (authentication failed); store the secret again"
            ) from None
        return json.loads(plaintext)

    def kek_of(self, token: bytes, what: str = "secret") -> str:
        """The id of the KEK whose data key encrypts ``token`` (``legacy-fernet`` for old tokens)."""
        token = bytes(token)
        return _parse(token, what)["kek"] if _is_envelope(token) else LEGACY_ID

    def rewrap(self, token: bytes, what: str = "secret", *, kek_id: str | None = None) -> bytes | None:
        """``token`` with its data key wrapped by ``kek_id`` (default: the current KEK), or None
        when it already is. The ciphertext is kept; an old Fernet token is encrypted anew."""
        target = kek_id or self.keyring.current_id()
        token = bytes(token)
        if not _is_envelope(token):
            return _seal(self._decrypt_legacy(token, what), *self.keyring.new_data_key(target))
        blob = _parse(token, what)
        if blob["kek"] == target:
            return None
        data_key = self.keyring.unwrap(blob["kek"], blob["dek"], what)
        raw = json.loads(token)
        wrapped = self.keyring.wrap(data_key, target)
        raw.update(kek=target, dek=_b64(wrapped))
        return _dump(raw)

    def _decrypt_legacy(self, token: bytes, what: str) -> Any:
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self.legacy.fernet(what).decrypt(token))
        except InvalidToken:
            raise SecretError(
                f"cannot decrypt the stored {what}: it is neither an encrypted secret of this version nor an old Fernet token "
                "of this deployment's key (FLOWORCH_SECRET_KEY or <data dir>/secret.key), or it was altered; store the secret again"
            ) from None


def _seal(value: Any, kek_id: str, data_key: bytes, wrapped: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, json.dumps(value).encode(), DATA_AAD)
    return _dump(
        {
            "v": FORMAT_VERSION,
            "alg": ALGORITHM,
            "kek": kek_id,
            "dek": _b64(wrapped),
            "iv": _b64(nonce),
            "ct": _b64(ciphertext),
        }
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _dump(blob: dict) -> bytes:
    return json.dumps(blob, separators=(",", ":")).encode()


def _is_envelope(token: bytes) -> bool:
    # Fernet tokens are URL-safe base64 and never start with "{".
    return token[:1] == b"{"


def _parse(token: bytes, what: str) -> dict:
    """The decoded fields of an envelope; SecretError naming ``what`` if it is not a whole one."""
    try:
        raw = json.loads(token)
    except ValueError:
        raise SecretError(
            f"cannot decrypt the stored {what}: it is damaged (cut short or not valid JSON); store the secret again"
        ) from None
    if not isinstance(raw, dict) or any(name not in raw for name in BLOB_FIELDS):
        missing = [name for name in BLOB_FIELDS if not isinstance(raw, dict) or name not in raw]
        raise SecretError(
            f"cannot decrypt the stored {what}: it is damaged (missing {', '.join(missing)}); store the secret again"
        )
    if raw["v"] != FORMAT_VERSION or raw["alg"] != ALGORITHM:
        raise SecretError(
            f"cannot decrypt the stored {what}: it is in format v{raw['v']} ({raw['alg']}), which this version does not read; "
            "upgrade FlowOrchestrator on this machine"
        )
    try:
        blob = {
            "kek": str(raw["kek"]),
            **{name: base64.b64decode(raw[name], validate=True) for name in ("dek", "iv", "ct")},
        }
    except (binascii.Error, TypeError, ValueError):
        raise SecretError(
            f"cannot decrypt the stored {what}: it is damaged (a field is not base64); store the secret again"
        ) from None
    if len(blob["iv"]) != NONCE_BYTES:
        raise SecretError(
            f"cannot decrypt the stored {what}: it is damaged (its nonce is {len(blob['iv'])} bytes, not {NONCE_BYTES})"
        )
    return blob


def box_for(settings: Settings) -> SecretBox:
    """The box of these settings' keys, one per process and key configuration (it caches the
    key file and, for KMS, unwrapped data keys)."""
    return _box(
        settings.data_dir,
        settings.secret_key,
        settings.key_file,
        settings.kms_key_id,
        settings.kms_region,
        settings.kms_endpoint_url,
    )


@lru_cache(maxsize=8)
def _box(
    data_dir: str, secret_key: str, key_file: str, kms_key_id: str, kms_region: str, kms_endpoint_url: str
) -> SecretBox:
    settings = Settings(
        data_dir=data_dir,
        secret_key=secret_key,
        key_file=key_file,
        kms_key_id=kms_key_id,
        kms_region=kms_region,
        kms_endpoint_url=kms_endpoint_url,
    )
    return SecretBox.from_settings(settings)
