"""`selfalign list [pipelines|stages|prompts|models]`."""

from __future__ import annotations

import yaml
from rich.console import Console
from rich.table import Table

from selfalign.config import describe_params
from selfalign.errors import ConfigError
from selfalign.paths import resource_dir
from selfalign.prompts import PromptLibrary
from selfalign.registry import did_you_mean
from selfalign.stages import STAGES

WHAT = ("pipelines", "stages", "prompts", "models")


def list_command(args: list[str], config_dirs: list[str]) -> int:
    what = args[0] if args else "pipelines"
    if what not in WHAT:
        raise ConfigError(f"list: unknown '{what}'.{did_you_mean(what, list(WHAT))} "
                          f"Use one of: {', '.join(WHAT)}.")
    out = Console()
    if what == "stages":
        for kind, cls in STAGES.items():
            table = Table(title=f"{kind} — {(cls.__doc__ or '').strip().splitlines()[0]}",
                          title_justify="left")
            for col in ("param", "type", "default", "doc"):
                table.add_column(col, overflow="fold")
            for name, tp, default, text in describe_params(cls.Params):
                table.add_row(name, tp, repr(default), text)
            out.print(table)
        return 0
    table = Table()
    if what == "pipelines":
        for col in ("pipeline", "stages", "description"):
            table.add_column(col, overflow="fold")
        for path in sorted(resource_dir("pipelines").glob("*.yaml")):
            pipe = (yaml.safe_load(path.read_text()) or {}).get("pipeline", {})
            table.add_row(path.stem, str(len(pipe.get("order", []))), pipe.get("description", ""))
    elif what == "models":
        for col in ("model", "provider", "name"):
            table.add_column(col)
        for path in sorted((resource_dir("conf") / "model").glob("*.yaml")):
            m = yaml.safe_load(path.read_text()) or {}
            table.add_row(path.stem, str(m.get("provider", "")), str(m.get("name", "")))
    else:
        lib = PromptLibrary([resource_dir("prompts")])
        for col in ("prompt", "variables"):
            table.add_column(col, overflow="fold")
        for name in lib.names():
            try:
                variables = ", ".join(sorted(lib.get(name).variables))
            except Exception as exc:  # noqa: BLE001 — show a broken template, keep listing
                variables = f"(error: {exc})"
            table.add_row(name, variables)
    out.print(table)
    return 0


def stage_yaml(kind: str) -> str:
    """conf/stage/<kind>.yaml: every param of a stage kind with its default and doc, for reference
    (kept in sync with the dataclasses by tests/unit/test_stage_conf.py)."""
    cls = STAGES.get(kind)
    lines = [f"# {kind}: {(cls.__doc__ or '').strip().splitlines()[0]}",
             "# Generated from the stage's Params dataclass: python -m selfalign.commands.listing",
             f"kind: {kind}"]
    for name, tp, default, text in describe_params(cls.Params):
        value = "???" if default == "(required)" else yaml.safe_dump(
            default, default_flow_style=True, width=10**6).strip().removesuffix("\n...")
        lines.append(f"{name}: {value}  # {tp}. {text}".rstrip())
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    out_dir = resource_dir("conf") / "stage"
    for kind, _ in STAGES.items():
        (out_dir / f"{kind}.yaml").write_text(stage_yaml(kind))
