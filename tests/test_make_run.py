"""`make run` starts JupyterLab with the embedded Temporal server and a worker, prints the URL,
and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from floworch_server.supervisor import free_port

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.timeout(180)


def _descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state != "Z"


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https-self-signed"])
def test_make_run_serves_jupyterlab_with_the_services_and_ctrl_c_stops_them_all(tmp_path, tls):
    data = tmp_path / "data"
    port = free_port()
    env = {**os.environ, "FLOWORCH_DATA_DIR": str(data)}
    env.pop("FLOWORCH_TEMPORAL_ADDRESS", None)

    def as_a_terminal_would() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a foreground job receives Ctrl-C
        os.setpgrp()

    scheme = "https" if tls else "http"
    with open(tmp_path / "make-run.log", "w") as log:  # make writes to its own copy
        make = subprocess.Popen(
            ["make", "run", f"PORT={port}", f"TLS={int(tls)}"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=as_a_terminal_would,
        )
    try:
        deadline = time.monotonic() + 120
        while (
            not (data / "runtime.json").exists()
            or f"{scheme}://127.0.0.1:{port}/lab" not in (tmp_path / "make-run.log").read_text()
        ):
            assert make.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "make run did not come up"
            time.sleep(0.5)
        text = (tmp_path / "make-run.log").read_text()
        token = text.split(f"127.0.0.1:{port}/lab/tree/notebooks/01-quickstart.ipynb?token=")[1].split()[0]
        # Over HTTPS the certificate make run made is the one to trust, and it verifies.
        verify = str(data / "tls" / "cert.pem") if tls else True
        nodes = httpx.get(
            f"{scheme}://127.0.0.1:{port}/floworch/api/nodes",
            headers={"Authorization": f"token {token}"},
            timeout=30,
            verify=verify,
        )
        assert nodes.status_code == 200 and any(n["type"] == "trigger.manual" for n in nodes.json())
        started = _descendants(make.pid)
        commands = " ".join(
            Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")
            for p in started
            if Path(f"/proc/{p}/cmdline").exists()
        )
        assert (
            "temporal server start-dev" in commands and "floworch_server.worker" in commands and "jupyter" in commands
        )

        os.killpg(make.pid, signal.SIGINT)
        time.sleep(0.5)
        os.killpg(make.pid, signal.SIGINT)  # Jupyter asks for a second Ctrl-C
        make.wait(60)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p for p in started if _alive(p)] == []
        assert not (data / "runtime.json").exists()
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
