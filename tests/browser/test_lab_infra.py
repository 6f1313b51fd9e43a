"""The browser suite's own ground: JupyterLab starts, Chromium loads it, collaboration is on."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from .harness import identity, page_config, shot

pytestmark = pytest.mark.browser_infra


async def test_jupyterlab_loads_in_chromium_with_real_time_collaboration(lab, page):
    await expect(page.locator(".jp-Launcher")).to_be_visible()
    await shot(page, "launcher")

    config = await page_config(page)
    extensions = {ext["name"] for ext in config.get("federated_extensions", [])}
    assert "@jupyter/docprovider-extension" in extensions, (
        f"collaboration is off: federated extensions are {sorted(extensions)}"
    )
    assert "@jupyter/docprovider-extension" not in config.get("disabledExtensions", [])

    # The server the page talks to is the one the fixture started, serving its own directory.
    assert config["token"] == lab.token
    assert (await lab.api_async("GET", "api/contents")).json()["type"] == "directory"


async def test_a_second_user_is_another_jupyter_identity(lab, page, users):
    bob = await users.open("bob")
    me, him = await identity(page), await identity(bob)
    assert me["username"] != him["username"]
    await shot(bob, "lab")
