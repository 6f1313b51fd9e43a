"""Fixtures of the browser suite: a real JupyterLab, Playwright's Chromium, one page per user.

- ``lab`` (session): ``jupyter lab --collaborative`` in a subprocess, on a free port with a
  random token, serving a fresh temporary directory. It uses the session's Temporal dev server
  and worker (started by the repo-root conftest.py, found through FLOWORCH_DATA_DIR), and the
  kernels it starts join its collaboration rooms (FLOWORCH_JUPYTER_URL names it).
- ``browser`` (session): Debian's Chromium through Playwright's async API. The sync API cannot
  be used in this suite: between calls it leaves its own event loop marked as running in the
  main thread, and every async test of the session (pytest-asyncio's session loop) then fails
  with "Cannot run the event loop while another loop is running".
- ``page``: the test's main user, on a JupyterLab workspace of its own; ``users`` opens more
  (``await users.open("bob")``), each in its own browser context, so its own Jupyter identity.

Every step's screenshot goes to test-artifacts/browser/<test name>/ (``await shot(page, "step")``);
a failed test also leaves each user's console log and a final screenshot there.

Without a built labextension (floworch_ext/labextension/package.json) there is no canvas to
test: the canvas tests are skipped, or fail when CI or FLOWORCH_REQUIRE_SERVICES=1 is set. The
infrastructure smoke test (marked ``browser_infra``) runs either way.
"""

from __future__ import annotations

import shutil

import pytest

from .harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    LABEXT_PACKAGE,
    Artifacts,
    BrowserUser,
    close_user,
    open_user,
    services_required,
    start_lab,
    stop_lab,
)

try:
    from playwright.async_api import expect
except ImportError:  # reported by the browser fixture, with what to do
    expect = None  # type: ignore[assignment]
else:
    expect.set_options(timeout=20_000)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "browser_infra: browser-suite infrastructure test; needs no labextension")


def pytest_runtest_setup(item) -> None:
    # Before any fixture starts (a skipped test should not start JupyterLab for nothing).
    if item.get_closest_marker("browser_infra") or LABEXT_PACKAGE.exists():
        return
    reason = (
        f"the FlowOrchestrator labextension is not built ({LABEXT_PACKAGE.relative_to(LABEXT_PACKAGE.parents[2])} "
        "is missing): `make install` builds it (or `npm run build` in labextension/)"
    )
    if services_required():
        pytest.fail(reason + " [CI / FLOWORCH_REQUIRE_SERVICES=1: not skipped]", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)  # read by the users fixture to keep failure artifacts
    return report


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    try:
        server = start_lab(tmp_path_factory.mktemp("jupyterlab"))
    except RuntimeError as exc:
        print(exc)
        pytest.fail(str(exc), pytrace=False)
    yield server
    how = stop_lab(server)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(server.log_path, ARTIFACTS / "jupyterlab.log")
    assert server.proc.poll() is not None, "JupyterLab is still running"
    print(f"JupyterLab stopped by {how} (exit code {server.proc.returncode})")
    if how != "SIGINT":
        raise AssertionError(
            f"JupyterLab did not stop on Ctrl-C (SIGINT and 'y'); it took {how}\n--- server log ---\n{server.log_tail()}"
        )


@pytest.fixture(scope="session")
async def browser():
    if expect is None:
        pytest.fail("playwright is not installed: .venv/bin/pip install -e '.[test]'", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)", pytrace=False
        )
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


class Users:
    """The people of one test. ``await users.open("bob")`` -> bob's page, on the lab."""

    def __init__(self, browser, lab, request) -> None:
        self.browser = browser
        self.lab = lab
        self.test_name = request.node.name
        self.artifacts = Artifacts(self.test_name)
        self.opened: list[BrowserUser] = []

    async def open(self, name: str = ""):
        if any(u.name == name for u in self.opened):
            raise ValueError(f"user {name!r} is already open in this test")
        user = await open_user(self.browser, self.lab, self.artifacts, name, self.test_name)
        self.opened.append(user)
        return user.page


@pytest.fixture
async def users(browser, lab, request):
    people = Users(browser, lab, request)
    yield people
    failed = any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call"))
    errors = []
    for user in people.opened:
        try:
            await close_user(user, failed)
        except Exception as exc:  # noqa: BLE001 - close the others all the same
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
async def page(users):
    """The test's main user: a 1400x900 page on JupyterLab, started and ready (launcher shown)."""
    return await users.open("")
