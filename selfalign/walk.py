"""The one walk over a pipeline's segments, shared by both executors (executors/local.py and
executors/ray_executor.py): for each segment, the stages to run and the rows they get once
the leading stages' checkpoints have been reused.

A stage whose checkpoint matches its fingerprint is reused: its saved rows and stats come back
and it does not run. Once a stage has run, every later stage runs too (its input may have
changed). The executor runs each `Leg` the walk yields and hands back one `Stored` per step
(`Walk.ran`); the walk keeps what the next leg needs and the pipeline's output.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

import pandas as pd

from selfalign.checkpoint import Checkpoint, Stored, fingerprint, restore
from selfalign.segments import Segment
from selfalign.stages.base import Stage

if TYPE_CHECKING:
    from selfalign.runner import Built

log = logging.getLogger("selfalign")


@runtime_checkable
class ChunkedSource(Protocol):
    """A stage that can hand its output over chunk by chunk (load): `streamable()` says whether
    its params allow it (`sample` needs every row), `stream(rows)` yields the chunks."""

    def streamable(self) -> bool: ...

    def stream(self, rows: int) -> Iterator[pd.DataFrame]: ...


@dataclass(frozen=True)
class StageRun:
    """One stage to run: its place in the pipeline, the checkpoint its output goes to and the
    fingerprint that marks that checkpoint once it is complete."""

    index: int
    stage: Stage
    ck: Checkpoint
    fp: str


@dataclass
class Leg:
    """What an executor runs in one go: the steps left of a segment after reuse."""

    steps: list[StageRun]  # in pipeline order
    input: pd.DataFrame  # the rows the first step gets (unused when `source` is set)
    source: ChunkedSource | None  # steps[0], a load whose chunks are its output and feed the rest
    last: bool  # its last step ends the pipeline

    @property
    def segment(self) -> Segment:
        return Segment(self.steps[0].index, [s.stage for s in self.steps])

    @property
    def streams(self) -> bool:
        """Rows may flow chunk by chunk (else: one barrier stage on all rows at once)."""
        return self.source is not None or self.steps[0].stage.is_row_local()


class Walk:
    """`for leg in walk: walk.ran(leg, outputs)`, then `walk.output()`. `sources`: a load stage
    that can read its file chunk by chunk, right before a streamed segment, runs as the head of
    that segment's leg instead of as a barrier (the local executor; Ray loads on the driver)."""

    def __init__(self, built: Built, segments: list[Segment], sources: bool) -> None:
        ctx = built.ctx
        assert ctx.run_dir is not None
        self.built, self.segments, self.sources = built, segments, sources
        self.stage_dir = ctx.run_dir / "stages"
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self.fp, self.ran_any = "", False
        self.input = pd.DataFrame()  # the next leg's rows
        self.out: Stored | None = None  # the latest stage's output
        self.final: Stored | None = None  # the pipeline's output stage's
        self.waiting: Leg | None = None  # yielded, not yet handed back

    def __iter__(self) -> Iterator[Leg]:
        held: StageRun | None = None  # a chunked source waiting to head the next leg
        for k, seg in enumerate(self.segments):
            todo = ([held] if held is not None else []) + self._plan(seg)
            self.ran_any = self.ran_any or bool(todo)
            if held is None and self._heads_next(todo, k):
                held = todo[0]
                continue
            if todo:
                source = cast(ChunkedSource, held.stage) if held is not None else None
                self.waiting = Leg(todo, self.input, source, k == len(self.segments) - 1)
                held = None
                yield self.waiting
                if self.waiting is not None:
                    raise RuntimeError("the executor did not hand back the leg's outputs (Walk.ran)")
            self._warn_if_empty(seg)

    def ran(self, leg: Leg, outs: list[Stored]) -> None:
        """The outputs of the leg's steps, in order. Only a last leg's last output may stay on
        disk: every other one the walk keeps is read into memory (a later stage needs it)."""
        assert leg is self.waiting and len(outs) == len(leg.steps)
        self.waiting = None
        self.out = outs[-1] if leg.last else outs[-1].loaded()
        self.input = self.out.df if self.out.df is not None else self.input.iloc[0:0]
        for j, step in enumerate(leg.steps):
            if step.stage.name == self.built.output:
                self.final = self.out if j == len(outs) - 1 else outs[j].loaded()

    def output(self) -> Stored:
        """The pipeline's output stage's rows (by default its last stage's)."""
        if self.final is not None:
            return self.final
        return self.out if self.out is not None else Stored.kept(None, pd.DataFrame())

    def _plan(self, seg: Segment) -> list[StageRun]:
        """Reuse the segment's leading stages whose checkpoint matches; the rest are to run."""
        ctx, todo = self.built.ctx, list[StageRun]()
        for i, stage in zip(seg.indexes, seg.stages, strict=True):
            self.fp = fingerprint(self.fp, stage, ctx)
            ck = Checkpoint(self.stage_dir, i, stage.name)
            saved = None if self.ran_any or todo else ck.load(self.fp, self.built.settings.retry_failed)
            if saved is None:
                todo.append(StageRun(i, stage, ck, self.fp))
                continue
            restore(ctx, stage.name, saved[1])
            # an empty checkpoint keeps its columns; one written before it did has none
            self.input = saved[0] if len(saved[0].columns) else self.input.iloc[0:0]
            self.out = Stored.kept(ck, self.input)
            log.info("%s: reused %d rows from %s", stage.name, len(self.input), ck.rows.name)
            if stage.name == self.built.output:
                self.final = self.out
        return todo

    def _heads_next(self, todo: list[StageRun], k: int) -> bool:
        """A lone load that can read its file chunk by chunk, before a streamed segment."""
        if not (self.sources and len(todo) == 1 and k + 1 < len(self.segments)):
            return False
        stage = todo[0].stage
        return isinstance(stage, ChunkedSource) and stage.streamable() and self.segments[k + 1].streams

    def _warn_if_empty(self, seg: Segment) -> None:
        stages = self.built.stages
        if self.out is not None and not len(self.out) and seg.indexes[-1] < len(stages) - 1:
            log.warning("%s left no rows; later stages get none.", stages[seg.indexes[-1]].name)
