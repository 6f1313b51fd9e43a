"""Who may do what: roles per tenant, short-lived access tokens and rotating refresh tokens.

Identity comes from two places. People in JupyterLab keep Jupyter's identity provider (a token,
JupyterHub, any configured one). Clients outside JupyterLab (scripts, CI, another machine's
kernel) log in once and then hold a pair of tokens:

- an **access token**: a JWT (HS256) of 15 minutes naming the user and the tenant, signed with
  the current signing key and carrying its key id (``kid``), so a new key can be made current
  while tokens signed with the old one stay valid until they expire;
- a **refresh token**: an opaque, single-use string. Using it answers a new pair; using one that
  was already used (a stolen copy, replayed) revokes its whole family, so the thief and the
  victim are both logged out and must log in again.

The role is never in the token: it is the tenant's membership, read when a request arrives, so
demoting someone takes effect within ``ROLE_CACHE_SECONDS`` and not at their token's expiry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from .errors import FloworchError
from .settings import Settings

# Ordered by what they allow: each role may do everything the ones before it may.
ROLES = ("viewer", "editor", "admin")
# What a route needs: read (viewer), edit flows and runs (editor), manage the tenant (admin).
PERMISSIONS = {"read": "viewer", "edit": "editor", "admin": "admin"}
ISSUER = "floworch"
ALGORITHM = "HS256"
ACCESS_TOKEN_SECONDS = 15 * 60
REFRESH_TOKEN_PREFIX = "frt1"
ROLE_CACHE_SECONDS = 2.0
# A retired signing key still verifies the access tokens it signed until they expire.
KEY_GRACE_SECONDS = ACCESS_TOKEN_SECONDS + 60
VERIFIED_CACHE_SIZE = 4096


class Unauthorized(FloworchError):
    """No valid credentials (401): missing, expired, forged or revoked."""

    status = 401


class Forbidden(FloworchError):
    """Valid credentials that do not allow this (403): role too low, or another tenant."""

    status = 403


@dataclass(frozen=True)
class Principal:
    """Who is asking, in which tenant, with which role (None: not a member)."""

    user: str
    tenant: str
    role: str | None
    via: str  # "jupyter" (Jupyter's identity provider) or "token" (a FlowOrchestrator access token)

    def allows(self, permission: str) -> bool:
        needed = PERMISSIONS[permission]
        return self.role is not None and ROLES.index(self.role) >= ROLES.index(needed)

    def require(self, permission: str) -> None:
        if self.role is None:
            raise Forbidden(f"'{self.user}' is not a member of tenant '{self.tenant}'; an admin of it can add them")
        if not self.allows(permission):
            raise Forbidden(
                f"'{self.user}' is {_a(self.role)} of tenant '{self.tenant}'; this needs {_a(PERMISSIONS[permission])} or higher"
            )


def _a(role: str) -> str:
    return ("an " if role[0] in "aeiou" else "a ") + role


def check_role(role: Any) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


# ---------------------------------------------------------------------- signing keys
class SigningKeys:
    """The HS256 keys of this deployment, in ``<data_dir>/signing-keys.json`` (owner-only).

    Every process of a deployment reads the same file; a token naming a key id this process has
    not seen makes it read the file again, so a rotation done elsewhere is picked up at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict = {}
        self._loaded_mtime = 0
        self._load(create=True)

    @classmethod
    def for_settings(cls, settings: Settings) -> SigningKeys:
        return cls(settings.data_path / "signing-keys.json")

    def _load(self, create: bool = False) -> None:
        with self._lock:
            if not self.path.exists() and create:
                self._write({"current": None, "keys": []}, exclusive=True)
                # The first key, unless another process that made the file first has made it.
                if json.loads(self.path.read_text())["current"] is None:
                    self._rotate_locked()
            self._read()

    def _read(self) -> None:
        self._loaded_mtime = self.path.stat().st_mtime_ns
        self._data = json.loads(self.path.read_text())

    def _write(self, data: dict, exclusive: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=1)
        if exclusive:
            try:
                os.link(tmp, self.path)  # another process made the file first: keep theirs
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        else:
            os.replace(tmp, self.path)

    def _rotate_locked(self) -> str:
        data = json.loads(self.path.read_text())
        now = time.time()
        for key in data["keys"]:
            if key["kid"] == data.get("current"):
                key["retired_at"] = now
        kid = f"k{int(now)}-{secrets.token_hex(3)}"
        data["keys"] = [
            k for k in data["keys"] if k.get("retired_at") is None or now - k["retired_at"] < KEY_GRACE_SECONDS
        ]
        data["keys"].append(
            {
                "kid": kid,
                "secret": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                "created_at": now,
                "retired_at": None,
            }
        )
        data["current"] = kid
        self._write(data)
        return kid

    def rotate(self) -> str:
        """Make a new key current; the previous one verifies for its tokens' remaining life."""
        with self._lock:
            kid = self._rotate_locked()
            self._read()
        return kid

    @property
    def current(self) -> tuple[str, bytes]:
        kid = self._data["current"]
        return kid, self._secret(kid)  # type: ignore[return-value]

    def secret(self, kid: str) -> bytes | None:
        found = self._secret(kid)
        # An unknown key id may be a rotation done elsewhere: read the file again if it changed
        # (one stat), so tokens with made-up key ids cannot turn every request into file reads.
        if found is None and self.path.stat().st_mtime_ns != self._loaded_mtime:
            self._load()
            found = self._secret(kid)
        return found

    def _secret(self, kid: str) -> bytes | None:
        for key in self._data.get("keys", []):
            if key["kid"] == kid:
                if key.get("retired_at") is not None and time.time() - key["retired_at"] > KEY_GRACE_SECONDS:
                    return None
                return base64.urlsafe_b64decode(key["secret"])
        return None


# ---------------------------------------------------------------------- tokens
def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """Issues and checks access and refresh tokens. ``store`` is any tenant's Store: each call
    scopes it to the tenant the token belongs to."""

    def __init__(self, keys: SigningKeys, store: Any, refresh_days: int = 14) -> None:
        self.keys = keys
        self.store = store
        self.refresh_lifetime = timedelta(days=refresh_days)
        # Tokens verified already, with their key id: a client sends the same token for up to 15
        # minutes, and checking its signature again each time is most of authentication's cost.
        self._verified: OrderedDict[str, tuple[str, dict]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, store: Any) -> Tokens:
        return cls(SigningKeys.for_settings(settings), store, settings.refresh_token_days)

    def access_token(self, user: str, tenant: str, *, now: float | None = None) -> str:
        kid, secret = self.keys.current
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": ISSUER,
            "sub": user,
            "ten": tenant,
            "iat": issued,
            "exp": issued + ACCESS_TOKEN_SECONDS,
            "jti": uuid.uuid4().hex,
            "typ": "access",
        }
        return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": kid})

    def verify(self, token: str) -> dict:
        """The claims of a valid access token; Unauthorized (saying why) otherwise."""
        hit = self._verified.get(token)
        # Still unexpired, and its key not retired since: the answer it had.
        if hit is not None and hit[1]["exp"] > time.time() and self.keys.secret(hit[0]) is not None:
            self._verified.move_to_end(token)
            return hit[1]
        claims = self._verify(token)
        self._verified[token] = (str(jwt.get_unverified_header(token).get("kid")), claims)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def _verify(self, token: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the access token is not a FlowOrchestrator token (malformed)") from None
        # The algorithm is ours to choose, never the token's: "none" and RS/HS confusion fail here.
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"the access token's algorithm {header.get('alg')!r} is not accepted")
        secret = self.keys.secret(str(header.get("kid", "")))
        if secret is None:
            raise Unauthorized("the access token was signed with an unknown or retired key; log in again")
        try:
            claims = jwt.decode(
                token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "iat", "sub", "iss"]}
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the access token has expired; refresh it (fo.login refreshes by itself)") from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the access token is not valid: {exc}") from None
        if claims.get("typ") != "access" or not isinstance(claims.get("ten"), str):
            raise Unauthorized("the token is not an access token")
        return claims

    def login(self, user: str, tenant: str) -> dict:
        """A new pair for ``user`` in ``tenant``, starting a new refresh family."""
        return self._pair(user, tenant, family=str(uuid.uuid4()))

    def _pair(self, user: str, tenant: str, family: str) -> dict:
        refresh = f"{REFRESH_TOKEN_PREFIX}.{tenant}.{secrets.token_urlsafe(32)}"
        expires = datetime.now(UTC) + self.refresh_lifetime
        self.store.for_tenant(tenant).add_refresh_token(_token_id(refresh), family, user, expires)
        return {
            "access_token": self.access_token(user, tenant),
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_SECONDS,
            "refresh_token": refresh,
            "refresh_expires_at": expires.isoformat(),
            "user": user,
            "tenant": tenant,
        }

    def refresh(self, refresh_token: str) -> dict:
        """Spend a refresh token for a new pair. A token used twice revokes its family."""
        parts = refresh_token.split(".") if isinstance(refresh_token, str) else []
        if len(parts) != 3 or parts[0] != REFRESH_TOKEN_PREFIX:
            raise Unauthorized("not a FlowOrchestrator refresh token")
        try:
            store = self.store.for_tenant(parts[1])
        except ValueError:
            raise Unauthorized("not a FlowOrchestrator refresh token") from None
        row = store.use_refresh_token(_token_id(refresh_token))
        if row is None:
            raise Unauthorized("unknown refresh token; log in again")
        if row.get("revoked_at") is not None:
            raise Unauthorized("this refresh token was revoked; log in again")
        if row.get("used_at") is not None:
            store.revoke_refresh_family(row["family"])
            raise Unauthorized("refresh token reuse detected: every session of this login is revoked; log in again")
        if row["expires_at"] <= datetime.now(UTC):
            raise Unauthorized("the refresh token has expired; log in again")
        return self._pair(row["user"], parts[1], row["family"])


# ---------------------------------------------------------------------- roles
class Roles:
    """The role of a user in a tenant: their membership, or for Jupyter users in the deployment's
    own tenant with no membership, ``settings.jupyter_role`` (``admin`` by default: on a one-person
    server the Jupyter token's holder owns the machine anyway; a team server sets ``none``).
    Answers are cached for ROLE_CACHE_SECONDS, and dropped when this process changes a member."""

    def __init__(self, settings: Settings, store: Any) -> None:
        self.store = store
        self.default_tenant = settings.tenant
        self.jupyter_role = None if settings.jupyter_role in ("", "none") else check_role(settings.jupyter_role)
        self._cache: dict[tuple[str, str, str], tuple[float, str | None]] = {}

    def principal(self, user: str, tenant: str, via: str) -> Principal:
        key = (user, tenant, via)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < ROLE_CACHE_SECONDS:
            return Principal(user, tenant, hit[1], via)
        member = self.store.for_tenant(tenant).get_member(user)
        role = member["role"] if member else None
        if role is None and via == "jupyter" and tenant == self.default_tenant:
            role = self.jupyter_role
        self._cache[key] = (now, role)
        return Principal(user, tenant, role, via)

    def forget(self) -> None:
        self._cache.clear()
