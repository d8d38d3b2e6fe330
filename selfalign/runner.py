"""Build and check a pipeline before any model call (`build`), then run it on the local executor
(`execute`: the segments, reused checkpoints, streaming) and apply the failure limits. The run
dir's files are outputs.py's, the checkpoints checkpoint.py's."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from selfalign import aio
from selfalign.checkpoint import Checkpoint, Stored, fingerprint, restore
from selfalign.context import RunContext, StageStats
from selfalign.errors import PreflightFailed, RunFailed, SelfAlignError, ValidationFailed
from selfalign.llm.budget import Budget, prices
from selfalign.llm.cache import ResponseCache
from selfalign.llm.config import ModelConfig
from selfalign.llm.preflight import preflight
from selfalign.llm.session import DEFAULT, LLMSession
from selfalign.prompts import PromptLibrary
from selfalign.segments import Segment, chunks, split
from selfalign.settings import (
    RunSettings,
    budget_settings,
    cache_settings,
    import_plugins,
    model_settings,
    pipeline_settings,
    prompt_search_path,
    run_settings,
)
from selfalign.specs import BROKEN, make_stage, parse_stage
from selfalign.stages import Stage
from selfalign.stages.base import MissingColumn, StageSpec
from selfalign.stages.llm import LLMParams
from selfalign.stream import Step, run_segment, window_for

log = logging.getLogger("selfalign")
# for stages whose params have no max_failure_rate: the same default as every LLM stage
DEFAULT_MAX_FAILURE_RATE = LLMParams.max_failure_rate


@dataclass
class Built:
    ctx: RunContext
    stages: list[Stage]
    output: str
    settings: RunSettings = field(default_factory=RunSettings)
    columns: list[set[str]] = field(default_factory=list)  # columns after each stage
    attempt: int = 1  # the how-manieth run into this run dir


def build(cfg: DictConfig, run_dir: Path | None, show_progress: bool = True) -> Built:
    """Compose everything and check it without calling a model; raise with ALL problems."""
    problems: list[str] = []

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except SelfAlignError as exc:
            problems.append(str(exc))
            return None

    attempt(import_plugins, cfg)
    pipe = attempt(pipeline_settings, cfg)
    models = attempt(model_settings, cfg)
    cache_cfg = attempt(cache_settings, cfg)
    search = attempt(prompt_search_path, cfg)
    run = attempt(run_settings, cfg)
    budget_cfg = attempt(budget_settings, cfg)
    if (
        pipe is None
        or models is None
        or cache_cfg is None
        or search is None
        or run is None
        or budget_cfg is None
    ):
        raise ValidationFailed(problems)
    cache = ResponseCache(cache_cfg.path) if cache_cfg.enabled and run_dir is not None else None
    budget = Budget(budget_cfg, run_dir / "budget.json" if run_dir is not None else None)
    session = LLMSession(
        models,
        run_dir or Path("."),
        cache,
        set(cache_cfg.refresh_stages),
        budget,
        attempt(prices, models, budget_cfg.max_usd is not None) or {},
    )
    ctx = RunContext(
        run_dir=run_dir,
        prompts=PromptLibrary(search),
        llm=session,
        seed=run.seed,
        show_progress=show_progress,
        progress_every_s=run.progress_every_s,
    )
    specs: dict[str, StageSpec | None] = {}
    for name in pipe.order:
        before = len(problems)
        specs[name] = attempt(parse_stage, name, pipe.stages[name], cfg)
        if specs[name] is None and len(problems) > before:
            specs[name] = BROKEN
    stages, broken = [], None
    for name in pipe.order:
        before = len(problems)
        spec = specs[name]
        stage = attempt(make_stage, spec, specs, ctx) if spec not in (None, BROKEN) else None
        if stage is not None:
            stages.append(stage)
        elif (spec is BROKEN or len(problems) > before) and broken is None:
            broken = len(stages)  # its columns are unknown: check the flow only up to here
    for i, name in enumerate(cache_cfg.refresh_stages):
        if name not in pipe.stages:
            problems.append(f"cache.refresh_stages[{i}]: no stage '{name}' in this pipeline.")
    built = Built(ctx, stages, pipe.output or (pipe.order[-1] if pipe.order else ""), run)
    cols: set[str] = set()
    for stage in stages[:broken]:
        try:
            cols, found = stage.check(cols)
        except SelfAlignError as exc:  # e.g. unreadable input: later columns are unknown
            problems.append(f"{stage.where}: {exc}")
            break
        built.columns.append(cols)
        problems += found
    problems = _merge_missing(problems, stages, built.columns)
    if problems:
        raise ValidationFailed(problems)
    return built


def _merge_missing(problems: list[str], stages: list[Stage], columns: list[set[str]]) -> list[str]:
    """One message per missing column, naming every stage that needs it (not one per stage),
    with the rename hint when the pipeline loads a file. When a load stage comes first, they are
    the input file's to have: one message for all of them, naming the file."""
    by_col: dict[str, list[MissingColumn]] = {}
    for p in problems:
        if isinstance(p, MissingColumn):
            by_col.setdefault(p.column, []).append(p)
    if not by_col:
        return problems
    load = next((s for s in stages if s.kind == "load"), None)
    if load is not None and load in stages[: len(columns)]:
        # needed after the file is loaded, and made by no stage before: the file's to have
        at = stages.index(load)
        lacking = {c: ms for c, ms in by_col.items() if at < stages.index(ms[0].stage)}
        if lacking:
            problems = [p for p in problems if getattr(p, "column", None) not in lacking]
            problems.insert(0, _input_lacks(load, lacking, columns[at] - {"row_id"}))
    out, done = [], set()
    for p in problems:
        if not isinstance(p, MissingColumn):
            out.append(p)
        elif p.column not in done and len(by_col[p.column]) == 1:
            out.append(p)
            done.add(p.column)
        elif p.column not in done:
            done.add(p.column)
            names = ", ".join(m.stage.name for m in by_col[p.column])
            hint = (
                f" If the input has it under another name, map it with "
                f"{load.where}.rename={{YOUR_COLUMN: {p.column}}}."
                if load
                else ""
            )
            out.append(
                f"column '{p.column}' is needed by {names}, but no earlier stage "
                f"produces it. Columns available at {p.stage.name}: "
                f"{', '.join(sorted(p.available)) or '(none)'}.{hint}"
            )
    return out


def _input_lacks(load: Stage, needs: dict[str, list[MissingColumn]], found: set[str]) -> str:
    """The README's "bad input" message: the file, the missing columns and who needs them, the
    columns it has, and the rename that fixes it."""
    what = "; ".join(f"'{c}' (needed by {', '.join(m.stage.name for m in ms)})" for c, ms in needs.items())
    first, many = next(iter(needs)), len(needs) > 1
    return (
        f"{load.where}: {load.params.path}: the input lacks column{'s' if many else ''} "
        f"{what}, and no earlier stage produces {'them' if many else 'it'}. Columns found: "
        f"{', '.join(sorted(found)) or '(none)'}. If the file has {'them' if many else 'it'} under "
        f"another name, map it with {load.where}.rename={{YOUR_COLUMN: {first}}}"
        f"{' (one entry per column)' if many else ''}; else add it to the file."
    )


Output = pd.DataFrame | Stored  # a run's dataset: in memory, or a streamed stage's file
SOURCE_ROWS = 4096  # a streamed load reads its file this many rows at a time


async def execute(built: Built) -> Output:
    """Run the pipeline segment by segment, writing each stage's output; reuse leading stages
    whose checkpoint matches. Once a stage has run, every later stage runs too (its input may
    have changed). Row-local stages stream chunk by chunk (stream.py) unless `stream=false`; a
    load stage before them then reads its file chunk by chunk, and a streamed last segment's
    output stays on disk (Stored) — memory holds only the chunks in flight."""
    ctx = built.ctx
    assert ctx.run_dir is not None
    stage_dir = ctx.run_dir / "stages"
    stage_dir.mkdir(parents=True, exist_ok=True)
    df: pd.DataFrame = pd.DataFrame()
    fp, ran = "", False
    final: Output | None = None
    out: Output = df
    segs = (
        split(built.stages)
        if built.settings.stream
        else [Segment(i, [s]) for i, s in enumerate(built.stages)]
    )
    source: Step | None = None
    try:
        for k, seg in enumerate(segs):
            todo: list[Step] = [source] if source is not None else []
            source = None
            for i in seg.indexes:
                stage = built.stages[i]
                fp = fingerprint(fp, stage, ctx)
                ck = Checkpoint(stage_dir, i, stage.name)
                saved = None if ran or todo else ck.load(fp, built.settings.retry_failed)
                if saved is None:
                    todo.append(Step(stage, ck, fp))
                    continue
                restore(ctx, stage.name, saved[1])
                # an empty checkpoint keeps its columns; one written before it did has none
                df = out = saved[0] if len(saved[0].columns) else df.iloc[0:0]
                log.info("%s: reused %d rows from %s", stage.name, len(df), ck.rows.name)
                if stage.name == built.output:
                    final = df
            if todo and _feeds_next(todo, segs, k):
                source, ran = todo[0], True  # it heads the next segment
                source.source = True
                continue
            if todo:
                ran = True
                out, got = await _run_steps(built, todo, df, last=k == len(segs) - 1)
                df = out if isinstance(out, pd.DataFrame) else df.iloc[0:0]
                final = got if got is not None else final
            if not len(out) and seg.indexes[-1] < len(built.stages) - 1:
                log.warning("%s left no rows; later stages get none.", built.stages[seg.indexes[-1]].name)
            ctx.end_progress()
    finally:
        ctx.end_progress()
    return final if final is not None else out


def _feeds_next(todo: list[Step], segs: list[Segment], k: int) -> bool:
    """A load stage that can read its file chunk by chunk, before a streamed segment."""
    stage = todo[0].stage
    streamable = getattr(stage, "streamable", None)
    return (
        len(todo) == 1
        and streamable is not None
        and streamable()
        and k + 1 < len(segs)
        and segs[k + 1].streams
    )


async def _run_steps(
    built: Built, steps: list[Step], df: pd.DataFrame, last: bool
) -> tuple[Output, Output | None]:
    """(the last step's output, the pipeline's output stage's if it is one of them)."""
    ctx, start = built.ctx, time.perf_counter()
    names = [s.stage.name for s in steps]
    out_at = names.index(built.output) if built.output in names else None
    for j, s in enumerate(steps):
        s.ck.begin()
        came = f"{len(df)} rows in" if j == 0 else f"streaming from {steps[j - 1].stage.name}"
        log.info("%s (%s): %s", s.stage.name, s.stage.kind, "reading its input" if s.source else came)
    rows = built.settings.chunk_rows
    barrier = len(steps) == 1 and not steps[0].stage.is_row_local()
    if barrier:
        parts: Iterable[pd.DataFrame] = [df]  # all rows at once
        window = 1
    else:
        head = steps[0].stage.stream(SOURCE_ROWS) if steps[0].source else [df]  # type: ignore[attr-defined]
        parts = (c for big in head for c in chunks(big, rows))
        window = window_for(max((m.concurrency for m in ctx.llm.models.values()), default=1), rows)
    kept = await run_segment(steps, parts, window, {0} if barrier else set(), ctx.llm.spare)
    _finish(ctx, steps, round(time.perf_counter() - start, 3))
    if barrier:
        got = kept[0][0]  # one part, so one output (a failure raises)
        return got, got if out_at is not None else None
    # streamed: the rows are in the checkpoints; read back only what a later stage needs
    end = steps[-1]
    tail: Output = Stored(end.ck, ctx.stats.stage(end.stage.name).rows_out) if last else end.ck.read()
    if out_at is None:
        return tail, None
    return tail, tail if out_at == len(steps) - 1 else steps[out_at].ck.read()


async def _run_stage(stage: Stage, df: pd.DataFrame, ck: Checkpoint, fp: str) -> pd.DataFrame:
    """One stage on all its rows at once, checkpointed (the Ray executor's barriers)."""
    start, step = time.perf_counter(), Step(stage, ck, fp)
    ck.begin()
    kept = await run_segment([step], [df], 1, {0})
    _finish(stage.ctx, [step], round(time.perf_counter() - start, 3))
    return kept[0][0]  # one part, so one output (a failure raises)


def _finish(ctx: RunContext, steps: list[Step], wall: float) -> None:
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
        _check_failures(s.stage, ctx.stats.stage(s.stage.name))


def _check_failures(stage: Stage, st: StageStats) -> None:
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


def endpoints(built: Built) -> list[tuple[str, ModelConfig]]:
    """(label, config) of every model the run may call: those its stages name, and every
    model defined under `models:` (defined to be used)."""
    session = built.ctx.llm
    refs: set[str] = {n for n in session.models if n != DEFAULT}
    for stage in built.stages:
        refs |= {r or DEFAULT for r in stage.model_refs()}
    label = {DEFAULT: "model"}
    return [
        (f"{label.get(r, f'models.{r}')} '{session.models[r].name}'", session.models[r])
        for r in sorted(refs)
        if r in session.models
    ]


def check_endpoints(built: Built) -> None:
    """The preflight: raise with every unreachable endpoint / rejected key / unknown model."""
    if not built.settings.preflight:
        return
    problems = aio.run(preflight(endpoints(built)))
    if problems:
        raise PreflightFailed(problems)


def assess(built: Built, out: Output) -> list[str]:
    """Why a finished run is not what the user asked for (empty = it is)."""
    if not len(out) and not built.settings.allow_empty:
        return [
            "the dataset has 0 rows (see the drops per stage above; set allow_empty=true if that is expected)"
        ]
    return []
