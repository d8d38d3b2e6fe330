"""The local executor: the walk's legs (walk.py) run in this process, a streamed one chunk by
chunk (stream.py), a barrier on all rows at once; each step's checkpoint written as it goes.
Its barrier (`run_whole`) and failure-rate check are also the Ray executor's."""

from __future__ import annotations

import logging
import time

import pandas as pd

from selfalign.checkpoint import Stored
from selfalign.context import RunContext, StageStats
from selfalign.errors import RunFailed
from selfalign.runner import Built
from selfalign.segments import Segment, chunks, split
from selfalign.stages import Stage
from selfalign.stages.llm import LLMParams
from selfalign.stream import run_segment, window_for
from selfalign.walk import Leg, StageRun, Walk

log = logging.getLogger("selfalign")
# for stages whose params have no max_failure_rate: the same default as every LLM stage
DEFAULT_MAX_FAILURE_RATE = LLMParams.max_failure_rate
SOURCE_ROWS = 4096  # a streamed load reads its file this many rows at a time


async def execute(built: Built) -> Stored:
    """Run the pipeline leg by leg (walk.py: reuse of matching checkpoints), writing each
    stage's output. Row-local stages stream chunk by chunk (stream.py) unless `stream=false`;
    a load stage before them then reads its file chunk by chunk, and a streamed last segment's
    output stays on disk — memory holds only the chunks in flight."""
    ctx = built.ctx
    stages = built.stages
    segs = split(stages) if built.settings.stream else [Segment(i, [s]) for i, s in enumerate(stages)]
    walk = Walk(built, segs, sources=True)
    try:
        for leg in walk:
            walk.ran(leg, await run_leg(built, leg))
            ctx.end_progress()
    finally:
        ctx.end_progress()
    return walk.output()


async def run_leg(built: Built, leg: Leg) -> list[Stored]:
    """Every step of the leg; one output per step. A streamed leg's outputs stay in their
    checkpoint files (the walk reads back what a later stage needs)."""
    if not leg.streams:
        return [await run_whole(built.ctx, leg.steps[0], leg.input)]
    ctx, start = built.ctx, time.perf_counter()
    _begin(leg.steps, leg.input, leg.source is not None)
    rows = built.settings.chunk_rows
    head = leg.source.stream(SOURCE_ROWS) if leg.source is not None else [leg.input]
    parts = (c for big in head for c in chunks(big, rows))
    window = window_for(max((m.concurrency for m in ctx.llm.models.values()), default=1), rows)
    await run_segment(leg.steps, parts, window, set(), ctx.llm.spare, source=leg.source is not None)
    finish(ctx, leg.steps, round(time.perf_counter() - start, 3))
    return [Stored(s.ck, ctx.stats.stage(s.stage.name).rows_out) for s in leg.steps]


async def run_whole(ctx: RunContext, step: StageRun, df: pd.DataFrame) -> Stored:
    """One stage on all its rows at once (a barrier), checkpointed."""
    start = time.perf_counter()
    _begin([step], df, source=False)
    kept = await run_segment([step], [df], 1, {0}, ctx.llm.spare)
    finish(ctx, [step], round(time.perf_counter() - start, 3))
    return Stored.kept(step.ck, kept[0][0])  # one part, so one output (a failure raises)


def _begin(steps: list[StageRun], df: pd.DataFrame, source: bool) -> None:
    for j, s in enumerate(steps):
        s.ck.begin()
        came = f"{len(df)} rows in" if j == 0 else f"streaming from {steps[j - 1].stage.name}"
        came = "reading its input" if source and j == 0 else came
        log.info("%s (%s): %s", s.stage.name, s.stage.kind, came)


def finish(ctx: RunContext, steps: list[StageRun], wall: float) -> None:
    """Close the steps' checkpoints (rows, stats, marker) and log them; then stop the run if a
    stage had too many failed calls."""
    for s in steps:
        st = ctx.stats.stage(s.stage.name)
        st.wall_s, st.finished = wall, True
        s.ck.finish(s.fp, st, ctx.llm.accounting.dump_stage(s.stage.name))
        drops = ", ".join(f"{k}={v}" for k, v in st.drops.items())
        log.info(
            "%s: %d rows out (of %d in)%s in %.1fs",
            s.stage.name,
            st.rows_out,
            st.rows_in,
            f" (dropped: {drops})" if drops else "",
            wall,
        )
    for s in steps:
        check_failures(s.stage, ctx.stats.stage(s.stage.name))


def check_failures(stage: Stage, st: StageStats) -> None:
    """Too many failed calls: stop before later stages spend tokens on a broken run."""
    limit = getattr(stage.params, "max_failure_rate", DEFAULT_MAX_FAILURE_RATE)
    if not st.jobs or st.failed / st.jobs <= limit:
        return
    retry = (
        " Re-running into the same run dir sends the failed calls again (the cache answers the rest)."
        if st.llm_failed
        else ""
    )
    raise RunFailed(
        f"{stage.where}: {st.failed} of {st.jobs} model calls failed "
        f"({st.failed / st.jobs:.0%} > max_failure_rate {limit:.0%}). First error: "
        f"{st.first_error}.{retry} To accept more failures set "
        f"{stage.where}.max_failure_rate."
    )
