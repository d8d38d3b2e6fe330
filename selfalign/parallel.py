"""Parallel sweeps: `selfalign run -m … hydra/launcher=joblib` (docs/execution.md).

Hydra's joblib launcher runs each job in a worker process. Two things then need the parent:
- the embedded model: the `SharedModels` callback (conf/config.yaml) starts one llama.cpp server per
  distinct server config of the sweep's jobs before they launch, and stops it when the sweep ends
  (llm/shared.py says how the jobs find it);
- the outcome: a job's own bookkeeping stays in its worker, so the sweep summary (sweep.py), which
  runs in the parent and reads every job's manifest, is what says which jobs failed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from selfalign.errors import SelfAlignError

if TYPE_CHECKING:  # imported where used: every `selfalign run` instantiates the callback
    from selfalign.llm.config import ModelConfig
    from selfalign.llm.local import LocalServer

log = logging.getLogger("selfalign")
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
# launchers whose jobs run on this machine, in processes started after the sweep starts: they
# inherit the environment, and a server on 127.0.0.1 is theirs to reach (not so on a cluster)
SAME_MACHINE = ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",)
_SERVERS: list[LocalServer] = []  # the shared servers this process started


def is_parallel(hydra_cfg: Any) -> bool:
    """Whether jobs run outside this process (any launcher but Hydra's basic one)."""
    return (OmegaConf.select(hydra_cfg, "launcher._target_") or BASIC) != BASIC


def job_configs(config: DictConfig) -> list[DictConfig]:
    """Every job's config, composed as the launcher will compose it: the comma lists of the
    command line expanded the way Hydra's basic sweeper expands them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    loader = GlobalHydra.instance().hydra.config_loader  # type: ignore[union-attr]
    [batch] = BasicSweeper.split_arguments(overrides, None)
    return [loader.load_sweep_config(config, list(job)) for job in batch]


def local_models(configs: list[DictConfig]) -> list[ModelConfig]:
    """The provider=local model configs of the jobs; a job with a bad model config is skipped
    here (the job itself reports it, exit 2)."""
    from selfalign.settings import model_settings

    out: list[ModelConfig] = []
    for cfg in configs:
        try:
            out += [m for m in model_settings(cfg).values() if m.provider == "local"]
        except (SelfAlignError, OmegaConfBaseException):
            continue
    return out


class SharedModels(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.shared_models)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from selfalign.llm import shared

        if OmegaConf.select(config.hydra, "launcher._target_") not in SAME_MACHINE:
            return  # the basic launcher's jobs run in this process and share its clients already
        try:
            models = local_models(job_configs(config))
        except HydraException as exc:  # e.g. a sweeper with range/interval sweeps
            log.warning("parallel sweep: no shared model server (%s); each job starts its own", exc)
            return
        if not models:
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        try:
            _SERVERS.extend(shared.start(models, sweep_dir))
        except SelfAlignError as exc:  # e.g. the weights are not installed: every job says so
            log.warning("parallel sweep: the shared model server did not start: %s", exc)
            return
        log.info("parallel sweep: %d shared model server(s), logs in %s", len(_SERVERS), sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        stop_shared()


def stop_shared() -> None:
    """Stop the shared servers (the sweep ended, failed or was interrupted); idempotent."""
    if _SERVERS:
        from selfalign.llm import shared

        shared.stop(_SERVERS)


def job_setup(hydra_cfg: Any) -> None:
    """In a parallel job: no progress bars (several processes redrawing one terminal garble it),
    the plain progress lines instead, and every log line on the terminal prefixed with the job
    number. run.log in the job's dir is written by its own handler and keeps its format."""
    if not is_parallel(hydra_cfg) or hydra_cfg.mode != RunMode.MULTIRUN:
        return  # a single run ignores the launcher: it runs here, with its progress bars
    os.environ["TTY_COMPATIBLE"] = "0"  # rich: not a terminal → progress lines, no redraws
    prefix = logging.Formatter(f"[job {hydra_cfg.job.num}] %(message)s")
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setFormatter(prefix)


RAY_HINT = (
    " hydra-ray-launcher 1.2.2 (the latest) needs cloudpickle<3, and joblib 1.6, which selfalign's"
    " dependencies pin, needs cloudpickle>=3: the two cannot be installed together. On a Ray"
    " cluster, run the sweep on the head node with hydra/launcher=joblib instead."
)


def check_launcher(args: list[str], config_dirs: list[str]) -> None:
    """`hydra/launcher=NAME` names an installed launcher (or one in a --config-dir); else a
    ConfigError that says how to get it, before Hydra makes any output dir."""
    chosen = [a.split("=", 1)[1] for a in args if a.startswith("hydra/launcher=")]
    if not chosen or any(
        (Path(d) / "hydra" / "launcher" / f"{chosen[-1]}.yaml").is_file() for d in config_dirs
    ):
        return
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from selfalign.errors import ConfigError
    from selfalign.hydra_setup import conf_dir

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        options = GlobalHydra.instance().config_loader().get_group_options("hydra/launcher")  # type: ignore[union-attr]
    if chosen[-1] in options:
        return
    hint = {"joblib": " Install it: pip install 'selfalign[parallel]'.", "ray": RAY_HINT}.get(chosen[-1], "")
    raise ConfigError(
        f"hydra/launcher={chosen[-1]}: no such launcher (installed: {', '.join(sorted(options))}).{hint} "
        "See docs/execution.md, section Parallel sweeps."
    )
