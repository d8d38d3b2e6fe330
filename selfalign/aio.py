"""One event loop per process, so clients (and the embedded server's connection pool) can be
reused across the jobs of a Hydra multirun, which run one after another in this process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from selfalign.errors import Interrupted

T = TypeVar("T")
_LOOP: asyncio.AbstractEventLoop | None = None
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
UNWIND_S = 10.0  # how long stopped tasks get to unwind (close connections, finish a write)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the process's loop. Ctrl-C (SIGINT) or SIGTERM meanwhile cancels it, then
    every other task of the loop, and waits for them to unwind; then raises Interrupted. Left
    to the default handler, KeyboardInterrupt would stop the loop wherever it was, and the
    hundreds of calls in flight would die at exit as "Task was destroyed but it is pending"
    and "Event loop is closed" tracebacks. A second signal stops at once."""
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    loop = _LOOP
    task = asyncio.ensure_future(coro, loop=loop)  # a coroutine, or a future (gather)
    got: list[int] = []  # the signals received while it ran
    with _signals_cancel(loop, task, got):
        try:
            result = loop.run_until_complete(task)
        except BaseException:  # noqa: BLE001 — whatever the cancelled task ended with
            if not got:
                raise
        if got:
            _cancel_rest(loop)
            raise Interrupted(got[0]) from None
    return result


def raise_interrupted(signum: int, frame: Any) -> None:
    """A signal handler: SIGTERM ends `selfalign run` like Ctrl-C (commands/run.py)."""
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_cancel(
    loop: asyncio.AbstractEventLoop, task: asyncio.Future[Any], got: list[int]
) -> Iterator[None]:
    """While the loop runs `task`: SIGINT and SIGTERM cancel it (only in the main thread, and
    only where nobody else set a handler: a program that embeds the API keeps its own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        if got:  # the second one: stop now
            raise Interrupted(signum)
        got.append(signum)
        loop.call_soon_threadsafe(task.cancel)

    ours = (signal.SIG_DFL, signal.default_int_handler, raise_interrupted)
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    taken = [s for s in STOP_SIGNALS if old[s] in ours]
    for s in taken:
        signal.signal(s, on_signal)
    try:
        yield
    finally:
        for s in taken:
            signal.signal(s, old[s])


def _cancel_rest(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the loop's other tasks (calls in flight, progress, clients' helpers) and let them
    unwind, as asyncio.run does at its end; their errors are read, so none is logged at exit."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=UNWIND_S))
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()


async def within(coro: Coroutine[Any, Any, T], seconds: float) -> T:
    """`await coro` with a time limit (raises TimeoutError). Python 3.11's asyncio.timeout
    cancels the waiting task itself; asyncio.wait_for (3.10) runs the coroutine in a task of its
    own, and the hop back from it delays every model call's answer by a turn of a busy loop."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)
