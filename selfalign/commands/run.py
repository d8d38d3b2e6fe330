"""`selfalign run`: Hydra owns argv (overrides, -m sweeps, its own flags) and the run dir; each job
is `api.run_config`, the same function the Python API runs."""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from selfalign import aio, terminal
from selfalign.api import check, run_config
from selfalign.commands import split_config_dirs
from selfalign.errors import EXIT_RUN_FAILED, SelfAlignError
from selfalign.hydra_setup import (
    check_config_dirs,
    compose_config,
    conf_dir,
    normalize_overrides,
    searchpath_override,
    setup,
)
from selfalign.llm.session import close_all
from selfalign.parallel import check_launcher, job_setup, stop_shared
from selfalign.report import print_run_summary
from selfalign.sweep import failed_jobs

_FAILED: list[str] = []  # run dirs of failed sweep jobs, reported once the sweep ends


def _job(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    setup()  # a launcher's worker process imports this module afresh
    job_setup(hc)
    run_dir = Path(hc.runtime.output_dir)
    console = terminal.console(stderr=True)
    try:
        _, manifest = run_config(cfg, run_dir, list(hc.overrides.task), show_progress=True, frame=False)
    except SelfAlignError as exc:
        stages = (getattr(exc, "manifest", None) or {}).get("stages", [])
        if any(s.get("status") != "not run" for s in stages):  # show what it did get done
            print_run_summary(console, exc.manifest, str(run_dir))  # type: ignore[attr-defined]
        console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False)
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(exc.exit_code)
        _FAILED.append(run_dir.name)  # a sweep goes on with its other jobs (sweep.FAILED too)
        return
    print_run_summary(console, manifest, str(run_dir))


def _close() -> None:
    try:
        aio.run(close_all())
    except Exception:  # noqa: BLE001 — best effort at interpreter exit
        pass


def _beside_overrides(args: list[str], extra: list[str]) -> list[str]:
    """Insert `extra` overrides just before the user's first one: Hydra's argparse takes the
    overrides as one positional group and refuses a second group after a flag (`a=1 --cfg job b=2`)."""
    first = next((i for i, a in enumerate(args) if a[:1] != "-" and ("=" in a or a[:1] == "~")), len(args))
    return args[:first] + extra + args[first:]


def run_command(args: list[str]) -> int:
    setup()
    dirs, rest = split_config_dirs(args)
    check_config_dirs(dirs)
    check_launcher(rest, dirs)
    multirun = "-m" in rest or "--multirun" in rest
    if not multirun and not any(a.startswith("-") for a in rest):
        # fail before Hydra makes an output dir, with exit code 2 and every problem listed
        check(compose_config(rest, dirs))
    atexit.register(_close)  # after the last job: a sweep's jobs share the model clients
    # --config-dir becomes the same hydra.searchpath override that compose_config (validate,
    # preview, the API) uses, so every command sees the same configs, and several dirs work.
    sys.argv = ["selfalign"] + _beside_overrides(normalize_overrides(rest), searchpath_override(dirs))
    try:
        hydra.main(config_path=conf_dir(), config_name="config", version_base=None)(_job)()
    finally:
        stop_shared()  # a parallel sweep's model server, also when it failed or was interrupted
    failed = failed_jobs(_FAILED)
    if failed:
        Console(stderr=True).print(f"[bold red]{len(failed)} sweep job(s) failed:[/] " + ", ".join(failed))
        return EXIT_RUN_FAILED
    return 0
