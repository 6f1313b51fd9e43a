"""Key-encryption keys (KEKs): what wraps the per-secret data keys of ``secrets.py``, and rotation.

Every stored secret has its own random AES-256 data key; only the *wrapped* data key is stored,
next to the ciphertext, with the id of the KEK that wrapped it. A KEK is one of:

- ``local-<hex>``: 32 random bytes in the key file (``FLOWORCH_KEY_FILE``, by default
  ``<data dir>/keys.json``, owner-only). The file holds every KEK that may still be named by a
  stored secret, and which one is current; a data key is wrapped with AES-256-GCM under it.
- ``kms:<key ARN>``: an AWS KMS key. Data keys come from ``GenerateDataKey`` and are unwrapped by
  ``Decrypt``; the key material never leaves KMS. It is current when ``FLOWORCH_KMS_KEY_ID`` is
  set, or after ``floworch keys rotate --kms-key-id``.

Rotation (``rotate``) makes a new KEK current and re-wraps every stored data key under it; the
ciphertexts themselves do not change. Nothing stops meanwhile: a secret names its KEK, old KEKs
stay in the key file until ``retire`` (which refuses while any secret still names them), and a
process that meets a KEK id it does not know re-reads the key file.

Unwrapped data keys of KMS KEKs are cached in memory (at most ``DEK_CACHE_SIZE`` of them, for
``DEK_CACHE_SECONDS``): each KMS call costs a network round trip per node that reads a secret,
and a worker reads the same few integrations over and over. The cache holds only data keys,
never the secrets, and an entry expires so that disabling a KMS key takes effect within minutes.
Local KEKs unwrap in microseconds and are not cached.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import secrets as _random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .settings import Settings

KEYRING_FORMAT = "floworch-keyring"
KEYRING_VERSION = 1
LOCAL_PREFIX = "local-"
KMS_PREFIX = "kms:"
# Tokens written before envelope encryption are Fernet tokens; they are named by this id.
LEGACY_ID = "legacy-fernet"
NONCE_BYTES = 12  # 96-bit GCM nonce, random per encryption
# Bound to every locally wrapped data key, with the KEK id: a wrapped key moved under another
# KEK id, or any other AES-GCM blob, does not unwrap.
LOCAL_WRAP_AAD = b"floworch-data-key:"
# Sent with every KMS call and checked by KMS: ciphertexts of other applications of the same key
# cannot be passed off as data keys.
KMS_CONTEXT = {"purpose": "floworch-data-key"}
DEK_CACHE_SIZE = 1024
DEK_CACHE_SECONDS = 300.0


class SecretError(RuntimeError):
    """A stored secret cannot be encrypted, decrypted or re-wrapped; the message says which and why."""


class KeyUsageError(ValueError):
    """Bad input to a key operation (unknown KEK id, retiring a KEK still in use): nothing changed."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class KeyFileState:
    """What the key file holds: the current KEK's id and every KEK by id."""

    current: str | None
    keks: dict[str, Kek]


@dataclass
class Kek:
    id: str
    kind: str  # "local" or "kms"
    created: str
    key: bytes | None = field(default=None, repr=False)  # local: the key material
    retired: str | None = None  # when retired; its material is gone

    @property
    def material(self) -> bytes:
        """A local KEK's key bytes (KMS keys and retired ones have none here)."""
        if self.key is None:
            raise KeyUsageError(f"key-encryption key '{self.id}' has no local key material")
        return self.key

    @property
    def arn(self) -> str:
        return self.id[len(KMS_PREFIX) :]

    def as_json(self) -> dict:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "created": self.created}
        if self.key is not None:
            out["key"] = _b64(self.key)
        if self.retired:
            out["retired"] = self.retired
        return out


# ------------------------------------------------------------------ the key file
class KeyFile:
    """The local key file: KEKs by id and which is current; read-modify-write under a lock."""

    def __init__(self, path: Path):
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the file is replaced, so readers know when to read it again."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> tuple[str | None, dict[str, Kek]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None, {}
        except (OSError, ValueError) as exc:
            raise SecretError(f"the key file {self.path} cannot be read ({exc}); restore it from a backup") from None
        if not isinstance(data, dict) or data.get("format") != KEYRING_FORMAT or data.get("version") != KEYRING_VERSION:
            raise SecretError(
                f"the key file {self.path} is not a FlowOrchestrator key file of version {KEYRING_VERSION}; "
                "restore it from a backup or point FLOWORCH_KEY_FILE at the right one"
            )
        keks: dict[str, Kek] = {}
        for entry in data.get("keys", []):
            try:
                key = base64.b64decode(entry["key"], validate=True) if "key" in entry else None
                keks[entry["id"]] = Kek(entry["id"], entry["kind"], entry["created"], key, entry.get("retired"))
            except (KeyError, TypeError, binascii.Error):
                raise SecretError(
                    f"the key file {self.path} has a damaged entry {entry.get('id', '?')!r}; restore it from a backup"
                ) from None
        return data.get("current"), keks

    def ensure(self) -> None:
        """Make the key file with one local KEK, once: of processes racing here, the first wins."""
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kek = new_local_kek()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{_random.token_hex(4)}")
        self._write_file(tmp, kek.id, {kek.id: kek})
        try:
            os.link(tmp, self.path)  # fails if another process made the file first: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    @contextlib.contextmanager
    def locked(self) -> Iterator[KeyFileState]:
        """The file's content, to change in place; written back atomically when the block ends.

        The lock serialises rotations and retirements; readers never take it (the file is
        replaced by rename, so they see the old content or the new, never half of one)."""
        self.ensure()
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            state = KeyFileState(*self.read())
            yield state
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{_random.token_hex(4)}")
            self._write_file(tmp, state.current, state.keks)
            os.replace(tmp, self.path)
        finally:
            os.close(fd)

    @staticmethod
    def _write_file(path: Path, current: str | None, keks: dict[str, Kek]) -> None:
        body = {
            "format": KEYRING_FORMAT,
            "version": KEYRING_VERSION,
            "current": current,
            "keys": [k.as_json() for k in keks.values()],
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(body, out, indent=1)
            out.flush()
            os.fsync(out.fileno())


def new_local_kek() -> Kek:
    return Kek(LOCAL_PREFIX + _random.token_hex(6), "local", _now(), AESGCM.generate_key(bit_length=256))


def key_file_path(settings: Settings) -> Path:
    return Path(settings.key_file).expanduser().resolve() if settings.key_file else settings.data_path / "keys.json"


# ------------------------------------------------------------------ the key ring
class KeyRing:
    """Wraps and unwraps data keys with the KEKs of one deployment's settings. Thread-safe."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic):
        self.file = KeyFile(key_file_path(settings))
        self.kms_key_id = settings.kms_key_id
        self.kms_region = settings.kms_region
        self.kms_endpoint_url = settings.kms_endpoint_url
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._current: str | None = None
        self._keks: dict[str, Kek] = {}
        self._clients: dict[str, Any] = {}
        self._deks: OrderedDict[tuple[str, bytes], tuple[bytes, float]] = OrderedDict()

    # -- which KEK ----------------------------------------------------------------------
    def _refresh(self) -> None:
        """Re-read the key file if it was replaced since the last read (one stat call)."""
        stamp = self.file.stamp()
        if stamp != self._stamp:
            current, keks = self.file.read()
            with self._lock:
                self._stamp, self._current, self._keks = stamp, current, keks

    def keks(self) -> dict[str, Kek]:
        self._refresh()
        return dict(self._keks)

    def current_id(self) -> str:
        """The KEK new data keys are wrapped with: FLOWORCH_KMS_KEY_ID, else the key file's current."""
        if self.kms_key_id:
            return KMS_PREFIX + self.kms_key_id
        self._refresh()
        if self._current is None:
            self.file.ensure()
            self._refresh()
        if self._current is None:
            raise SecretError(f"the key file {self.file.path} names no current key; run `floworch keys rotate`")
        return self._current

    def _kek(self, kek_id: str, what: str) -> Kek:
        self._refresh()
        kek = self._keks.get(kek_id)
        if kek is None and kek_id.startswith(KMS_PREFIX):
            return Kek(kek_id, "kms", "")  # KMS keys need no entry: KMS holds them
        if kek is None:
            raise SecretError(
                f"cannot decrypt the stored {what}: its data key was wrapped by key-encryption key '{kek_id}', which is not in "
                f"{self.file.path} (another deployment's key file, or a lost one); restore that key file, or store the secret again"
            )
        if kek.retired:
            raise SecretError(
                f"cannot decrypt the stored {what}: its key-encryption key '{kek_id}' was retired on {kek.retired}; "
                "restore the key file from a backup taken before, or store the secret again"
            )
        return kek

    # -- wrapping --------------------------------------------------------------------------
    def new_data_key(self, kek_id: str | None = None) -> tuple[str, bytes, bytes]:
        """A fresh 256-bit data key: (KEK id, plaintext key, wrapped key)."""
        kek_id = kek_id or self.current_id()
        if kek_id.startswith(KMS_PREFIX):
            answer = self._kms_call(
                "generate a data key with", kek_id[len(KMS_PREFIX) :], "generate_data_key", KeySpec="AES_256"
            )
            # KMS answers with the key's ARN whatever the id was (alias, bare id): blobs name the ARN.
            return KMS_PREFIX + answer["KeyId"], answer["Plaintext"], answer["CiphertextBlob"]
        data_key = AESGCM.generate_key(bit_length=256)
        return kek_id, data_key, self.wrap(data_key, kek_id)

    def wrap(self, data_key: bytes, kek_id: str) -> bytes:
        if kek_id.startswith(KMS_PREFIX):
            answer = self._kms_call("wrap a data key with", kek_id[len(KMS_PREFIX) :], "encrypt", Plaintext=data_key)
            return answer["CiphertextBlob"]
        kek = self._kek(kek_id, "secret")
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(kek.material).encrypt(nonce, data_key, LOCAL_WRAP_AAD + kek_id.encode())

    def unwrap(self, kek_id: str, wrapped: bytes, what: str) -> bytes:
        kek = self._kek(kek_id, what)  # refuses retired KEKs, KMS ones included
        if kek.kind == "kms":
            return self._unwrap_kms(kek_id, wrapped, what)
        try:
            return AESGCM(kek.material).decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], LOCAL_WRAP_AAD + kek_id.encode()
            )
        except (InvalidTag, ValueError):
            raise SecretError(
                f"cannot decrypt the stored {what}: its data key does not unwrap with key-encryption key '{kek_id}' "
                f"(the key of that id in {self.file.path} is not the one it was wrapped with, or the stored value was altered); "
                "restore the right key file, or store the secret again"
            ) from None

    def _unwrap_kms(self, kek_id: str, wrapped: bytes, what: str) -> bytes:
        cache_key = (kek_id, bytes(wrapped))
        now = self._clock()
        with self._lock:
            hit = self._deks.get(cache_key)
            if hit is not None and hit[1] > now:
                self._deks.move_to_end(cache_key)
                return hit[0]
        answer = self._kms_call(
            "unwrap the data key of the stored " + what + " with",
            kek_id[len(KMS_PREFIX) :],
            "decrypt",
            CiphertextBlob=bytes(wrapped),
        )
        data_key = answer["Plaintext"]
        with self._lock:
            self._deks[cache_key] = (data_key, now + DEK_CACHE_SECONDS)
            self._deks.move_to_end(cache_key)
            while len(self._deks) > DEK_CACHE_SIZE:
                self._deks.popitem(last=False)
        return data_key

    # -- KMS -----------------------------------------------------------------------------
    def kms_client(self, key_id: str) -> Any:
        """A boto3 KMS client for the region of ``key_id`` (an ARN names its region)."""
        parts = key_id.split(":")
        region = parts[3] if key_id.startswith("arn:") and len(parts) > 4 and parts[3] else (self.kms_region or None)
        with self._lock:
            client = self._clients.get(region or "")
            if client is None:
                import boto3
                from botocore.config import Config

                client = boto3.session.Session().client(
                    "kms",
                    region_name=region,
                    endpoint_url=self.kms_endpoint_url or None,
                    config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=15),
                )
                self._clients[region or ""] = client
        return client

    def _kms_call(self, doing: str, key_id: str, operation: str, **params: Any) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        if operation != "decrypt" or key_id.startswith("arn:"):
            params["KeyId"] = key_id
        try:
            return getattr(self.kms_client(key_id), operation)(EncryptionContext=KMS_CONTEXT, **params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise SecretError(
                f"AWS KMS refused to {doing} key '{key_id}': {error.get('Code', '?')}: {error.get('Message') or 'no message'} "
                "(check that the key exists, is enabled, and that this process's AWS identity may use it)"
            ) from None
        except BotoCoreError as exc:
            where = self.kms_endpoint_url or "AWS KMS"
            raise SecretError(
                f"cannot {doing} key '{key_id}': {where} did not answer ({exc}); check FLOWORCH_KMS_ENDPOINT_URL, "
                "FLOWORCH_KMS_REGION and the AWS credentials of this process"
            ) from None

    def describe_kms_key(self, key_id: str) -> str:
        """The ARN of a usable symmetric KMS key; KeyUsageError for an unknown or unusable one."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            meta = self.kms_client(key_id).describe_key(KeyId=key_id)["KeyMetadata"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise KeyUsageError(
                f"KMS key '{key_id}' cannot be used: {error.get('Code', '?')}: {error.get('Message') or 'no message'}"
            ) from None
        except BotoCoreError as exc:
            raise KeyUsageError(
                f"cannot reach AWS KMS to look up key '{key_id}' ({exc}); check FLOWORCH_KMS_ENDPOINT_URL and the credentials"
            ) from None
        if meta.get("KeyState", "Enabled") != "Enabled" or meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
            raise KeyUsageError(
                f"KMS key '{key_id}' is {meta.get('KeyState')} with usage {meta.get('KeyUsage')}; "
                "name an enabled symmetric ENCRYPT_DECRYPT key"
            )
        return meta["Arn"]


# ------------------------------------------------------------------ rotation
@dataclass
class RotationReport:
    kek: str  # the KEK every data key is now wrapped with
    previous: list[str]  # the KEKs that wrapped them before (still available until retired)
    rewrapped: int = 0
    legacy_reencrypted: int = 0
    already_current: int = 0
    failed: list[str] = field(default_factory=list)  # what could not be re-wrapped, and why
    tenants: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _tenant_stores(store: Any) -> Iterator[tuple[str, Any]]:
    """(tenant, that tenant's view of the store), for every tenant with encrypted values.

    Tenants are the store's ``tenants()`` (where row-level security hides other tenants' rows,
    the only way to know them) and those it sees holding encrypted values."""
    lister = getattr(store, "tenants", None)
    names = set(lister() if callable(lister) else ["default"]) | set(store.secret_tenants())
    for name in sorted(names):
        yield name, store.for_tenant(name)


def _rows(store: Any) -> Iterator[tuple[str, Any, dict]]:
    for tenant, scoped in _tenant_stores(store):
        for row in scoped.encrypted_secrets():
            yield tenant, scoped, row


def label(row: dict) -> str:
    return f"{row['label']} (tenant {row['tenant']})"


def usage(box: Any, store: Any) -> dict[str, list[str]]:
    """KEK id -> the stored secrets (labels) whose data key it wraps, over every tenant.

    A value that cannot be read at all is listed under "damaged"."""
    used: dict[str, list[str]] = {}
    for _tenant, _scoped, row in _rows(store):
        try:
            kek = box.kek_of(row["secret"], label(row))
        except SecretError:
            kek = "damaged"
        used.setdefault(kek, []).append(label(row))
    return used


def rotate(
    settings: Settings,
    store: Any,
    *,
    kms_key_id: str | None = None,
    local: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> RotationReport:
    """Make a new KEK current and re-wrap every stored data key with it (legacy tokens re-encrypted).

    Target: ``kms_key_id`` (moves to that KMS key); ``local``, or no KMS key configured: a new
    local KEK; otherwise the configured KMS key (secrets already under it stay as they are: KMS
    rotates its own key material and keeps the old material for decryption).
    Raises KeyUsageError before changing anything when the target cannot be used."""
    from .secrets import SecretBox

    if kms_key_id and local:
        raise KeyUsageError("give either --kms-key-id or --local, not both")
    ring = KeyRing(settings)
    file = ring.file
    configured = KMS_PREFIX + ring.describe_kms_key(settings.kms_key_id) if settings.kms_key_id else ""
    if kms_key_id:
        target = KMS_PREFIX + ring.describe_kms_key(kms_key_id)
    elif local:
        target = ""
    elif configured:
        target = configured
    elif file.exists() and (file.read()[0] or "").startswith(KMS_PREFIX):
        target = KMS_PREFIX + ring.describe_kms_key((file.read()[0] or "")[len(KMS_PREFIX) :])
    else:
        target = ""
    if configured and target != configured:
        raise KeyUsageError(
            f"FLOWORCH_KMS_KEY_ID is set ({settings.kms_key_id}): it decides which key wraps new secrets, so every process "
            "would keep using it; change it (to the new KMS key, or unset it for a local key) and run the rotation with the same settings"
        )
    # The new KEK is saved before any secret names it: every process can unwrap what follows.
    with file.locked() as state:
        if not target:
            kek = new_local_kek()
            state.keks[kek.id] = kek
            target = kek.id
        elif target not in state.keks or state.keks[target].retired:
            state.keks[target] = Kek(target, "kms", _now())
        state.current = target
    progress(f"current key-encryption key: {target}")
    box = SecretBox.from_settings(settings, keyring=KeyRing(settings))
    report = RotationReport(kek=target, previous=[])
    previous: set[str] = set()
    for tenant, scoped, row in _rows(store):
        if tenant not in report.tenants:
            report.tenants.append(tenant)
        what = label(row)
        try:
            before = box.kek_of(row["secret"], what)
            outcome = _rewrap_row(box, scoped, row, what, target)
        except SecretError as exc:
            report.failed.append(str(exc))
            progress(f"FAILED {what}: {exc}")
            continue
        if outcome == "current":
            report.already_current += 1
            continue
        if outcome == "deleted":
            continue
        previous.add(before)
        if before == LEGACY_ID:
            report.legacy_reencrypted += 1
        else:
            report.rewrapped += 1
        progress(f"re-wrapped {what}: {before} -> {target}")
    report.previous = sorted(previous)
    return report


def _rewrap_row(box: Any, scoped: Any, row: dict, what: str, target: str) -> str:
    """Re-wrap one stored secret's data key: "rewrapped", "current" (nothing to do) or "deleted"
    (gone meanwhile). A secret stored again while it was read is re-read once; a second change is
    a SecretError, left for the next rotation."""
    for _ in range(2):
        new = box.rewrap(row["secret"], what, kek_id=target)
        if new is None:
            return "current"
        if scoped.replace_secret(row["table"], row["id"], row["secret"], new):
            return "rewrapped"
        # Stored again meanwhile (wrapped by whichever KEK was current then): read it again.
        again = next(
            (r for r in scoped.encrypted_secrets() if (r["table"], r["id"]) == (row["table"], row["id"])), None
        )
        if again is None:
            return "deleted"
        row = again
    raise SecretError(f"{what}: changed twice while it was being re-wrapped; run `floworch keys rotate` again")


def retire(settings: Settings, store: Any, kek_id: str) -> None:
    """Remove a KEK's material from the key file; refuses while it is current or still in use."""
    from .secrets import SecretBox

    ring = KeyRing(settings)
    if not ring.file.exists():
        raise KeyUsageError(f"no key file at {ring.file.path}: there is no key '{kek_id}' to retire")
    current, keks = ring.file.read()
    kek = keks.get(kek_id)
    if kek is None or kek.retired:
        known = ", ".join(k.id for k in keks.values() if not k.retired) or "none"
        state = "already retired" if kek else "unknown"
        raise KeyUsageError(f"key-encryption key '{kek_id}' is {state}; keys that can be retired: {known}")
    if kek_id == current or (settings.kms_key_id and kek_id == KMS_PREFIX + ring.describe_kms_key(settings.kms_key_id)):
        raise KeyUsageError(
            f"key-encryption key '{kek_id}' is the current one; run `floworch keys rotate` first, then retire it"
        )
    users = usage(SecretBox.from_settings(settings, keyring=ring), store).get(kek_id, [])
    if users:
        shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        raise KeyUsageError(
            f"key-encryption key '{kek_id}' still wraps {len(users)} stored secret(s): {shown}; "
            "run `floworch keys rotate` again (a secret was stored with it during the last rotation), then retire it"
        )
    with ring.file.locked() as held:
        entry = held.keks[kek_id]
        entry.key, entry.retired = None, _now()
