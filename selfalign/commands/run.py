"""`selfalign run`: Hydra owns argv (overrides, -m sweeps, --config-dir); we own the job."""

from __future__ import annotations

import atexit
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape

from selfalign import aio, io
from selfalign.errors import SelfAlignError
from selfalign.hydra_setup import compose_config, conf_dir, normalize_overrides, setup
from selfalign.llm.session import close_all
from selfalign.report import print_run_summary
from selfalign.runner import build, execute, prepare_run_dir, write_outputs

_FAILED: list[str] = []


def _plain_overrides(args: list[str]) -> tuple[list[str], list[str]] | None:
    """(overrides, config dirs) when args are plain key=value (+ --config-dir), else None."""
    from selfalign.cli import _split_config_dirs

    dirs, rest = _split_config_dirs(args)
    return None if any(a.startswith("-") for a in rest) else (rest, dirs)


def score_means(df: pd.DataFrame) -> dict[str, float]:
    out = {}
    for col in df.columns:
        if "score" in str(col).lower() or str(col).lower().startswith("composite"):
            vals = pd.to_numeric(df[col], errors="coerce")
            if vals.notna().any():
                out[str(col)] = round(float(vals.mean()), 4)
    return out


def _job(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    console = Console(stderr=True)
    meta: dict[str, Any] = {"pipeline": cfg.get("pipeline", {}).get("name"),
                            "overrides": list(hc.overrides.task),
                            "started": datetime.now(timezone.utc).isoformat(), "status": "running"}
    start = time.perf_counter()
    try:
        built = prepare_run_dir(cfg, run_dir)
        df = aio.run(execute(built))
        meta.update(status="ok", wall_s=round(time.perf_counter() - start, 2),
                    score_means=score_means(df))
        print_run_summary(console, write_outputs(built, df, meta), str(run_dir))
    except SelfAlignError as exc:
        meta.update(status="failed", error=str(exc), wall_s=round(time.perf_counter() - start, 2))
        run_dir.mkdir(parents=True, exist_ok=True)
        io.write_json(meta, run_dir / "manifest.json")
        console.print("[bold red]error:[/] " + escape(str(exc)), highlight=False)
        if not multirun:
            sys.exit(exc.exit_code)
        _FAILED.append(run_dir.name)


def _close() -> None:
    try:
        aio.run(close_all())
    except Exception:  # noqa: BLE001 — best effort at interpreter exit
        pass


def run_command(args: list[str]) -> int:
    setup()
    multirun = "-m" in args or "--multirun" in args
    plain = _plain_overrides(args)
    if not multirun and plain is not None:
        # fail before Hydra makes an output dir, with exit code 2 and every problem listed
        build(compose_config(*plain), run_dir=None, show_progress=False)
    atexit.register(_close)
    sys.argv = ["selfalign"] + normalize_overrides(args)
    hydra.main(config_path=conf_dir(), config_name="config", version_base=None)(_job)()
    if _FAILED:
        Console(stderr=True).print(f"[bold red]{len(_FAILED)} sweep job(s) failed:[/] "
                                   + ", ".join(_FAILED))
        return 1
    return 0
