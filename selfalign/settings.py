"""Typed run-level settings read from the composed config (everything outside the stages)."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from selfalign.config import doc, parse_params
from selfalign.errors import ConfigError
from selfalign.llm.budget import BudgetSettings
from selfalign.llm.config import ModelConfig
from selfalign.llm.session import DEFAULT
from selfalign.paths import resource_dir
from selfalign.registry import did_you_mean


@dataclass
class CacheSettings:
    enabled: bool = doc("cache every successful response", True)
    path: str = doc("SQLite file shared by all runs", "~/.cache/selfalign/responses.sqlite")
    refresh_stages: list[str] = doc("stages whose calls skip the cache (and refill it)", factory=list)


@dataclass
class Citation:
    """The method a pipeline implements; the dataset card and report.html show its BibTeX."""

    title: str = doc("the paper's (or project's) title")
    bibtex: str = doc("the BibTeX entry, as the card prints it")
    authors: list[str] = doc("the authors, in the paper's order", factory=list)
    year: int | None = doc("year of publication", None)
    url: str | None = doc("where to read it (arXiv, the project's page)", None)


@dataclass
class PipelineSettings:
    name: str = doc("pipeline name")
    stages: dict[str, Any] = doc("stage name → {kind, enabled?, ...params}")
    order: list[str] = doc("stage names in run order")
    description: str = doc("one line shown by `selfalign list pipelines`", "")
    output: str | None = doc("stage whose output is the final dataset (default: last)", None)
    # every shipped pipeline has one (tests/unit/test_pipeline_checklist.py); a user's may not
    citation: Citation | None = doc("the method's paper: {title, authors, year, url, bibtex}", None)


def _container(cfg: DictConfig, key: str, where: str) -> Any:
    try:
        node = OmegaConf.select(cfg, key, throw_on_missing=True)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except Exception as exc:  # noqa: BLE001 — interpolation/missing errors, reported plainly
        msg = str(exc).splitlines()[0]
        if "Interpolation key" in msg:  # e.g. domain=typo or preset=typo selects a missing entry
            msg += (
                ". A value you set selects an entry that does not exist: check your "
                "overrides against the options defined in pipelines/<pipeline>.yaml."
            )
        raise ConfigError(f"{where}: {msg}") from None


@dataclass
class RaySettings:
    address: str | None = doc(
        "a Ray cluster to join (ray.init address; auto = the one `ray start` left here); "
        "null = start a local Ray of our own",
        None,
    )
    num_cpus: int | None = doc("CPUs of the local Ray started when address is null; null = all", None)
    num_workers: int | None = doc("worker actors, each with its own model client; null = Ray's CPUs", None)
    block_rows: int = doc("rows per block sent to a worker (a parent_id group is never split)", 64)
    blocks_per_worker: int = doc("blocks in flight on each worker at once", 2)

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_workers", "block_rows", "blocks_per_worker"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass
class RunSettings:
    seed: int = doc("every sampling/shuffle seed derives from this", 42)
    allow_empty: bool = doc("a run whose dataset has 0 rows is a success", False)
    retry_failed: bool = doc("a re-run re-sends the calls that failed with an LLM error", True)
    preflight: bool = doc("check every model endpoint before stage 1", True)
    progress_every_s: float = doc("without a terminal: a progress log line this often", 10.0)
    stream: bool = doc("row-local stages pass rows on chunk by chunk (false: stage by stage)", True)
    chunk_rows: int = doc("rows per chunk when streaming", 8)
    executor: str = doc("local (asyncio, one process) or ray (docs/execution.md)", "local")
    ray: RaySettings = doc("the ray executor's settings", factory=lambda: RaySettings())

    def __post_init__(self) -> None:
        if self.progress_every_s < 0:
            raise ValueError("progress_every_s must be >= 0")
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {self.chunk_rows}")


EXECUTORS = ("local", "ray")
RUN_KEYS = (
    "seed",
    "allow_empty",
    "retry_failed",
    "preflight",
    "progress_every_s",
    "stream",
    "chunk_rows",
    "executor",
    "ray",
)


def run_settings(cfg: DictConfig) -> RunSettings:
    raw = {k: _container(cfg, k, k) for k in RUN_KEYS if k in cfg}
    run = parse_params(RunSettings, raw, "config")
    if run.executor not in EXECUTORS:
        raise ConfigError(
            f"executor: unknown executor '{run.executor}'.{did_you_mean(run.executor, list(EXECUTORS))} "
            f"Use one of: {', '.join(EXECUTORS)}."
        )
    if run.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise ConfigError("executor=ray needs the ray extra: pip install 'selfalign[ray]'")
    return run


def pipeline_settings(cfg: DictConfig) -> PipelineSettings:
    if "pipeline" not in cfg:
        raise ConfigError("no pipeline selected: add pipeline=NAME (see `selfalign list pipelines`).")
    raw = _container(cfg, "pipeline", "pipeline")
    p = parse_params(PipelineSettings, raw, "pipeline")
    for i, name in enumerate(p.order):
        if name not in p.stages:
            raise ConfigError(
                f"pipeline.order[{i}]: '{name}' is not defined under "
                f"pipeline.stages (defined: {', '.join(p.stages)})."
            )
    for name, raw in p.stages.items():
        # a stage left out of `order` is simply not run; but one without a `kind` was made by
        # a misspelt `pipeline.stages.NAME.key=v` override
        if name not in p.order and not (isinstance(raw, dict) and raw.get("kind")):
            raise ConfigError(
                f"pipeline.stages.{name}: no stage '{name}' in this pipeline."
                f"{did_you_mean(name, p.order)} Stages: {', '.join(p.order)}."
            )
    return p


def model_settings(cfg: DictConfig) -> dict[str, ModelConfig]:
    """`model` is the default; each entry of `models` is merged over it."""
    base = _container(cfg, "model", "model") or {}
    if not isinstance(base, dict):
        raise ConfigError(
            "model: expected a mapping; pick one with model=NAME (see `selfalign list models`)."
        )
    out = {DEFAULT: parse_params(ModelConfig, base, "model")}
    for name, extra in (_container(cfg, "models", "models") or {}).items():
        out[name] = parse_params(ModelConfig, {**base, **(extra or {})}, f"models.{name}")
    return out


def cache_settings(cfg: DictConfig) -> CacheSettings:
    return parse_params(CacheSettings, _container(cfg, "cache", "cache") or {}, "cache")


def budget_settings(cfg: DictConfig) -> BudgetSettings:
    return parse_params(BudgetSettings, _container(cfg, "budget", "budget") or {}, "budget")


def prompt_search_path(cfg: DictConfig) -> list[Path]:
    extra = _container(cfg, "prompts.search_path", "prompts.search_path") or []
    paths = [Path(p).expanduser() for p in extra]
    for i, p in enumerate(paths):
        if not p.is_dir():
            raise ConfigError(f"prompts.search_path[{i}]: folder not found: {p}")
    return paths + [resource_dir("prompts")]


def import_plugins(cfg: DictConfig) -> None:
    """Import user modules named in `plugins:` so their @register_stage classes exist."""
    for i, mod in enumerate(_container(cfg, "plugins", "plugins") or []):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise ConfigError(
                f"plugins[{i}]: cannot import '{mod}': {exc}. Make sure the module "
                "is on PYTHONPATH (e.g. run from its folder)."
            ) from None
        except SyntaxError as exc:  # also a file that is not UTF-8 and declares no coding
            raise ConfigError(
                f"plugins[{i}]: cannot import '{mod}': {exc.filename}:{exc.lineno}: {exc.msg}. "
                "Fix the module (Python reads it as UTF-8 unless it declares a `# coding:` line)."
            ) from None
