"""The Hydra callback that writes the sweep summary (selfalign/sweep_summary.py) and the sweep
report at the end of `run -m`, and keeps which jobs failed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from selfalign import terminal
from selfalign.sweep_summary import job_number, render, summarize, to_markdown

log = logging.getLogger("selfalign")
# the jobs of the last sweep whose status is not ok: read from the manifests in this (the
# parent) process, so a job that ran in a worker process of a parallel launcher counts too
FAILED: list[str] = []


def failed_jobs(also: list[str]) -> list[str]:
    """The failed jobs of the last sweep, with `also` (those this process saw fail itself)."""
    return sorted(set(FAILED) | set(also), key=job_number)


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.sweep_summary)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        FAILED.clear()  # an earlier sweep in this process is not this one

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from selfalign.html_report import try_write_sweep_report  # the report loads at the end

        sweep_dir = Path(config.hydra.sweep.dir)
        df = summarize(sweep_dir) if sweep_dir.is_dir() else pd.DataFrame()
        FAILED[:] = [] if df.empty else [str(j) for j, s in zip(df.job, df.status, strict=True) if s != "ok"]
        if df.empty:
            return
        df.to_csv(sweep_dir / "sweep_summary.csv", index=False)
        (sweep_dir / "sweep_summary.md").write_text(to_markdown(df))
        report = try_write_sweep_report(sweep_dir)
        console = terminal.console()
        render(df, console)
        console.print(
            f"sweep summary written to {sweep_dir / 'sweep_summary.csv'}"
            + (f"; report: {report}" if report else ""),
            highlight=False,
        )
