"""``fo.login()``: FlowOrchestrator tokens for this kernel, refreshed by themselves.

A kernel started by JupyterLab needs none of this: it acts through the engine directly, and
joins collaboration rooms with its server's Jupyter token. A kernel or script elsewhere (another
machine, CI) logs in once, by the Jupyter server's token or with a refresh token an admin issued,
and then holds an access token of 15 minutes that is refreshed shortly before it expires::

    session = fo.login("https://lab.example/user/ada/", token="<jupyter token>")
    session = fo.login("https://lab.example/", refresh_token="frt1....")   # a service account
    session.headers()     # {"Authorization": "Bearer ..."} for any FlowOrchestrator route

Collaboration rooms joined from this kernel on that server use the session's access token, so
the server applies the session user's role (a viewer's edits do not reach the room).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from .collab import find_server

API = "floworch/api"
REFRESH_MARGIN_S = 60  # refresh this long before the access token expires

_current: Session | None = None


class LoginError(RuntimeError):
    pass


class Session:
    """A login: the server's URL, the user and tenant, and tokens kept fresh."""

    def __init__(self, url: str, pair: dict, *, verify: Any = True) -> None:
        self.url = url.rstrip("/") + "/"
        self.verify = verify
        self._lock = threading.Lock()
        self._take(pair)

    def _take(self, pair: dict) -> None:
        self.user = pair["user"]
        self.tenant = pair["tenant"]
        self._access = pair["access_token"]
        self._refresh = pair["refresh_token"]
        self._expires = time.monotonic() + int(pair["expires_in"])

    def __repr__(self) -> str:
        return f"<floworch login of {self.user!r} in tenant {self.tenant!r} at {self.url}>"

    def access_token(self) -> str:
        with self._lock:
            if time.monotonic() > self._expires - REFRESH_MARGIN_S:
                self._take(_call(self.url, "auth/refresh", {"refresh_token": self._refresh}, {}, self.verify))
            return self._access

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}


def _call(url: str, route: str, body: dict, headers: dict, verify: Any) -> dict:
    try:
        response = httpx.post(
            url.rstrip("/") + f"/{API}/{route}", json=body, headers=headers, verify=verify, timeout=30
        )
    except httpx.HTTPError as exc:
        raise LoginError(f"could not reach FlowOrchestrator at {url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:200]}
    if response.status_code != 201:
        raise LoginError(f"login refused by {url} ({response.status_code}): {data.get('error', data)}")
    return data


def login(
    url: str | None = None,
    *,
    token: str | None = None,
    refresh_token: str | None = None,
    tenant: str | None = None,
    verify: Any = True,
) -> Session:
    """Log in to the FlowOrchestrator of a Jupyter server and make it this kernel's login.

    With ``refresh_token``, spend it; otherwise sign in with the Jupyter ``token`` (default: the
    server found as collaboration rooms find it, with its own token). ``tenant`` picks one of the
    user's tenants (Jupyter sign-in only: a refresh token's tenant is its own)."""
    global _current
    if url is None:
        server = find_server()
        if server is None:
            raise LoginError("no Jupyter server found: pass its url (and token=...)")
        url, token = server.url, token or server.token
    if refresh_token:
        pair = _call(url, "auth/refresh", {"refresh_token": refresh_token}, {}, verify)
    else:
        headers = {"Authorization": f"token {token}"} if token else {}
        if tenant:
            headers["X-Floworch-Tenant"] = tenant
        pair = _call(url, "auth/login", {}, headers, verify)
    _current = Session(url, pair, verify=verify)
    return _current


def current() -> Session | None:
    """This kernel's login, if it has one."""
    return _current


def logout() -> None:
    global _current
    _current = None
