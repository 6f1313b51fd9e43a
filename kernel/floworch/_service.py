"""The kernel's connection to the engine: one FlowService per process, made on first use."""

from __future__ import annotations

from floworch_server.service import FlowService
from floworch_server.settings import Settings

from ._loop import run_async, run_sync

_service: FlowService | None = None


async def _make(settings: Settings) -> FlowService:
    return await FlowService.connect(settings)


def service() -> FlowService:
    global _service
    if _service is None:
        _service = run_sync(_make(Settings.from_env()))
    return _service


async def service_async() -> FlowService:
    global _service
    if _service is None:
        _service = await run_async(_make(Settings.from_env()))
    return _service


def connect(**settings) -> FlowService:
    """Connect with explicit settings (otherwise FLOWORCH_* variables and runtime.json decide)."""
    global _service
    _service = run_sync(_make(Settings.from_env(**settings)))
    return _service


def user() -> str:
    return (_service.settings if _service else Settings.from_env()).user_name()
