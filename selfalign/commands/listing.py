"""`selfalign list [pipelines|stages|prompts|models]`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from selfalign import terminal
from selfalign.commands import reject_flags
from selfalign.errors import ConfigError
from selfalign.paths import resource_dir
from selfalign.registry import did_you_mean

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from selfalign.stages import Stage

# Hydra, the stages (pandas) and the prompt library are imported only by what lists them:
# `list pipelines` and `list models` read YAML files and need none of them.

WHAT = ("pipelines", "stages", "prompts", "models")
SHIPPED = "shipped"


def list_command(args: list[str], config_dirs: list[str]) -> int:
    reject_flags("list", args)
    # bare words name what to list (and a stage kind); key=value, +key=v and ~key are overrides
    words = [a for a in args if "=" not in a and not a.startswith(("+", "~"))]
    overrides = [a for a in args if a not in words]
    what = words[0] if words else "pipelines"
    if what not in WHAT:
        raise ConfigError(
            f"list: unknown '{what}'.{did_you_mean(what, list(WHAT))} Use one of: {', '.join(WHAT)}."
        )
    if len(words) > (2 if what == "stages" else 1):
        usage = "list stages [KIND]" if what == "stages" else f"list {what}"
        raise ConfigError(
            f"list {what}: unexpected '{words[-1]}'. Usage: selfalign {usage} "
            "[key=value ...]; see `selfalign list --help`."
        )
    out = terminal.console()
    if what == "stages":
        # Without overrides or --config-dir no plugin can be named (conf/config.yaml has
        # `plugins: []`), so no config is composed: Hydra and the model layer are not imported.
        cfg = _compose(overrides, config_dirs) if overrides or config_dirs else None
        _list_stages(out, cfg, words[1] if len(words) > 1 else None)
    elif what == "prompts":
        _list_prompts(out, _compose(overrides, config_dirs))
    else:  # YAML files only: no config is composed (Hydra is slow to import) unless
        from selfalign.hydra_setup import check_config_dirs

        if overrides:  # there are overrides to check: a bad one is exit 2, as before
            _compose(overrides, config_dirs)
        else:
            check_config_dirs(config_dirs)
        if what == "pipelines":
            _list_group(
                out, "pipeline", _pipeline_folders(config_dirs), _pipeline_row, ("stages", "description")
            )
        else:
            _list_group(out, "model", _model_folders(config_dirs), _model_row, ("provider", "name"))
    return 0


def _compose(overrides: list[str], config_dirs: list[str]) -> DictConfig:
    """The root config with the user's overrides, so `plugins` and `prompts.search_path` are
    read exactly as a run reads them. No pipeline is needed to list things: unless one is
    given, drop the mandatory `pipeline` default (`~pipeline`)."""
    from selfalign.hydra_setup import compose_config

    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return compose_config(overrides + ([] if "pipeline" in keys else ["~pipeline"]), config_dirs)


def _list_stages(out: Console, cfg: DictConfig | None, kind: str | None) -> None:
    from selfalign.stages import STAGES

    if cfg is not None:
        from selfalign.settings import import_plugins

        import_plugins(cfg)  # so `plugins=[my_module]` lists that module's stages too
    # an unknown KIND raises ConfigError with did-you-mean (exit 2)
    kinds = [(kind, STAGES.get(kind, "list stages"))] if kind is not None else STAGES.items()
    for name, cls in kinds:
        out.print(_stage_table(name, cls))


def _stage_table(kind: str, cls: type[Stage]) -> Table:
    from selfalign.config import describe_params

    title = f"{kind} — {_first_line(cls.__doc__)}"
    if not cls.__module__.startswith("selfalign."):
        title += f" (plugin {cls.__module__})"  # say where a user's stage comes from
    table = Table(title=escape(title), title_justify="left")
    for col in ("param", "type", "default", "doc"):
        table.add_column(col, overflow="fold")
    for name, tp, default, text in describe_params(cls.Params, nested=True):
        # describe_params marks a param without a default with the text "(required)"
        required = isinstance(default, str) and default == "(required)"
        table.add_row(name, escape(tp), escape(default if required else repr(default)), escape(text))
    return table


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _pipeline_folders(config_dirs: list[str]) -> list[tuple[str, Path]]:
    """(source, folder) in Hydra's search order for `pipeline=NAME`: each --config-dir's
    pipeline/ comes before the shipped pipelines (registered in the ConfigStore, searched last)."""
    return [(d, Path(d).expanduser() / "pipeline") for d in config_dirs] + [
        (SHIPPED, resource_dir("pipelines"))
    ]


def _model_folders(config_dirs: list[str]) -> list[tuple[str, Path]]:
    """(source, folder) in Hydra's search order for `model=NAME`: the shipped conf/ is the primary
    config dir, so conf/model/ comes before each --config-dir's model/."""
    return [(SHIPPED, resource_dir("conf") / "model")] + [
        (d, Path(d).expanduser() / "model") for d in config_dirs
    ]


def _pipeline_row(data: dict) -> list[str]:
    pipe = data.get("pipeline") or {}
    return [str(len(pipe.get("order") or [])), str(pipe.get("description", ""))]


def _model_row(data: dict) -> list[str]:
    return [str(data.get("provider", "")), str(data.get("name", ""))]


def _list_group(
    out: Console,
    group: str,
    folders: list[tuple[str, Path]],
    row: Callable[[dict], list[str]],
    columns: tuple[str, ...],
) -> None:
    """One row per NAME that `group=NAME` selects; where several folders have NAME.yaml, the
    first in search order is the one Hydra loads, and its source is shown."""
    found: dict[str, tuple[str, Path]] = {}
    for source, folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, (source, path))
    table = Table()
    for col in (group, *columns, "from"):
        table.add_column(col, overflow="fold")
    for name, (source, path) in sorted(found.items()):
        try:
            cells = row(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        except (yaml.YAMLError, AttributeError, UnicodeDecodeError) as exc:
            # keep listing the others; `selfalign validate` reports the file in full
            cells = [f"(unreadable {path}: {str(exc).splitlines()[0]})"] + [""] * (len(columns) - 1)
        table.add_row(*(escape(c) for c in (name, *cells, source)))
    out.print(table)


def _list_prompts(out: Console, cfg: DictConfig) -> None:
    from selfalign.prompts import PromptLibrary
    from selfalign.settings import prompt_search_path

    lib = PromptLibrary(prompt_search_path(cfg))
    shipped = resource_dir("prompts").resolve()
    table = Table()
    for col in ("prompt", "variables", "from"):
        table.add_column(col, overflow="fold")
    for name in lib.names():
        try:
            prompt = lib.get(name)
            variables = ", ".join(sorted(prompt.variables))
            folder = next(
                (p for p in lib.search_path if Path(prompt.path).is_relative_to(p)), Path(prompt.path)
            )
            source = SHIPPED if folder == shipped else str(folder)
        except Exception as exc:  # noqa: BLE001 — show a broken template, keep listing
            variables, source = f"(error: {exc})", ""
        table.add_row(escape(name), escape(variables), escape(source))
    out.print(table)


def stage_yaml(kind: str) -> str:
    """conf/stage/<kind>.yaml: every param of a stage kind with its default and doc, for reference
    (kept in sync with the dataclasses by tests/unit/test_stage_conf.py)."""
    from selfalign.config import describe_params
    from selfalign.stages import STAGES

    cls = STAGES.get(kind)
    lines = [
        f"# {kind}: {(cls.__doc__ or '').strip().splitlines()[0]}",
        "# Generated from the stage's Params dataclass: python -m selfalign.commands.listing",
        f"kind: {kind}",
    ]
    for name, tp, default, text in describe_params(cls.Params):
        value = (
            "???"
            if default == "(required)"
            else yaml.safe_dump(default, default_flow_style=True, width=10**6).strip().removesuffix("\n...")
        )
        lines.append(f"{name}: {value}  # {tp}. {text}".rstrip())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from selfalign.stages import STAGES

    out_dir = resource_dir("conf") / "stage"
    for kind, _ in STAGES.items():
        (out_dir / f"{kind}.yaml").write_text(stage_yaml(kind))
