"""binder/: what a Binder launch does, in a clean virtual environment on this machine.

repo2docker builds the image from binder/environment.yml (Python and Node), runs binder/postBuild
(`pip install .` of the repository), and starts every session through binder/start with the
notebook server's command. Here the same scripts run against a fresh venv: postBuild installs
the repository into it, and start brings up the embedded Temporal dev server and a worker from
that venv before running the command given to it.

The install is the slow part: every dependency goes into the new venv. Three things keep it
short without changing what gets installed. The labextension is already built in the working
tree, so the build hook skips npm (pyproject's ``skip-if-exists``); the build backend is
installed into the venv first and used from there (``PIP_NO_BUILD_ISOLATION=0``) instead of in a
throwaway build environment, so the same backend and hook build the same wheel ~40 s sooner; and
pip leaves byte-compiling to Python's first import (``PIP_NO_COMPILE=1``), a third of the time.
On this 2-core machine under load that is ~2.5 minutes, against ~4 without the two settings.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from floworch_server.supervisor import free_port

ROOT = Path(__file__).parents[1]
BINDER = ROOT / "binder"
pytestmark = pytest.mark.timeout(900)

FLOW = """
import floworch as fo
flow = fo.Flow.new("hello.flow")
flow.add_node("trigger.manual", "start")
flow.add_node("transform", "greet", config={"output": {"greeting": "Hello, {{ input.name }}"}})
flow.connect("start", "greet")
run = flow.run(input={"name": "Binder"}, draft=True)
print("status", run.wait(timeout=120, progress=False).status, "result", run.result())
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A new venv with the repository installed by binder/postBuild."""
    if not (ROOT / "floworch_ext" / "labextension" / "static" / "style.js").exists():
        pytest.fail("the labextension is not built in the working tree: run `make install` first", pytrace=False)
    venv = tmp_path_factory.mktemp("binder") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = _env(venv, venv.parent)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "hatchling", "hatch-jupyter-builder"],
        env=env,
        check=True,
    )
    started = time.monotonic()
    installed = subprocess.run(
        [BINDER / "postBuild"],
        env={**env, "PIP_NO_BUILD_ISOLATION": "0", "PIP_NO_COMPILE": "1"},
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    print(f"binder/postBuild installed the repository in {time.monotonic() - started:.0f} s")
    return venv


def _env(venv: Path, home: Path) -> dict[str, str]:
    """A session's environment: its own HOME, the venv first on PATH, none of this machine's
    FlowOrchestrator, Jupyter or Temporal settings."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("FLOWORCH_", "JUPYTER_", "TEMPORAL_", "VIRTUAL_ENV"))
    }
    return {**env, "HOME": str(home), "PATH": f"{venv / 'bin'}:{env['PATH']}"}


def _processes_of(venv: Path) -> list[tuple[int, str]]:
    """Every live process started from the venv (the supervisor, Temporal, workers, Jupyter)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            continue
        if str(venv) in cmdline and state != "Z":
            found.append((int(proc.name), cmdline))
    return found


@pytest.fixture
def session(venv, tmp_path):
    """A Binder session's HOME; afterwards its services are stopped, as the end of a session
    would, and nothing started from the venv may be left running."""
    home = tmp_path / "home"
    home.mkdir()
    yield home, _env(venv, home)
    runtime = home / ".floworch" / "runtime.json"
    if runtime.exists():
        os.kill(json.loads(runtime.read_text())["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _processes_of(venv) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _processes_of(venv)
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"processes left running: {left}"
    assert not runtime.exists()


def test_start_brings_up_temporal_and_a_worker_and_a_flow_runs(venv, session):
    home, env = session
    done = subprocess.run(
        [BINDER / "start", "python", "-c", FLOW],
        cwd=home,
        env={**env, "FLOWORCH_JUPYTER_URL": "off"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "status success result {'greet': {'greeting': 'Hello, Binder'}}" in done.stdout

    # The services stay up for the session, in the data directory under $HOME, from the venv.
    runtime = json.loads((home / ".floworch" / "runtime.json").read_text())
    commands = [cmd for _, cmd in _processes_of(venv)]
    assert sum("temporal server start-dev" in c and str(home / ".floworch" / "temporal.db") in c for c in commands) == 1
    assert sum("floworch_server.worker" in c for c in commands) == 1
    assert runtime["pid"] in [pid for pid, _ in _processes_of(venv)]


def test_jupyterlab_opens_with_the_extension_on_the_services_start_began(venv, session):
    home, env = session
    port, token = free_port(), "binder-test"
    root = ["--allow-root"] if os.getuid() == 0 else []
    with open(home.parent / "jupyter.log", "w") as log:
        server = subprocess.Popen(
            [BINDER / "start", "jupyter", "lab", "--no-browser", f"--port={port}", f"--IdentityProvider.token={token}", *root],
            cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"token {token}"}
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (home.parent / "jupyter.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "JupyterLab did not answer"
            try:
                nodes = httpx.get(f"{base}/floworch/api/nodes", headers=headers, timeout=30)
                if nodes.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert any(n["type"] == "trigger.manual" for n in nodes.json())
        lab = httpx.get(f"{base}/lab", headers=headers, timeout=30)
        config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', lab.text, re.S).group(1))
        assert "floworch" in [e["name"] for e in config["federated_extensions"]]

        # start's services serve the server: the extension started none of its own.
        assert "starting the embedded Temporal" not in (home.parent / "jupyter.log").read_text()
        commands = [cmd for _, cmd in _processes_of(venv)]
        assert sum("temporal server start-dev" in c for c in commands) == 1

        # start again while they run (a second terminal, say): it starts nothing more.
        again = subprocess.run(
            [BINDER / "start", "true"], cwd=home, env=env, capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 0, again.stderr
        assert sum("temporal server start-dev" in cmd for _, cmd in _processes_of(venv)) == 1
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
