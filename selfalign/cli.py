"""argv → sub-command (run / validate / list / preview). No pipeline logic lives here."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from selfalign import __version__
from selfalign.errors import SelfAlignError

USAGE = """usage: selfalign COMMAND [options] [key=value ...]

commands:
  run pipeline=NAME [overrides]        run a pipeline (Hydra: -m for a sweep, --config-dir DIR …)
  validate pipeline=NAME [overrides]   compose, build and check everything; no model is called
  preview pipeline=NAME [-k N] [...]   render the first N prompts of the first LLM stage
  list [pipelines|stages|prompts|models]
  --version

examples:
  selfalign run pipeline=wizardlm_aaa
  selfalign run pipeline=wizardlm_aaa model=test aaa.enabled=false
  selfalign run -m pipeline=wizardlm_aaa model=test temperature=0.2,0.8
"""


def _split_config_dirs(args: list[str]) -> tuple[list[str], list[str]]:
    """Pull --config-dir/-cd DIR out of args (Hydra's own flag, supported by every command)."""
    dirs, rest, it = [], [], iter(args)
    for a in it:
        if a in ("--config-dir", "-cd"):
            dirs.append(next(it, ""))
        elif a.startswith("--config-dir="):
            dirs.append(a.split("=", 1)[1])
        else:
            rest.append(a)
    return dirs, rest


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    console = Console(stderr=True)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] == "--version":
        print(f"selfalign {__version__}")
        return 0
    command, rest = args[0], args[1:]
    try:
        if command == "run":
            from selfalign.commands.run import run_command

            return run_command(rest)
        dirs, overrides = _split_config_dirs(rest)
        if command == "validate":
            from selfalign.commands.inspect import validate_command

            return validate_command(overrides, dirs)
        if command == "preview":
            from selfalign.commands.inspect import preview_command

            return preview_command(overrides, dirs)
        if command == "list":
            from selfalign.commands.listing import list_command

            return list_command(overrides, dirs)
    except SelfAlignError as exc:
        console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: finished stage outputs and cached responses are "
                      "kept; run the same command again to resume.")
        return 130
    console.print("[bold red]error:[/] " + escape(f"unknown command '{command}'.\n{USAGE}"))
    return 2


def entry() -> None:
    sys.exit(main())
