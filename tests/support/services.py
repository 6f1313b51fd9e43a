"""What a test does when a service it runs against (PostgreSQL, Redis) is not there."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(service: str, message: str) -> NoReturn:
    """Skip with ``message`` (it says what did not answer and why); under
    FLOWORCH_REQUIRE_SERVICES=1 (CI) fail instead: there the service must run."""
    if os.environ.get("FLOWORCH_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (FLOWORCH_REQUIRE_SERVICES=1: start {service})", pytrace=False)
    pytest.skip(message)
