"""Build and check a pipeline before any paid call: the stages with their typed params, the column
flow, the preflight of every endpoint; and `assess`, whether a finished run is what was asked.
Running it is an executor's job (executors/local.py, executors/ray_executor.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from selfalign import aio
from selfalign.checkpoint import Stored
from selfalign.context import RunContext
from selfalign.errors import PreflightFailed, SelfAlignError, ValidationFailed
from selfalign.llm.budget import Budget, prices
from selfalign.llm.cache import ResponseCache
from selfalign.llm.config import ModelConfig
from selfalign.llm.preflight import preflight
from selfalign.llm.session import DEFAULT, LLMSession
from selfalign.prompts import PromptLibrary
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


def assess(built: Built, out: Stored) -> list[str]:
    """Why a finished run is not what the user asked for (empty = it is)."""
    if not len(out) and not built.settings.allow_empty:
        return [
            "the dataset has 0 rows (see the drops per stage above; set allow_empty=true if that is expected)"
        ]
    return []
