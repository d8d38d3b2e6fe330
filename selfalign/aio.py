"""One event loop per process, so clients (and the embedded server's connection pool) can be
reused across the jobs of a Hydra multirun, which run one after another in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
_LOOP: asyncio.AbstractEventLoop | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


async def within(coro: Coroutine[Any, Any, T], seconds: float) -> T:
    """`await coro` with a time limit (raises TimeoutError). Python 3.11's asyncio.timeout
    cancels the waiting task itself; asyncio.wait_for (3.10) runs the coroutine in a task of its
    own, and the hop back from it delays every model call's answer by a turn of a busy loop."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)
