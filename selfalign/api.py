"""Python API: run or validate a pipeline in-process, without Hydra's command-line machinery."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from selfalign import aio
from selfalign.hydra_setup import compose_config
from selfalign.llm.session import close_all
from selfalign.runner import Built, build, execute, prepare_run_dir, write_outputs


def validate(overrides: list[str], config_dirs: list[str] | None = None) -> Built:
    """Compose and check; raises ValidationFailed listing every problem."""
    return build(compose_config(overrides, config_dirs), run_dir=None, show_progress=False)


def run(overrides: list[str], run_dir: str | Path, config_dirs: list[str] | None = None,
        show_progress: bool = False) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run a pipeline into `run_dir`; returns (final dataset, manifest)."""
    from selfalign.commands.run import score_means

    cfg = compose_config(overrides, config_dirs)
    run_dir = Path(run_dir)
    start = time.perf_counter()
    built = prepare_run_dir(cfg, run_dir)
    built.ctx.show_progress = show_progress
    try:
        df = aio.run(execute(built))
    finally:
        aio.run(close_all())
    meta = {"pipeline": cfg.pipeline.name, "overrides": overrides, "status": "ok",
            "wall_s": round(time.perf_counter() - start, 2), "score_means": score_means(df)}
    return df, write_outputs(built, df, meta)
