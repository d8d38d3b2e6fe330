"""argv → sub-command (run / validate / preview / estimate / list / push / report). No pipeline
logic lives here."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from selfalign import __version__, terminal
from selfalign.errors import SelfAlignError

OVERRIDES = """\
overrides (Hydra syntax; any number, after the command):
  key=value                      set a value: temperature=0.2, model=test, n_rows=5
  pipeline.stages.NAME.PARAM=v   set a stage param (see `selfalign list stages KIND`)
  +key=value, ~key               add a key that is not in the config, delete one
  key=[a,b], key={k: v}          a list, a mapping (quote them for your shell)
  prompts.search_path=[DIR]      your prompt folders, searched before the shipped ones
  plugins=[MODULE]               your modules that register stages (on PYTHONPATH)"""

CONFIG_DIR = """\
  --config-dir DIR, -cd DIR      also look in DIR for configs: DIR/pipeline/NAME.yaml is
                                 pipeline=NAME, DIR/model/NAME.yaml is model=NAME (repeatable)
  -h, --help                     this help"""

EXIT_CHECK = "exit codes: 0 ok; 2 bad config or input (every problem listed, nothing run)"

USAGE = f"""\
usage: selfalign COMMAND [options] [key=value ...]

commands:
  run pipeline=NAME [overrides]        run a pipeline; -m for a sweep
  validate pipeline=NAME [overrides]   compose, build and check everything; no model is called
  preview pipeline=NAME [-k N] [...]   render the first N prompts of the first LLM stage
  estimate pipeline=NAME [--pilot K]   calls, tokens, $ and time of a run, before making it
  list [pipelines|stages [KIND]|prompts|models]
  push RUN_DIR REPO_ID [--private] [--views NAMES]   upload a run's views and card to the Hub
  report DIR                           (re)write report.html of a run dir or a sweep dir
  --version

Every command takes --config-dir DIR and key=value overrides; `selfalign COMMAND --help` says more.

examples:
  selfalign run pipeline=wizardlm_aaa
  selfalign run pipeline=wizardlm_aaa model=test aaa.enabled=false
  selfalign run -m pipeline=wizardlm_aaa model=test temperature=0.2,0.8
  selfalign validate --config-dir ./myconf pipeline=my_pipe

{EXIT_CHECK}; 3 the run failed or is degraded (see `selfalign run --help`)
"""

COMMAND_USAGE = {
    "run": f"""\
usage: selfalign run pipeline=NAME [-m] [--config-dir DIR] [overrides ...]

Check everything (bad config or input stops here, before any model call), run every stage and
write the run directory outputs/<pipeline>/<time>/ (choose it with hydra.run.dir=DIR). A run
into an existing run directory reuses the stage outputs that are still valid.

options:
  -m, --multirun                 a sweep: one job per combination of comma-separated values,
                                 e.g. -m model=local,test temperature=0.2,0.8; jobs go to
                                 multirun/<pipeline>/<time>/<job>/ (hydra.sweep.dir=DIR), then
                                 sweep_summary.csv and .md and report.html; N jobs at once:
                                 hydra/launcher=joblib hydra.launcher.n_jobs=N (docs/execution.md)
{CONFIG_DIR}
  Hydra's own flags work too: --cfg job (print the config), --info, --hydra-help

{OVERRIDES}

examples:
  selfalign run pipeline=wizardlm_aaa num_instructions=3 hydra.run.dir=out/exp1
  selfalign run -m pipeline=realign model=test temperature=0.2,0.8

exit codes: 0 ok (the dataset was produced within the failure limits); 2 bad config or input (found
before any model call; every problem listed); 3 the run failed or is degraded: an endpoint is
unreachable, a stage's failed calls exceeded its max_failure_rate, the dataset has 0 rows, or a
sweep job failed (the message says which and how to fix it; re-run into the same run dir to
retry); 4 stopped by the budget; 130 interrupted by Ctrl-C, 143 by SIGTERM (re-run the same
command to resume). One run at a time writes a run dir: a second run into a live one exits 2.
""",
    "validate": f"""\
usage: selfalign validate pipeline=NAME [--config-dir DIR] [overrides ...]

Print the composed config (any key in it shown as ***), then build every stage, load every
prompt, read the input file's header and check that every column a stage needs is produced
before it. No model is called and nothing is written. Takes the same overrides as `selfalign run`.

options:
{CONFIG_DIR}

{OVERRIDES}

example:
  selfalign validate pipeline=backtranslation curation.threshold=4

{EXIT_CHECK}
""",
    "preview": f"""\
usage: selfalign preview pipeline=NAME [-k N] [--config-dir DIR] [overrides ...]

Render the first N requests of the first LLM stage for real input rows and print them; nothing
is sent. The stages before it (load, filters) run for real.

options:
  -k N                           how many requests to render (default 3)
{CONFIG_DIR}

{OVERRIDES}

example:
  selfalign preview pipeline=wizardlm_aaa -k 2

{EXIT_CHECK}
""",
    "estimate": f"""\
usage: selfalign estimate pipeline=NAME [--pilot K] [--out FILE] [--config-dir DIR] [overrides ...]

Count the calls of `selfalign run` with the same overrides exactly (a dry run on the real input
with the offline test model standing in for every model), their prompt tokens (litellm's offline
tokenizer for the model you named) and completion tokens (worst case: max_tokens), and price
them with litellm's price map (or model.price). Prints a table per stage and writes it as JSON
to FILE; the last line printed is that file's path.
No key is needed and nothing is sent, unless --pilot K.

options:
  --pilot K                      send the first K requests of each stage to the real model to
                                 measure completion tokens and latency (cached: the run reuses them)
  --out FILE                     where to write the JSON (default estimate.json)
{CONFIG_DIR}

example:
  selfalign estimate pipeline=wizardlm_aaa model=openai n_rows=1000

{EXIT_CHECK}
""",
    "list": f"""\
usage: selfalign list [pipelines|stages [KIND]|prompts|models] [--config-dir DIR] [overrides ...]

  pipelines        what pipeline=NAME can select: shipped, and DIR/pipeline/*.yaml
  stages [KIND]    every stage kind (or just KIND) with its params: type, default, doc;
                   add plugins=[MODULE] to list your module's stages too
  prompts          every prompt and its variables; add prompts.search_path=[DIR] for yours
  models           what model=NAME can select: shipped, and DIR/model/*.yaml
The "from" column says which folder a name comes from when several define it.

options:
{CONFIG_DIR}

examples:
  selfalign list stages generate_text
  PYTHONPATH=. selfalign list stages plugins=[my_stages]
  selfalign list pipelines --config-dir ./myconf

{EXIT_CHECK}
""",
    "report": """\
usage: selfalign report DIR [-o FILE]

Write DIR/report.html: one self-contained page (no network needed) that shows a run's funnel of
rows through the stages with the drop reasons, per stage the model calls, cache hits, retries,
failures, tokens, cost, latency and time, a histogram of every score column, sample rows kept
and dropped with the raw model text, and the config and prompts. Every run writes it at its end;
this rebuilds it. DIR may also be a sweep dir (multirun/<pipeline>/<time>, the one holding
Hydra's multirun.yaml or sweep_summary.csv): one row per job, charts comparing the jobs, links to
each job's report.

options:
  -o, --output FILE              write the page to FILE instead of DIR/report.html

examples:
  selfalign report outputs/wizardlm_aaa/2025-01-01_12-00-00
  selfalign report multirun/realign/2025-01-01_12-00-00

exit codes: 0 written; 2 DIR is neither a run dir nor a sweep dir, or FILE is a folder or in a
folder that does not exist (nothing is written)
""",
}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    console = terminal.console(stderr=True)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if args[0] == "help" and args[1:2] == ["push"]:
        return _push(["--help"], console)
    if args[0] == "help":  # `selfalign help [COMMAND]`
        print(COMMAND_USAGE.get(args[1], USAGE) if len(args) > 1 else USAGE)
        return 0
    if args[0] == "--version":
        print(f"selfalign {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command == "push":  # its own argv (paths, flags), not Hydra overrides
        return _push(rest, console)
    if command in COMMAND_USAGE and ("-h" in rest or "--help" in rest):
        # before Hydra sees it: its --help composes the config first and fails without pipeline=
        print(COMMAND_USAGE[command])
        return 0
    try:
        if command == "run":
            from selfalign.commands.run import run_command

            return run_command(rest)
        from selfalign.commands import split_config_dirs

        dirs, overrides = split_config_dirs(rest)
        if command == "validate":
            from selfalign.commands.inspect import validate_command

            return validate_command(overrides, dirs)
        if command == "preview":
            from selfalign.commands.inspect import preview_command

            return preview_command(overrides, dirs)
        if command == "estimate":
            from selfalign.commands.estimate import estimate_command

            return estimate_command(overrides, dirs)
        if command == "list":
            from selfalign.commands.listing import list_command

            return list_command(overrides, dirs)
        if command == "report":
            from selfalign.commands.report import report_command

            return report_command(rest)
    except SelfAlignError as exc:
        terminal.print_error(console, exc)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        return _interrupted(exc, command, rest)
    from selfalign.registry import did_you_mean

    hint = did_you_mean(command, [*COMMAND_USAGE, "push"])
    console.print("[bold red]error:[/] " + escape(f"unknown command '{command}'.{hint}\n{USAGE}"))
    return 2


def _interrupted(exc: KeyboardInterrupt, command: str, args: list[str]) -> int:
    """Ctrl-C or SIGTERM: one line, exit 130 (SIGTERM: 143). What a run finished (stage outputs,
    cached replies, the budget) is kept and its manifest says "interrupted" (api.run_config).
    Plain print: rich would wrap the line at 80 columns when stderr is not a terminal."""
    from selfalign.errors import EXIT_INTERRUPTED

    run_dir = getattr(exc, "run_dir", None)
    if command != "run":  # e.g. estimate's dry run: its run dir is a temporary one
        line = "interrupted"
    elif run_dir is None:  # stopped before a run dir was chosen
        line = "interrupted; re-run the same command to resume"
    else:
        line = _resume_line(Path(run_dir), args)
    print(line, file=sys.stderr, flush=True)
    return getattr(exc, "exit_code", EXIT_INTERRUPTED)


def _resume_line(run_dir: Path, args: list[str]) -> str:
    """Name the run dir, or the override that sends the re-run into it where the command has
    none: the default dir has the time in its name, so the same command would start afresh."""
    sweep = "-m" in args or "--multirun" in args
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    if any(a.lstrip("+").startswith(key + "=") for a in args):
        return f"interrupted; re-run the same command to resume (run dir {run_dir})"
    return f"interrupted; re-run the same command with {key}={run_dir.parent if sweep else run_dir} to resume"


def _push(args: list[str], console: Console) -> int:
    from selfalign.commands.push import push_command

    try:
        return push_command(args)
    except SelfAlignError as exc:
        terminal.print_error(console, exc)
        return exc.exit_code


def entry() -> None:
    sys.exit(main())
