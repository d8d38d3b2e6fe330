"""Stage specs: each stage's kind and typed params from the composed config, cross-stage
references resolved into typed StageSpecs, and errors that name the root key a value came from."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from selfalign.config import parse_params
from selfalign.context import RunContext
from selfalign.errors import ConfigError, SelfAlignError
from selfalign.registry import did_you_mean
from selfalign.stages import STAGES, Stage
from selfalign.stages.base import StageSpec

_INTERP = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")
_NESTED = re.compile(r"\$\{(\.*[A-Za-z_][\w.]*)\}")  # an interpolation with none inside

# a stage whose params could not be parsed (its problem is already reported)
BROKEN = StageSpec("", "", None)


def parse_stage(name: str, raw: Any, cfg: DictConfig | None = None) -> StageSpec | None:
    """Kind and typed params of one stage; None for a disabled stage. A bad value that came
    from a root key by interpolation names that key too (`n` ← num_instructions)."""
    try:
        return _parse_raw_stage(name, raw)
    except ConfigError as exc:
        sources = _sources(cfg, name) if cfg is not None else {}
        named = sorted(
            {
                src
                for f, src in sources.items()
                if f"`{f}`" in str(exc) or f".{name}.{f}:" in str(exc) or f".{name}.{f}." in str(exc)
            }
        )
        if not named:
            raise
        keys = ", ".join(f"`{k}`" for k in named)
        raise ConfigError(f"{exc} (the value comes from {keys}: change it there)") from None


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
            value = (
                holder._get_node(leaf)._value() if isinstance(holder, DictConfig) and leaf in holder else None
            )
        if ref:
            out[str(key)] = ref
    return out


def _inner(value: str, cfg: DictConfig, node: DictConfig) -> str:
    """Replace the interpolations nested inside another one by their values."""
    while (m := _NESTED.search(value)) and value != m.group(0):
        ref = m.group(1)
        got = OmegaConf.select(node, ref.lstrip(".")) if ref.startswith(".") else OmegaConf.select(cfg, ref)
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


def make_stage(spec: StageSpec, specs: dict[str, StageSpec | None], ctx: RunContext) -> Stage:
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


def _resolve(
    spec: StageSpec, field_name: str, target: str, kind: str, specs: dict[str, StageSpec | None]
) -> StageSpec:
    where = f"pipeline.stages.{spec.name}.{field_name}"
    found = specs.get(target)
    if target not in specs:
        names = [n for n, s in specs.items() if s not in (None, BROKEN) and s.kind == kind]
        raise ConfigError(
            f"{where}: no stage '{target}' in this pipeline.{did_you_mean(target, names)} "
            f"{kind} stages here: {', '.join(names) or '(none)'}."
        )
    if found is None:
        raise ConfigError(
            f"{where}: stage '{target}' is disabled; enable it or point {field_name} at another {kind} stage."
        )
    if found is BROKEN:
        raise ConfigError(f"{where}: stage '{target}' has errors (see above).")
    if found.kind != kind:
        raise ConfigError(f"{where}: '{target}' is a {found.kind} stage, not {kind}.")
    return found
