"""Build → validate → run a pipeline; owns stage outputs, resume, the manifest and the final files."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from selfalign import aio, io
from selfalign.checkpoint import Checkpoint, fingerprint, restore
from selfalign.config import parse_params
from selfalign.context import Rejected, RunContext, StageStats
from selfalign.errors import ConfigError, PreflightFailed, RunFailed, SelfAlignError, ValidationFailed
from selfalign.llm.budget import Budget, prices
from selfalign.llm.cache import ResponseCache
from selfalign.llm.config import ModelConfig
from selfalign.llm.preflight import preflight
from selfalign.llm.session import DEFAULT, LLMSession
from selfalign.manifest import versions
from selfalign.prompts import PromptLibrary
from selfalign.registry import did_you_mean
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
from selfalign.stages import STAGES, Stage
from selfalign.stages.base import StageSpec

log = logging.getLogger("selfalign")
_INTERP = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")
_NESTED = re.compile(r"\$\{(\.*[A-Za-z_][\w.]*)\}")  # an interpolation with none inside
DEFAULT_MAX_FAILURE_RATE = 0.25  # for stages whose params have no max_failure_rate


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
    if pipe is None or models is None or cache_cfg is None or search is None or run is None \
            or budget_cfg is None:
        raise ValidationFailed(problems)
    cache = ResponseCache(cache_cfg.path) if cache_cfg.enabled and run_dir is not None else None
    budget = Budget(budget_cfg, run_dir / "budget.json" if run_dir is not None else None)
    session = LLMSession(models, run_dir or Path("."), cache, set(cache_cfg.refresh_stages),
                         budget, attempt(prices, models, budget_cfg.max_usd is not None) or {})
    ctx = RunContext(run_dir=run_dir, prompts=PromptLibrary(search), llm=session,
                     seed=run.seed, show_progress=show_progress)
    specs: dict[str, StageSpec | None] = {}
    for name in pipe.order:
        before = len(problems)
        specs[name] = attempt(_parse_stage, name, pipe.stages[name], cfg)
        if specs[name] is None and len(problems) > before:
            specs[name] = _BROKEN
    stages, broken = [], None
    for name in pipe.order:
        before = len(problems)
        spec = specs[name]
        stage = attempt(_make_stage, spec, specs, ctx) if spec not in (None, _BROKEN) else None
        if stage is not None:
            stages.append(stage)
        elif (spec is _BROKEN or len(problems) > before) and broken is None:
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
    if problems:
        raise ValidationFailed(problems)
    return built


# a stage whose params could not be parsed (its problem is already reported)
_BROKEN = StageSpec("", "", None)


def _parse_stage(name: str, raw: Any, cfg: DictConfig | None = None) -> StageSpec | None:
    """Kind and typed params of one stage; None for a disabled stage. A bad value that came
    from a root key by interpolation names that key too (`n` ← num_instructions)."""
    try:
        return _parse_raw_stage(name, raw)
    except ConfigError as exc:
        sources = _sources(cfg, name) if cfg is not None else {}
        named = [f"{f} ← {src}" for f, src in sources.items()
                 if f"`{f}`" in str(exc) or f".{name}.{f}:" in str(exc) or f".{name}.{f}." in str(exc)]
        if not named:
            raise
        raise ConfigError(f"{exc} (set from {'; '.join(named)}: change that key)") from None


def _sources(cfg: DictConfig, name: str) -> dict[str, str]:
    """Stage param → the root key its value comes from, following ${...} interpolations
    (nested ones like ${phases.${.output}.n} are resolved from the inside out)."""
    node = OmegaConf.select(cfg, f"pipeline.stages.{name}")
    if not isinstance(node, DictConfig):
        return {}
    out = {}
    for key in node:
        ref, value = None, node._get_node(key)._value()  # the raw value, unresolved
        for _ in range(8):
            value = _inner(value, cfg, node) if isinstance(value, str) else value
            m = _INTERP.fullmatch(value) if isinstance(value, str) else None
            if not m:
                break
            ref = m.group(1)
            parent, _, leaf = ref.rpartition(".")
            holder = OmegaConf.select(cfg, parent) if parent else cfg
            value = holder._get_node(leaf)._value() \
                if isinstance(holder, DictConfig) and leaf in holder else None
        if ref:
            out[str(key)] = ref
    return out


def _inner(value: str, cfg: DictConfig, node: DictConfig) -> str:
    """Replace the interpolations nested inside another one by their values."""
    while (m := _NESTED.search(value)) and value != m.group(0):
        ref = m.group(1)
        got = OmegaConf.select(node, ref.lstrip(".")) if ref.startswith(".") \
            else OmegaConf.select(cfg, ref)
        value = value.replace(m.group(0), str(got), 1)
    return value


def _parse_raw_stage(name: str, raw: Any) -> StageSpec | None:
    where = f"pipeline.stages.{name}"
    if not isinstance(raw, dict):
        raise SelfAlignError(f"{where}: expected a mapping with a `kind`, got {raw!r}.")
    raw = dict(raw)
    kind = raw.pop("kind", None)
    if not kind:
        raise SelfAlignError(f"{where}: missing `kind` (one of: {', '.join(STAGES)}).")
    if not raw.pop("enabled", True):
        return None
    cls = STAGES.get(kind, f"{where}.kind")
    return StageSpec(name, kind, parse_params(cls.Params, raw, where))


def _make_stage(spec: StageSpec, specs: dict[str, StageSpec | None], ctx: RunContext) -> Stage:
    """Build a stage; the stages its `refs` fields name are resolved into their typed specs."""
    cls = STAGES.get(spec.kind)
    if not cls.refs:
        return cls(spec.name, spec.params, ctx)
    peers: dict[str, StageSpec] = {}
    for field_name, kind in cls.refs.items():
        ref = getattr(spec.params, field_name)
        for target in [ref] if isinstance(ref, str) else list(ref or []):
            peers[target] = _resolve(spec, field_name, target, kind, specs)
    return cls(spec.name, spec.params, ctx, peers=peers)


def _resolve(spec: StageSpec, field_name: str, target: str, kind: str,
             specs: dict[str, StageSpec | None]) -> StageSpec:
    where = f"pipeline.stages.{spec.name}.{field_name}"
    found = specs.get(target)
    if target not in specs:
        names = [n for n, s in specs.items() if s not in (None, _BROKEN) and s.kind == kind]
        raise ConfigError(f"{where}: no stage '{target}' in this pipeline.{did_you_mean(target, names)} "
                          f"{kind} stages here: {', '.join(names) or '(none)'}.")
    if found is None:
        raise ConfigError(f"{where}: stage '{target}' is disabled; enable it or point "
                          f"{field_name} at another {kind} stage.")
    if found is _BROKEN:
        raise ConfigError(f"{where}: stage '{target}' has errors (see above).")
    if found.kind != kind:
        raise ConfigError(f"{where}: '{target}' is a {found.kind} stage, not {kind}.")
    return found


async def execute(built: Built) -> pd.DataFrame:
    """Run the stages in order, writing each output; reuse leading stages whose checkpoint
    matches. Once a stage has run, every later stage runs too (its input may have changed)."""
    ctx = built.ctx
    assert ctx.run_dir is not None
    stage_dir = ctx.run_dir / "stages"
    stage_dir.mkdir(parents=True, exist_ok=True)
    df, fp, final, ran = pd.DataFrame(), "", None, False
    for i, stage in enumerate(built.stages):
        fp = fingerprint(fp, stage, ctx)
        ck = Checkpoint(stage_dir, i, stage.name)
        saved = None if ran else ck.load(fp, built.settings.retry_failed)
        if saved is not None:
            restore(ctx, stage.name, saved[1])
            df = saved[0] if len(saved[0]) else df.iloc[0:0]
            log.info("%s: reused %d rows from %s", stage.name, len(df), ck.rows.name)
        else:
            ran = True
            df = await _run_stage(stage, df, ck, fp)
        if stage.name == built.output:
            final = df
        if df.empty and i < len(built.stages) - 1:
            log.warning("%s left no rows; later stages get none.", stage.name)
    return final if final is not None else df


async def _run_stage(stage: Stage, df: pd.DataFrame, ck: Checkpoint, fp: str) -> pd.DataFrame:
    ctx = stage.ctx
    st = ctx.stats.stage(stage.name)
    st.rows_in, start = len(df), time.perf_counter()
    log.info("%s (%s): %d rows in", stage.name, stage.kind, len(df))
    out = await stage.run(df)
    st.rows_out, st.wall_s = len(out), round(time.perf_counter() - start, 3)
    ck.save(out, fp, st, ctx.llm.accounting.dump_stage(stage.name))
    drops = ", ".join(f"{k}={v}" for k, v in st.drops.items())
    log.info("%s: %d rows out%s in %.1fs", stage.name, len(out),
             f" (dropped: {drops})" if drops else "", st.wall_s)
    _check_failures(stage, st)
    return out


def _check_failures(stage: Stage, st: StageStats) -> None:
    """Too many failed calls: stop before later stages spend tokens on a broken run."""
    limit = getattr(stage.params, "max_failure_rate", DEFAULT_MAX_FAILURE_RATE)
    if not st.jobs or st.failed / st.jobs <= limit:
        return
    retry = (" Re-running into the same run dir sends the failed calls again (the cache answers "
             "the rest)." if st.llm_failed else "")
    raise RunFailed(f"{stage.where}: {st.failed} of {st.jobs} model calls failed "
                    f"({st.failed / st.jobs:.0%} > max_failure_rate {limit:.0%}). First error: "
                    f"{st.first_error}.{retry} To accept more failures set "
                    f"{stage.where}.max_failure_rate.")


def endpoints(built: Built) -> list[tuple[str, ModelConfig]]:
    """(label, config) of every model the run may call: those its stages name, and every
    model defined under `models:` (defined to be used)."""
    session = built.ctx.llm
    refs: set[str] = {n for n in session.models if n != DEFAULT}
    for stage in built.stages:
        refs |= {r or DEFAULT for r in stage.model_refs()}
    label = {DEFAULT: "model"}
    return [(f"{label.get(r, f'models.{r}')} '{session.models[r].name}'", session.models[r])
            for r in sorted(refs) if r in session.models]


def check_endpoints(built: Built) -> None:
    """The preflight: raise with every unreachable endpoint / rejected key / unknown model."""
    if not built.settings.preflight:
        return
    problems = aio.run(preflight(endpoints(built)))
    if problems:
        raise PreflightFailed(problems)


def assess(built: Built, df: pd.DataFrame) -> list[str]:
    """Why a finished run is not what the user asked for (empty = it is)."""
    if df.empty and not built.settings.allow_empty:
        return ["the dataset has 0 rows (see the drops per stage above; set allow_empty=true "
                "if that is expected)"]
    return []


def stage_report(built: Built) -> list[dict[str, Any]]:
    ctx = built.ctx
    out = []
    for s in built.stages:
        st = ctx.stats.stages.get(s.name)
        if st is None:  # the run stopped before this stage
            out.append({"name": s.name, "kind": s.kind, "status": "not run",
                        "prompts": s.prompt_hashes()})
            continue
        out.append({"name": s.name, "kind": s.kind,
                    "status": "reused" if st.reused else "ran", "rows_in": st.rows_in,
                    "rows_out": st.rows_out, "drops": dict(st.drops), "counts": dict(st.counts),
                    "calls": st.jobs, "failed_calls": st.failed, "wall_s": st.wall_s,
                    "reused": st.reused, "prompts": s.prompt_hashes(),
                    "llm": ctx.llm.accounting.for_stage(s.name)})
    return out


def write_manifest(built: Built, meta: dict[str, Any], rows: int | None) -> dict[str, Any]:
    ctx = built.ctx
    assert ctx.run_dir is not None
    manifest = {**meta, "rows": rows, "rejected": ctx.rejected.count,
                "stages": stage_report(built), "llm_totals": ctx.llm.accounting.totals(),
                "llm_attempt": ctx.llm.accounting.totals(this_attempt=True),
                "versions": versions(),
                "models": {k: ctx.llm.identity(k) for k in ctx.llm.models}}
    if ctx.llm.budget.active:
        manifest["budget"] = ctx.llm.budget.to_json()
        ctx.llm.budget.save()
    io.write_json(manifest, ctx.run_dir / "manifest.json")
    return manifest


def write_outputs(built: Built, df: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    ctx = built.ctx
    assert ctx.run_dir is not None
    io.write_jsonl(df, ctx.run_dir / "dataset.jsonl")
    io.write_parquet(df, ctx.run_dir / "dataset.parquet")
    return write_manifest(built, meta, len(df))


def prepare_run_dir(cfg: DictConfig, run_dir: Path) -> Built:
    """Build, then set up the run dir: the run's log file, the rejected table (kept across
    attempts: each run into the same dir is attempt n+1), the resolved config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    built = build(cfg, run_dir)
    built.attempt = _previous_attempt(run_dir) + 1
    built.ctx.rejected = Rejected(run_dir / "rejected.jsonl", built.attempt)
    (run_dir / "rejected.jsonl").touch()
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    io.write_json({"status": "running", "attempt": built.attempt}, run_dir / "manifest.json")
    return built


def _previous_attempt(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "manifest.json").read_text()).get("attempt", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 1 if (run_dir / "stages").is_dir() else 0


@contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """run.log in the run dir holds the `selfalign` logger's lines while the run lasts."""
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    logger = logging.getLogger("selfalign")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
