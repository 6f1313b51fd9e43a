"""A private event loop on a background thread, for the synchronous kernel API.

A notebook cell already runs inside the kernel's own event loop, so blocking calls cannot use
`asyncio.run`. Every call to the engine goes through this one loop instead; the async API
awaits the same coroutines from the caller's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="floworch-loop", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine, timeout: float | None = None) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, loop()).result(timeout)


async def run_async(coro: Coroutine) -> Any:
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop()))
