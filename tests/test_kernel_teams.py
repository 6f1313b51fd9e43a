"""The notebook side of teams: ``fo.login()`` against a real Jupyter server, and ``fo.audit()``."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

import floworch as fo
from floworch import session as login_module
from support.rest import api, jp_server_config, runtime  # noqa: F401  (fixtures)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def base_url(jp_serverapp, http_server) -> tuple[str, str]:
    info = jp_serverapp.server_info()
    return info["url"], info["token"]


def me(session: login_module.Session) -> dict:
    return httpx.get(session.url + "floworch/api/me", headers=session.headers(), timeout=30).json()


async def test_fo_login_signs_in_with_the_jupyter_token_and_keeps_its_tokens_fresh(base_url, api):
    url, token = base_url
    try:
        session = await asyncio.to_thread(fo.login, url, token=token)
        assert (session.user, session.tenant) == ("ada", "default")
        assert login_module.current() is session
        assert (await asyncio.to_thread(me, session)) == {
            "user": "ada",
            "tenant": "default",
            "role": "admin",
            "via": "token",
        }

        first = session.access_token()
        session._expires = 0  # as if 15 minutes had passed: the next use refreshes first
        assert (await asyncio.to_thread(session.access_token)) != first
        assert (await asyncio.to_thread(me, session))["user"] == "ada"

        # A service account's login, issued by an admin, is spent by fo.login(refresh_token=...).
        assert (await api.put("/members/{user}", {"role": "viewer"}, user="robot")).code == 200
        issued = (await api.post("/auth/tokens", {"user": "robot"})).json
        robot = await asyncio.to_thread(fo.login, url, refresh_token=issued["refresh_token"])
        assert (await asyncio.to_thread(me, robot))["role"] == "viewer"

        with pytest.raises(login_module.LoginError, match="reuse detected"):
            await asyncio.to_thread(fo.login, url, refresh_token=issued["refresh_token"])
        with pytest.raises(login_module.LoginError, match=r"login refused .*\(403\)"):
            await asyncio.to_thread(fo.login, url, token="not-the-token")
    finally:
        login_module.logout()


def test_fo_audit_lists_who_did_what_newest_first():
    name = f"audit-{uuid.uuid4().hex[:6]}"
    fo.integrations.add(name, "slack", access_token="xoxb-test")
    fo.integrations.remove(name)

    frame = fo.audit(target=name)
    assert list(frame["action"]) == ["integration.delete", "integration.put"]
    assert set(frame["actor"]) == {"tester"} and set(frame["tenant"]) == {"default"}
    assert str(frame["timestamp"].dtype).startswith("datetime64")
    assert "xoxb-test" not in frame.to_string()
    assert fo.audit(action="integration.", actor="nobody").empty
