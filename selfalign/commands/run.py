"""`selfalign run`: Hydra owns argv (overrides, -m sweeps, its own flags) and the run dir; each job
is `api.run_config`, the same function the Python API runs."""

from __future__ import annotations

import atexit
import signal
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console

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
from selfalign.redact import RedactedStream, redact_yaml_file
from selfalign.report import print_run_summary
from selfalign.rundir_lock import acquire
from selfalign.sweep import failed_jobs

_PRINTING_FLAGS = {"--cfg", "-c", "--info", "-i"}  # Hydra's flags that print the config
_FAILED: list[str] = []  # run dirs of failed sweep jobs, reported once the sweep ends


def _job(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    _redact_hydra_files(hc, run_dir)  # first: whatever happens next, no key stays on disk
    setup()  # a launcher's worker process imports this module afresh
    job_setup(hc)
    console = terminal.console(stderr=True)
    try:
        _, manifest = run_config(cfg, run_dir, list(hc.overrides.task), show_progress=True, frame=False)
    except SelfAlignError as exc:
        stages = (getattr(exc, "manifest", None) or {}).get("stages", [])
        if any(s.get("status") != "not run" for s in stages):  # show what it did get done
            print_run_summary(console, exc.manifest, str(run_dir))  # type: ignore[attr-defined]
        terminal.print_error(console, exc)
        if hc.mode != RunMode.MULTIRUN:
            sys.exit(exc.exit_code)
        _FAILED.append(run_dir.name)  # a sweep goes on with its other jobs (sweep.FAILED too)
        return
    print_run_summary(console, manifest, str(run_dir))


def _redact_hydra_files(hc: DictConfig, run_dir: Path) -> None:
    """Hydra saved the job's config, its own config and the overrides (.hydra/*.yaml; a sweep
    also multirun.yaml) just before calling the job, with any key given on the command line:
    rewrite them redacted before the job does anything else."""
    if hc.output_subdir is not None:
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            redact_yaml_file(run_dir / hc.output_subdir / name)
    if hc.mode == RunMode.MULTIRUN and hc.job.num == 0:  # one file per sweep, written before any job
        redact_yaml_file(Path(hc.sweep.dir) / "multirun.yaml")


class RunDirLock(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.run_dir_lock, listed first): lock the
    run dir, or a sweep's dir, before Hydra writes .hydra/ into it (selfalign/rundir_lock.py).
    The dir is resolved here and written back, so the job runs in exactly the dir that was
    locked (a ${now:} in it is not resolved twice). Each job then locks its own dir again
    (api.run_config), which a sweep's jobs need. Held until the process ends."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _lock(config.hydra.run)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _lock(config.hydra.sweep)


def _lock(node: DictConfig) -> None:
    try:
        run_dir = str(node.dir)
    except OmegaConfBaseException:  # an interpolation Hydra fills in only later: the job locks it
        return
    with read_write(node), open_dict(node):
        node.dir = run_dir
    try:
        acquire(Path(run_dir))
    except SelfAlignError as exc:  # Hydra would report a raised error as its own (exit 1)
        terminal.print_error(terminal.console(stderr=True), exc)
        sys.exit(exc.exit_code)


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
    signal.signal(signal.SIGTERM, aio.raise_interrupted)  # ends the run like Ctrl-C (exit 143)
    # --config-dir becomes the same hydra.searchpath override that compose_config (validate,
    # preview, the API) uses, so every command sees the same configs, and several dirs work.
    sys.argv = ["selfalign"] + _beside_overrides(normalize_overrides(rest), searchpath_override(dirs))
    stdout = sys.stdout
    if any(a in _PRINTING_FLAGS for a in rest):
        sys.stdout = RedactedStream(stdout)  # Hydra prints the config itself: redact it too
    try:
        hydra.main(config_path=conf_dir(), config_name="config", version_base=None)(_job)()
    finally:
        sys.stdout = stdout
        stop_shared()  # a parallel sweep's model server, also when it failed or was interrupted
    failed = failed_jobs(_FAILED)
    if failed:
        Console(stderr=True).print(f"[bold red]{len(failed)} sweep job(s) failed:[/] " + ", ".join(failed))
        return EXIT_RUN_FAILED
    return 0
