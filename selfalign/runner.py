"""Build → validate → run a pipeline; owns stage outputs, resume, the manifest and the final files."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from selfalign import io
from selfalign.config import parse_params
from selfalign.context import Rejected, RunContext
from selfalign.errors import ConfigError, SelfAlignError, ValidationFailed
from selfalign.llm.cache import ResponseCache
from selfalign.llm.session import LLMSession
from selfalign.manifest import versions
from selfalign.prompts import PromptLibrary
from selfalign.registry import did_you_mean
from selfalign.settings import (
    cache_settings,
    import_plugins,
    model_settings,
    pipeline_settings,
    prompt_search_path,
)
from selfalign.stages import STAGES, Stage
from selfalign.stages.base import StageSpec


@dataclass
class Built:
    ctx: RunContext
    stages: list[Stage]
    output: str
    columns: list[set[str]] = field(default_factory=list)  # columns after each stage


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
    if pipe is None or models is None or cache_cfg is None or search is None:
        raise ValidationFailed(problems)
    cache = ResponseCache(cache_cfg.path) if cache_cfg.enabled and run_dir is not None else None
    session = LLMSession(models, run_dir or Path("."), cache, set(cache_cfg.refresh_stages))
    seed = int(cfg.get("seed", 42))
    ctx = RunContext(cfg=cfg, run_dir=run_dir, prompts=PromptLibrary(search), llm=session,
                     seed=seed, show_progress=show_progress)
    specs: dict[str, StageSpec | None] = {}
    for name in pipe.order:
        before = len(problems)
        specs[name] = attempt(_parse_stage, name, pipe.stages[name])
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
    built = Built(ctx, stages, pipe.output or (pipe.order[-1] if pipe.order else ""))
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


def _parse_stage(name: str, raw: Any) -> StageSpec | None:
    """Kind and typed params of one stage; None for a disabled stage."""
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


def _fingerprint(prev: str, stage: Stage, ctx: RunContext) -> str:
    params = asdict(stage.params) if hasattr(stage.params, "__dataclass_fields__") else {}
    extra = getattr(stage, "fingerprint_extra", lambda: "")()
    model = ctx.llm.identity(getattr(stage.params, "model", None)) if stage.uses_llm else ""
    blob = json.dumps([prev, stage.kind, stage.name, params, stage.prompt_hashes(), model,
                       ctx.seed, extra], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


async def execute(built: Built) -> pd.DataFrame:
    """Run the stages in order, writing each output; reuse outputs whose fingerprint matches."""
    ctx = built.ctx
    assert ctx.run_dir is not None
    stage_dir = ctx.run_dir / "stages"
    stage_dir.mkdir(parents=True, exist_ok=True)
    df, fp, final = pd.DataFrame(), "", None
    for i, stage in enumerate(built.stages):
        fp = _fingerprint(fp, stage, ctx)
        path = stage_dir / f"{i:02d}_{stage.name}.jsonl"
        marker = path.with_suffix(".fingerprint")
        st = ctx.stats.stage(stage.name)
        st.rows_in, start = len(df), time.perf_counter()
        if path.exists() and marker.exists() and marker.read_text() == fp:
            df, st.reused = io.read_jsonl(path) if path.stat().st_size else df.iloc[0:0], True
            ctx.console.log(f"[dim]{stage.name}: reused {len(df)} rows from {path.name}")
        else:
            df = await stage.run(df)
            io.write_jsonl(df, path)
            marker.write_text(fp)
        st.rows_out, st.wall_s = len(df), round(time.perf_counter() - start, 3)
        if stage.name == built.output:
            final = df
        if df.empty and i < len(built.stages) - 1:
            ctx.console.log(f"[yellow]{stage.name} left no rows; later stages get none.")
    return final if final is not None else df


def stage_report(built: Built) -> list[dict[str, Any]]:
    ctx = built.ctx
    out = []
    for s in built.stages:
        st = ctx.stats.stage(s.name)
        out.append({"name": s.name, "kind": s.kind, "rows_in": st.rows_in,
                    "rows_out": st.rows_out, "drops": dict(st.drops), "counts": dict(st.counts),
                    "wall_s": st.wall_s,
                    "reused": st.reused, "prompts": s.prompt_hashes(),
                    "llm": ctx.llm.accounting.for_stage(s.name)})
    return out


def write_outputs(built: Built, df: pd.DataFrame, meta: dict[str, Any]) -> dict[str, Any]:
    ctx = built.ctx
    assert ctx.run_dir is not None
    io.write_jsonl(df, ctx.run_dir / "dataset.jsonl")
    io.write_parquet(df, ctx.run_dir / "dataset.parquet")
    manifest = {**meta, "rows": len(df), "rejected": ctx.rejected.count,
                "stages": stage_report(built), "llm_totals": ctx.llm.accounting.totals(),
                "versions": versions(),
                "models": {k: ctx.llm.identity(k) for k in ctx.llm.models}}
    io.write_json(manifest, ctx.run_dir / "manifest.json")
    return manifest


def prepare_run_dir(cfg: DictConfig, run_dir: Path) -> Built:
    run_dir.mkdir(parents=True, exist_ok=True)
    built = build(cfg, run_dir)
    built.ctx.rejected = Rejected(run_dir / "rejected.jsonl")
    (run_dir / "rejected.jsonl").write_text("")  # one run's rejects, not an earlier run's
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return built
