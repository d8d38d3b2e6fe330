"""Hydra wiring: pipelines as the `pipeline` config group, the ${sample:} resolver, compose."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from selfalign.errors import ConfigError, decode_problem
from selfalign.paths import resource_dir, sample_path
from selfalign.registry import did_you_mean

# Hydra itself is imported by the functions that compose (~0.15 s): `list pipelines` needs none.
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
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for path in sorted(resource_dir("pipelines").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        m = _PACKAGE.search(text)
        store.store(
            group="pipeline",
            name=path.stem,
            node=load_yaml(text),  # plain data: the store makes its own DictConfig of it
            package=m.group(1) if m else "pipeline",
        )
    _DONE = True


def load_yaml(text: str) -> Any:
    """YAML as OmegaConf.create(text) reads it (its rules: YAML 1.2 floats, no timestamps,
    duplicate keys refused), on libyaml's C parser where PyYAML has it: every run registers all
    shipped pipelines, and the pure-Python parser was half of that."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506 — a safe loader with OmegaConf's rules


@functools.cache
def _loader() -> type:
    import yaml
    from omegaconf._utils import get_yaml_loader

    rules = get_yaml_loader()
    if not getattr(yaml, "__with_libyaml__", False):
        return rules

    class Loader(yaml.CSafeLoader):  # type: ignore[misc, name-defined]
        yaml_implicit_resolvers = rules.yaml_implicit_resolvers
        yaml_constructors = rules.yaml_constructors

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            # OmegaConf's loader refuses a repeated key (PyYAML keeps the last); so does this one
            keys: set[str] = set()
            for key_node, _ in node.value:
                if key_node.tag == yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
                    if key_node.value in keys:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping",
                            node.start_mark,
                            f"found duplicate key {key_node.value}",
                            key_node.start_mark,
                        )
                    keys.add(key_node.value)
            return super().construct_mapping(node, deep=deep)

    return Loader


# overrides of typed params that may be absent from the YAML (they have defaults)
_TYPED = ("pipeline.stages.", "model.", "models.")


def normalize_overrides(args: list[str]) -> list[str]:
    """`pipeline.stages.X.key=v` → `++pipeline.stages.X.key=v` (and the same for `model.key`
    and `models.NAME.key`): such a param may be absent from the YAML (it has a default), and
    Hydra's struct mode would refuse to set it. Typos are still caught: stage params and model
    configs are checked against their typed dataclasses, with did-you-mean."""
    out = []
    for a in args:
        if a.startswith(_TYPED) and "=" in a:
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
    """Hydra only warns about a missing search-path folder; we fail, naming it. A YAML file in
    it that is not UTF-8 would be a UnicodeDecodeError deep in Hydra that names no file."""
    for d in config_dirs:
        if not Path(d).expanduser().is_dir():
            raise ConfigError(f"--config-dir: folder not found: {d}")
        for path in _config_files(Path(d).expanduser()):
            problem = decode_problem(path, path.read_bytes(), "Re-save the file as UTF-8.")
            if problem:
                raise ConfigError(problem)


def _config_files(folder: Path) -> list[Path]:
    """The YAML files Hydra may read from a config dir: DIR/*.yaml and DIR/GROUP[/SUB]/*.yaml
    (not a deep walk: `--config-dir .` may sit on a large tree)."""
    depths = ("*", "*/*", "*/*/*")
    return sorted(p for d in depths for ext in ("yaml", "yml") for p in folder.glob(f"{d}.{ext}"))


def _compose(overrides: list[str], config_dirs: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose("config", overrides=normalize_overrides(overrides) + searchpath_override(config_dirs))


def compose_config(overrides: list[str], config_dirs: list[str] | None = None) -> DictConfig:
    """Compose like `selfalign run` would, for validate/preview; Hydra errors → ConfigError.
    A key that exists nowhere is an error with did-you-mean, whether typed as `key=v` (Hydra
    would suggest `+key=v`) or as `+key=v` (which Hydra accepts, and nothing would ever read)."""
    from hydra.errors import HydraException

    setup()
    dirs = config_dirs or []
    check_config_dirs(dirs)
    try:
        cfg = _compose(overrides, dirs)
    except (HydraException, OmegaConfBaseException) as exc:
        key = _not_in_struct(exc)
        if key is None:
            raise ConfigError(f"config: {hydra_message(exc)}") from None
        rest = [o for o in overrides if _override_key(o) != key]
        raise _unknown_key(key, rest, dirs) from None
    appends = [o for o in overrides if o.startswith("+") and not o.startswith("++")]
    if appends:  # which root keys exist without them?
        base = _compose([o for o in overrides if o not in appends], dirs)
        for key in map(_override_key, appends):
            if "@" not in key and key.split(".")[0] not in base and key not in _groups(dirs):
                raise _unknown_key(key, [o for o in overrides if o not in appends], dirs)
    return cfg


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _not_in_struct(exc: BaseException) -> str | None:
    """The key of Hydra's "Could not override 'KEY' … not in struct" error, else None."""
    m = re.search(r"Could not override '([^']+)'", hydra_message(exc))
    return m.group(1) if m and "not in struct" in hydra_message(exc) else None


def _groups(config_dirs: list[str]) -> set[str]:
    roots = [Path(conf_dir()), *(Path(d).expanduser() for d in config_dirs)]
    return {p.name for r in roots if r.is_dir() for p in r.iterdir() if p.is_dir()} | {"pipeline"}


def _unknown_key(key: str, other: list[str], config_dirs: list[str]) -> ConfigError:
    """`key` is in no config: name the valid keys at its level, with did-you-mean."""
    from hydra.errors import HydraException

    parts = key.split(".")
    try:
        root = _compose(other, config_dirs)
    except (HydraException, OmegaConfBaseException):
        root = None
    # the deepest level of the key that exists: the typo is just below it
    depth = len(parts) - 1
    while depth and not isinstance(OmegaConf.select(root, ".".join(parts[:depth])), DictConfig):
        depth -= 1
    parent, leaf = parts[:depth], parts[depth]
    node = OmegaConf.select(root, ".".join(parent)) if parent and root is not None else root
    keys = [str(k) for k in node] if isinstance(node, DictConfig) else []
    keys = [k for k in keys if k != "hydra"]
    where = ".".join(parent)
    listed = ", ".join(keys) or "(none)"
    return ConfigError(
        f"{key}: unknown config key '{'.'.join([*parent, leaf])}'."
        f"{did_you_mean(leaf, keys)} Keys under {where or 'the root'}: {listed}. "
        "A stage param is set with pipeline.stages.NAME.PARAM=VALUE."
    )


def hydra_message(exc: BaseException) -> str:
    """Hydra often wraps the useful message in __cause__ and leaves its own text empty."""
    parts, seen = [], exc
    while seen is not None:
        text = str(seen).strip()
        if text and text not in parts:
            parts.append(text)
        seen = seen.__cause__
    return " — ".join(parts) or type(exc).__name__
