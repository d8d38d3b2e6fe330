"""The local executor's streaming: chunks of rows flow through a segment of row-local stages.

A chunk goes on to the next stage as soon as its previous stage is done with it, so no stage
waits for the slowest row of the whole table: the model client's slots are shared by every chunk
in flight, later stages first (limits.PRIORITY), so rows already started finish before new ones
start. At most `window` chunks are in flight; a chunk keeps its slot until it has been written,
in input order, to every stage's checkpoint (append-only), so the output order is the input
order whatever the completion order, and memory holds only the window. Each stage's output
is written as soon as it and every chunk before it are done.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from selfalign.checkpoint import Checkpoint
from selfalign.llm.budget import BudgetExceeded
from selfalign.llm.limits import PRIORITY
from selfalign.stages import Stage


@dataclass
class Step:
    stage: Stage
    ck: Checkpoint
    fp: str
    source: bool = False  # a load stage reading its file chunk by chunk: the chunks are its output


def window_for(concurrency: int, chunk_rows: int) -> int:
    """Chunks in flight: enough rows to fill twice the widest endpoint's slots."""
    return max(4, math.ceil(2 * concurrency / chunk_rows))


async def run_segment(
    steps: list[Step], parts: Iterable[pd.DataFrame], window: int, keep: set[int]
) -> dict[int, list[pd.DataFrame]]:
    """Run every chunk of `parts` through the steps; every step's output is appended to its
    checkpoint. Returns the output chunks (in input order) of the steps whose positions are
    in `keep`."""
    kept: dict[int, list[pd.DataFrame]] = {j: [] for j in keep}
    stats = [s.stage.ctx.stats.stage(s.stage.name) for s in steps]
    done: list[dict[int, pd.DataFrame]] = [{} for _ in steps]  # step → chunk index → output
    flushed = [0] * len(steps)  # per step: chunks written so far (in input order)
    slots = asyncio.Semaphore(window)

    async def one(index: int, chunk: pd.DataFrame) -> None:
        try:
            await through(index, chunk)
        except BaseException:
            slots.release()  # the producer may be waiting for a slot: let it see the failure
            raise

    async def through(index: int, chunk: pd.DataFrame) -> None:
        for j, step in enumerate(steps):
            PRIORITY.set(j)  # this task's context only: its calls at stage j rank by j
            if not step.source:
                stats[j].rows_in += len(chunk)
                chunk = await step.stage.run(chunk)
            stats[j].rows_out += len(chunk)
            done[j][index] = chunk
            flush(j)

    def flush(j: int) -> None:
        """Write step j's outputs that are next in input order; the last step's frees slots."""
        while flushed[j] in done[j]:
            out = done[j].pop(flushed[j])
            steps[j].ck.append(out)
            if j in kept:
                kept[j].append(out)
            flushed[j] += 1
            if j == len(steps) - 1:
                slots.release()

    tasks: list[asyncio.Task[None]] = []
    try:
        for i, chunk in enumerate(parts):
            await slots.acquire()
            if any(t.done() and t.exception() for t in tasks):
                break  # a chunk failed: start no more (the error is raised below)
            tasks.append(asyncio.create_task(one(i, chunk.reset_index(drop=True))))
        await asyncio.gather(*tasks)
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
