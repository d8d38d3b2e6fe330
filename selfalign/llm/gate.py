"""PriorityGate: the one waiter queue of the LLM layer, shared by the endpoint pool (waiting for
any endpoint with room) and each endpoint's adaptive limit (waiting for one of its slots).

Waiters are served by PRIORITY (a context variable the streaming runner sets to the stage's
position in its segment), then in arrival order: later stages first, so rows already in flight
finish before new ones start, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from contextvars import ContextVar

PRIORITY: ContextVar[int] = ContextVar("selfalign_priority", default=0)  # higher is served first


class PriorityGate:
    """Wait until `ready()` holds; `wake(n)` lets the n first waiters look again.

    `woken` counts waiters woken that have not looked yet: a releaser wakes only as many as
    there is room for beyond them. Without it, k slots freed in one tick of the event loop woke
    1 + 2 + … + k waiters (each release saw the earlier ones' slots still free), and all but k
    queued again: ~30 wake-ups per call at concurrency 64."""

    def __init__(self) -> None:
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []  # a heap
        self._seq = itertools.count()
        self.woken = 0

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait_until(self, ready: Callable[[], bool], priority: int | None = None) -> None:
        """Return once `ready()` is true, queueing behind earlier and higher-priority waiters.
        Lower `priority` values are served first; by default the runner's PRIORITY decides."""
        if priority is None:
            priority = -PRIORITY.get()
        while not ready():
            fut = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (priority, next(self._seq), fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self.woken -= 1
                    self.wake(1)  # woken for room it will not take: pass it on
                raise
            self.woken -= 1

    def wake(self, n: int) -> None:
        while n > 0 and self._waiters:
            fut = heapq.heappop(self._waiters)[2]
            if not fut.done():
                fut.set_result(None)
                self.woken += 1
                n -= 1
