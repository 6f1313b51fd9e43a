"""The browser suite's machinery: the JupyterLab server under test, browser users, screenshots.

Nothing here knows about the canvas (that is canvas.py); conftest.py turns these into fixtures.
"""

from __future__ import annotations

import json
import os
import pty
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

REPO = Path(__file__).resolve().parents[2]
LABEXT_DIR = REPO / "floworch_ext" / "labextension"
LABEXT_PACKAGE = LABEXT_DIR / "package.json"
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
# Browsers cannot be downloaded here: Debian's Chromium, kept off the network it does not need.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
LAB_START_TIMEOUT = 90.0  # seconds; the first start imports a lot and opens the store
SIGINT_GRACE = 30.0  # seconds; see stop_lab


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "x"


def services_required() -> bool:
    """CI (or FLOWORCH_REQUIRE_SERVICES=1) turns a missing prerequisite into a failure, not a skip."""
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("FLOWORCH_REQUIRE_SERVICES") == "1"


def labextension_name() -> str | None:
    try:
        return json.loads(LABEXT_PACKAGE.read_text())["name"]
    except (OSError, ValueError, KeyError):
        return None


# ---------------------------------------------------------------------- the server under test
@dataclass
class Lab:
    """A running JupyterLab: its URL (with trailing slash), token, and the root directory it serves."""

    url: str
    token: str
    root: Path
    log_path: Path
    proc: subprocess.Popen = field(repr=False)
    terminal: int | None = field(default=None, repr=False)  # our end of the server's stdin

    def lab_url(self, workspace: str, path: str | None = None) -> str:
        """The lab page of a workspace of its own (nothing restored from other tests), opening ``path``."""
        route = f"lab/workspaces/{quote(workspace)}"
        if path is not None:
            route += "/tree/" + quote(path)
        return f"{self.url}{route}?token={self.token}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def api(self, method: str, route: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + route.lstrip("/"), headers=self.headers(), timeout=30, **kwargs)

    async def api_async(self, method: str, route: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(headers=self.headers(), timeout=30) as client:
            return await client.request(method, self.url + route.lstrip("/"), **kwargs)

    # files in the served directory
    def write_json(self, name: str, data: Any) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n")
        return path

    def read_json(self, name: str) -> Any:
        return json.loads((self.root / name).read_text())

    def log_tail(self, lines: int = 200) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(base: Path) -> Lab:
    """Start ``jupyter lab`` as a subprocess in directories of its own under ``base``.

    The environment is the test session's (FLOWORCH_DATA_DIR names the session's Temporal dev
    server and worker, which the floworch server extension finds and uses), plus
    FLOWORCH_JUPYTER_* naming this server, so that kernels it starts join its rooms.
    Jupyter's config, data, runtime, settings and workspace directories are private to it:
    nothing is read from or written to the developer's ~/.jupyter or ~/.local/share/jupyter.
    """
    root, data, runtime, config, settings, workspaces = (
        base / name for name in ("root", "jupyter-data", "runtime", "config", "settings", "workspaces")
    )
    for d in (root, data, runtime, config, settings, workspaces):
        d.mkdir(parents=True, exist_ok=True)
    # No news or update checks (this machine has no network; their toasts would cover the canvas).
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    _link_labextension_if_not_installed(data)

    port = free_port()
    token = secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}/"
    env = {
        **os.environ,
        "FLOWORCH_JUPYTER_URL": url,
        "FLOWORCH_JUPYTER_TOKEN": token,
        "FLOWORCH_JUPYTER_ROOT": str(root),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(workspaces),
        "PYTHONUNBUFFERED": "1",
    }
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [
        str(jupyter),
        "lab",
        "--no-browser",
        "--collaborative",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",  # ServerApp.token, without its deprecation warning
        f"--ServerApp.root_dir={root}",
        f"--BaseFileIdManager.db_path={base / 'file_id_manager.db'}",
        # The file on disk follows the canvas half a second after the last change (default: 1 s).
        "--YDocExtension.document_save_delay=0.5",
    ]
    if os.getuid() == 0:
        cmd.append("--allow-root")
    log_path = base / "jupyterlab.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the server writes to it until it stops
    # A terminal on stdin, as under `make run`: Jupyter then takes SIGINT as Ctrl-C (asks to
    # confirm, and stops cleanly on "y"), see stop_lab.
    terminal, terminal_side = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdin=terminal_side, stdout=log, stderr=subprocess.STDOUT)
    except BaseException:
        os.close(terminal)
        raise
    finally:
        os.close(terminal_side)  # the child holds its own descriptors
        log.close()
    lab = Lab(url=url, token=token, root=root, log_path=log_path, proc=proc, terminal=terminal)
    try:
        _wait_ready(lab)
    except BaseException:
        stop_lab(lab)
        raise
    return lab


def _link_labextension_if_not_installed(data_dir: Path) -> None:
    # `make install` links the built labextension into the venv; a build made since (npm run
    # build in labextension/) without reinstalling is picked up from the working tree all the same.
    name = labextension_name()
    if name is None:
        return
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / name / "package.json"
    if installed.exists():
        return
    target = data_dir / "labextensions" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(LABEXT_DIR, target_is_directory=True)


def _wait_ready(lab: Lab) -> None:
    deadline = time.monotonic() + LAB_START_TIMEOUT
    last: str = "no answer yet"
    # /api/status: Jupyter serves; /floworch/api/nodes: the FlowOrchestrator extension and its
    # service (the store, the Temporal client) answer too.
    for route in ("api/status", "floworch/api/nodes"):
        while True:
            if lab.proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with code {lab.proc.returncode} while starting\n"
                    f"--- server log ({lab.log_path}) ---\n{lab.log_tail()}"
                )
            try:
                response = lab.api("GET", route)
                if response.status_code == 200:
                    break
                last = f"GET /{route}: HTTP {response.status_code} {response.text[:300]}"
            except httpx.HTTPError as exc:
                last = f"GET /{route}: {type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"JupyterLab did not answer within {LAB_START_TIMEOUT:.0f}s ({last})\n"
                    f"--- server log ({lab.log_path}) ---\n{lab.log_tail()}"
                )
            time.sleep(0.25)


def stop_lab(lab: Lab) -> str:
    """Stop the server as a user at its terminal does: Ctrl-C (SIGINT), then "y" to Jupyter's
    "Shut down this Jupyter server?" - its clean stop, extensions cleaned up and kernels shut
    down. Then SIGTERM (also a clean stop), then SIGKILL. Returns the step that stopped it; the
    process has exited when this returns.

    (Without a terminal on stdin, Jupyter takes SIGINT as a bare KeyboardInterrupt: its loop
    stops without cleanup, and once a collaborative document was opened an idle anyio worker
    thread, never told to stop, holds the interpreter's exit for good - SIGTERM cannot help
    then, the loop that would handle it is gone.)
    """
    proc = lab.proc

    def interrupt() -> None:
        proc.send_signal(signal.SIGINT)
        if lab.terminal is not None:
            os.write(lab.terminal, b"y\n")  # read by the confirmation prompt

    try:
        for how, send, wait in (
            ("SIGINT", interrupt, SIGINT_GRACE),
            ("SIGTERM", proc.terminate, 20.0),
            ("SIGKILL", proc.kill, 10.0),
        ):
            if proc.poll() is not None:
                return "already exited"
            send()
            try:
                proc.wait(wait)
                return how
            except subprocess.TimeoutExpired:
                continue
        raise RuntimeError(f"JupyterLab (pid {proc.pid}) did not exit after SIGKILL")
    finally:
        if lab.terminal is not None:
            os.close(lab.terminal)
            lab.terminal = None


# ---------------------------------------------------------------------- browser users, screenshots
class Artifacts:
    """test-artifacts/browser/<test name>/: numbered screenshots of the steps, logs on failure."""

    def __init__(self, test_name: str) -> None:
        self.dir = ARTIFACTS / slug(test_name)
        shutil.rmtree(self.dir, ignore_errors=True)  # only this run's steps
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def next_path(self, step: str, suffix: str = ".png") -> Path:
        self.count += 1
        return self.dir / f"{self.count:02d}-{slug(step)}{suffix}"


@dataclass
class BrowserUser:
    """One person in the lab: a browser context of their own (so their own Jupyter identity),
    one page, and their own JupyterLab workspace."""

    name: str  # "" for the test's main user; others prefix their screenshots
    context: Any
    page: Any
    workspace: str
    artifacts: Artifacts
    console: list[str] = field(default_factory=list)

    def step_name(self, step: str) -> str:
        return f"{self.name}-{step}" if self.name else step


_USERS: dict[int, BrowserUser] = {}  # id(page) -> its user


def user_of(page: Any) -> BrowserUser:
    try:
        return _USERS[id(page)]
    except KeyError:
        raise LookupError("this page was not opened by the browser fixtures (page / users)") from None


async def open_user(browser: Any, lab: Lab, artifacts: Artifacts, name: str, test_name: str) -> BrowserUser:
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(20_000)
    page = await context.new_page()
    workspace = slug(f"{test_name}-{name or 'main'}-{secrets.token_hex(3)}").lower().replace(".", "-").replace("_", "-")
    user = BrowserUser(name=name, context=context, page=page, workspace=workspace, artifacts=artifacts)
    page.on("console", lambda msg: user.console.append(f"[{msg.type}] {msg.text}"))
    page.on("pageerror", lambda err: user.console.append(f"[pageerror] {err}"))
    page.on("requestfailed", lambda req: user.console.append(f"[requestfailed] {req.method} {req.url} {req.failure}"))
    _USERS[id(page)] = user
    await page.goto(lab.lab_url(workspace))
    await wait_lab_ready(page)
    return user


async def close_user(user: BrowserUser, failed: bool) -> None:
    try:
        if failed:
            try:
                await user.page.screenshot(path=user.artifacts.next_path(user.step_name("final")))
            except Exception as exc:  # noqa: BLE001 - the page may be gone; the console log still helps
                user.console.append(f"[harness] final screenshot failed: {exc}")
            log = user.artifacts.dir / (f"console-{user.name}.log" if user.name else "console.log")
            log.write_text("\n".join(user.console) + "\n")
    finally:
        _USERS.pop(id(user.page), None)
        await user.context.close()


async def wait_lab_ready(page: Any) -> None:
    """JupyterLab has started: its main area is shown and the splash screen is gone."""
    await page.locator("#jp-main-dock-panel").wait_for(state="visible", timeout=60_000)
    await page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)


async def goto(page: Any, lab: Lab, path: str | None = None) -> None:
    """(Re)load the lab in the page's workspace, opening ``path`` (relative to the lab root)."""
    await page.goto(lab.lab_url(user_of(page).workspace, path))
    await wait_lab_ready(page)


async def page_config(page: Any) -> dict:
    return await page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent)")


async def shot(page: Any, step: str) -> Path:
    """Save a screenshot of the page as the test's next step: <nn>-<step>.png."""
    user = user_of(page)
    path = user.artifacts.next_path(user.step_name(step))
    await page.screenshot(path=path)
    return path


async def identity(page: Any) -> dict:
    """The page's Jupyter user (GET /api/me with its cookies): username, name, display_name, ..."""
    return await page.evaluate(
        """async () => {
            const base = JSON.parse(document.getElementById('jupyter-config-data').textContent).baseUrl;
            const response = await fetch(base + 'api/me');
            return (await response.json()).identity;
        }"""
    )
