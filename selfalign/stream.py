"""The local executor's streaming: chunks of rows flow through a segment of row-local stages.

A chunk goes on to the next stage as soon as its previous stage is done with it, so no stage
waits for the slowest row of the whole table: the model client's slots are shared by every chunk
in flight, later stages first (limits.PRIORITY), so rows already started finish before new ones
start. At most `window` chunks are in flight; a chunk keeps its slot until it has been written,
in input order, to every stage's checkpoint (append-only), so the output order is the input
order whatever the completion order. Each stage's output is written as soon as it and every
chunk before it are done.

`window` chunks are admitted at once. A row waiting out a retry's backoff holds no client slot
but does hold its chunk, so with faults a fixed window would leave slots idle (a chunk of 8 rows
x 2 calls at 10% faults almost always has one row in backoff). So while the model clients have
`spare` slots (requests are out, and fewer want a slot than there are), that many more rows are
admitted, up to MAX_WINDOW_FACTOR x `window` chunks held: memory stays bounded even when the
oldest chunk is slow, since every chunk after it is held until it can be written in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Iterable

import pandas as pd

from selfalign.llm.budget import BudgetExceeded
from selfalign.llm.limits import PRIORITY
from selfalign.stages import Stage
from selfalign.walk import StageRun

MAX_WINDOW_FACTOR = 8  # chunks held (in flight or waiting to be written) ≤ this × window
SPARE_POLL_S = 0.02  # how often the clients' spare slots are asked again (no signal when one frees)


def window_for(concurrency: int, chunk_rows: int) -> int:
    """Chunks in flight: enough rows to fill twice the widest endpoint's slots."""
    return max(4, math.ceil(2 * concurrency / chunk_rows))


async def run_segment(
    steps: list[StageRun],
    parts: Iterable[pd.DataFrame],
    window: int,
    keep: set[int],
    spare: Callable[[], int] | None = None,
    source: bool = False,
) -> dict[int, list[pd.DataFrame]]:
    """Run every chunk of `parts` through the steps; every step's output is appended to its
    checkpoint. Returns the output chunks (in input order) of the steps whose positions are
    in `keep`. `spare`: how many more requests the model clients could send now than want a
    slot (rows beyond the window are admitted up to that many). `source`: steps[0] is a load
    reading its file chunk by chunk, so the parts are its output (it is not run on them)."""
    kept: dict[int, list[pd.DataFrame]] = {j: [] for j in keep}
    stats = [s.stage.ctx.stats.stage(s.stage.name) for s in steps]
    done: list[dict[int, pd.DataFrame]] = [{} for _ in steps]  # step → chunk index → output
    flushed = [0] * len(steps)  # per step: chunks written so far (in input order)
    active = held = 0  # chunks not through the last step yet / not written by it yet
    changed = asyncio.Event()  # a chunk finished, was written or failed: the producer looks again

    async def one(index: int, chunk: pd.DataFrame) -> None:
        nonlocal active
        try:
            await through(index, chunk)
        finally:
            active -= 1
            changed.set()  # on failure too: the producer may be waiting, and must see it

    async def through(index: int, chunk: pd.DataFrame) -> None:
        for j, step in enumerate(steps):
            PRIORITY.set(j)  # this task's context only: its calls at stage j rank by j
            if not (source and j == 0):
                stats[j].rows_in += len(chunk)
                chunk = _keep_columns(await step.stage.run(chunk), step.stage, chunk)
            stats[j].rows_out += len(chunk)
            done[j][index] = chunk
            flush(j)

    def flush(j: int) -> None:
        """Write step j's outputs that are next in input order."""
        nonlocal held
        while flushed[j] in done[j]:
            out = done[j].pop(flushed[j])
            steps[j].ck.append(out)
            if j in kept:
                kept[j].append(out)
            flushed[j] += 1
            if j == len(steps) - 1:
                held -= 1

    credit = 0  # rows the clients' spare slots could take, at the producer's last look

    def room() -> bool:
        return held < window * MAX_WINDOW_FACTOR and (active < window or credit > 0)

    # Only the chunks still running are kept (a million rows are 125,000 chunks of 8: scanning
    # every task ever started for a failure, at each admission, was quadratic).
    tasks: set[asyncio.Task[None]] = set()
    errors: list[BaseException] = []

    def ended(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            errors.append(task.exception())  # type: ignore[arg-type]

    try:
        for i, chunk in enumerate(parts):
            while not errors and not room():
                changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), SPARE_POLL_S if spare else None)
                # Asked only here, after a wait: chunks admitted on the last credit have had
                # time to send their requests, so they are not counted as spare again.
                credit = spare() if spare else 0
            if errors:
                break  # a chunk failed: start no more (the error is raised below)
            if active >= window:
                credit -= len(chunk)
            active += 1
            held += 1
            task = asyncio.create_task(one(i, chunk.reset_index(drop=True)))
            tasks.add(task)
            task.add_done_callback(ended)
        while tasks and not errors:
            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_EXCEPTION)
        if errors:
            raise errors[0]
    except BudgetExceeded:
        # dispatch has stopped: the calls in flight in other chunks finish (and are cached)
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return kept


def _keep_columns(out: pd.DataFrame, stage: Stage, given: pd.DataFrame) -> pd.DataFrame:
    """An empty output with every column the stage promises (Stage.check): a stage that got or
    made no rows may build its table without them, and the next stage would fail on a column
    that only an empty table lacks, instead of passing the empty table on."""
    if len(out):
        return out
    promised, _ = stage.check({str(c) for c in given.columns})
    missing = [
        c for c in [*map(str, given.columns), *sorted(promised)] if c in promised and c not in out.columns
    ]
    return out.reindex(columns=[*out.columns, *dict.fromkeys(missing)]) if missing else out
