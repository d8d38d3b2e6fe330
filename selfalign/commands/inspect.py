"""`selfalign validate` and `selfalign preview`: everything short of calling a model."""

from __future__ import annotations

import argparse

import pandas as pd
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from selfalign import aio, terminal
from selfalign.api import check
from selfalign.commands import reject_flags
from selfalign.hydra_setup import compose_config
from selfalign.redact import config_yaml, redact_text
from selfalign.runner import check_endpoints


def validate_command(overrides: list[str], config_dirs: list[str]) -> int:
    reject_flags("validate", overrides)
    cfg = compose_config(overrides, config_dirs)
    out = terminal.console()
    print_yaml(out, config_yaml(cfg, resolve=False))  # never a key on screen
    built = check(cfg)  # raises ValidationFailed (exit 2)
    table = Table(title=f"pipeline {cfg.pipeline.name}: {len(built.stages)} stages")
    for col in ("#", "stage", "kind", "LLM", "columns after"):
        table.add_column(col)
    for i, (stage, cols) in enumerate(zip(built.stages, built.columns, strict=True)):
        table.add_row(
            str(i), stage.name, stage.kind, "yes" if stage.uses_llm else "", ", ".join(sorted(cols))
        )
    out.print(table)
    check_endpoints(built)  # raises PreflightFailed (exit 3)
    out.print("[green]OK[/]: config, stages, prompts, models, input columns and model endpoints check out.")
    return 0


def print_yaml(out: Console, text: str) -> None:
    """Coloured on a terminal; piped, the YAML exactly as OmegaConf wrote it (it parses)."""
    if out.is_terminal:
        out.print(Syntax(text, "yaml", theme="ansi_dark"))
    else:
        out.file.write(text)


def preview_command(args: list[str], config_dirs: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="selfalign preview", add_help=False)
    parser.add_argument("-k", type=int, default=3)
    known, overrides = parser.parse_known_args(args)
    reject_flags("preview", overrides)
    built = check(compose_config(overrides, config_dirs))
    out = terminal.console()
    df = pd.DataFrame()
    for stage in built.stages:
        if stage.uses_llm:
            shown = stage.preview(df, known.k)
            out.print(f"[bold]{stage.name}[/] ({stage.kind}): first {len(shown)} request(s), not sent")
            for i, msgs in enumerate(shown):
                for m in msgs:
                    out.print(
                        # piped: a box as wide as the text, not one 100,000 columns wide
                        Panel(
                            redact_text(m["content"]),  # a key in a stage's vars stays off screen
                            title=f"row {i} · {m['role']}",
                            title_align="left",
                            expand=out.is_terminal,
                        ),
                        markup=False,
                    )
            return 0
        df = aio.run(stage.run(df))  # non-LLM stages (load, filters) run for real
    out.print("this pipeline has no LLM stage")
    return 0
