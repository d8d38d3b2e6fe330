"""Hydra wiring: pipelines as the `pipeline` config group, the ${sample:} resolver, compose."""

from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from selfalign.errors import ConfigError
from selfalign.paths import resource_dir, sample_path

_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)", re.M)
_DONE = False


def setup() -> None:
    """Register shipped pipelines (pipelines/*.yaml) under group `pipeline`, and resolvers.
    Pipelines live in a top-level folder, not in conf/, so the ConfigStore bridges the two;
    a user's own `pipeline/NAME.yaml` in an extra config dir joins the same group."""
    global _DONE
    if _DONE:
        return
    OmegaConf.register_new_resolver("sample", sample_path, replace=True)
    store = ConfigStore.instance()
    for path in sorted(resource_dir("pipelines").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        m = _PACKAGE.search(text)
        store.store(
            group="pipeline",
            name=path.stem,
            node=OmegaConf.create(text),
            package=m.group(1) if m else "pipeline",
        )
    _DONE = True


def normalize_overrides(args: list[str]) -> list[str]:
    """`pipeline.stages.X.key=v` → `++pipeline.stages.X.key=v`: a stage param may be absent from
    the pipeline YAML (it has a default), and Hydra's struct mode would refuse to set it. Typos
    are still caught: every stage's params are checked against its typed dataclass."""
    out = []
    for a in args:
        if a.startswith("pipeline.stages.") and "=" in a:
            a = "++" + a
        out.append(a)
    return out


def conf_dir() -> str:
    return str(resource_dir("conf"))


def searchpath_override(config_dirs: list[str]) -> list[str]:
    if not config_dirs:
        return []
    dirs = ",".join(f"'file://{Path(d).expanduser().resolve()}'" for d in config_dirs)
    return [f"hydra.searchpath=[{dirs}]"]


def check_config_dirs(config_dirs: list[str]) -> None:
    """Hydra only warns about a missing search-path folder; we fail, naming it."""
    for d in config_dirs:
        if not Path(d).expanduser().is_dir():
            raise ConfigError(f"--config-dir: folder not found: {d}")


def compose_config(overrides: list[str], config_dirs: list[str] | None = None) -> DictConfig:
    """Compose like `selfalign run` would, for validate/preview; Hydra errors → ConfigError."""
    setup()
    check_config_dirs(config_dirs or [])
    try:
        with initialize_config_dir(config_dir=conf_dir(), version_base=None):
            return compose(
                "config", overrides=normalize_overrides(overrides) + searchpath_override(config_dirs or [])
            )
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"config: {hydra_message(exc)}") from None


def hydra_message(exc: BaseException) -> str:
    """Hydra often wraps the useful message in __cause__ and leaves its own text empty."""
    parts, seen = [], exc
    while seen is not None:
        text = str(seen).strip()
        if text and text not in parts:
            parts.append(text)
        seen = seen.__cause__
    return " — ".join(parts) or type(exc).__name__
