"""Python API: validate or run a pipeline in-process. `run_config` is also the body of every
`selfalign run` job (commands/run.py), so the CLI and the API write the same run directory."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from selfalign import aio, io, rundir_lock
from selfalign.checkpoint import Stored
from selfalign.errors import EXIT_BUDGET, Interrupted, RunFailed, SelfAlignError
from selfalign.executors.local import execute
from selfalign.hydra_setup import compose_config
from selfalign.llm.session import close_all
from selfalign.outputs import prepare_run_dir, run_log, write_manifest, write_outputs
from selfalign.redact import redact
from selfalign.runner import Built, assess, build, check_endpoints

log = logging.getLogger("selfalign")


def check(cfg: DictConfig) -> Built:
    """Build every stage of a composed config and check it, with no run dir and no model call;
    raises ValidationFailed listing every problem."""
    return build(cfg, run_dir=None, show_progress=False)


def validate(overrides: list[str], config_dirs: list[str] | None = None) -> Built:
    """Compose and check; raises ValidationFailed listing every problem."""
    return check(compose_config(overrides, config_dirs))


def score_means(out: Stored) -> dict[str, float]:
    """Mean of every score-like column, for the manifest and the sweep summary's mean_* columns
    (a dataset left on disk is read chunk by chunk)."""
    sums: dict[str, list[float]] = {}
    for df in out.frames():
        for col in df.columns:
            if "score" in str(col).lower() or str(col).lower().startswith("composite"):
                vals = pd.to_numeric(df[col], errors="coerce").dropna()
                acc = sums.setdefault(str(col), [0.0, 0])
                acc[0], acc[1] = acc[0] + float(vals.sum()), acc[1] + len(vals)
    return {col: round(total / n, 4) for col, (total, n) in sums.items() if n}


def run_config(
    cfg: DictConfig,
    run_dir: Path,
    overrides: list[str],
    show_progress: bool = False,
    frame: bool = True,
    report: bool = True,
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """Given a composed config and a run dir: build, execute, write outputs; returns
    (final dataset, manifest). When the run fails or is degraded it still writes the manifest
    (status "failed", or "stopped" by the budget; the reason, every stage's stats; the sweep
    summary reads it) and raises the error with `.manifest` set. Model clients stay open: the
    caller closes them, so the jobs of one sweep share one embedded model server. Every run,
    failed or not, ends by writing report.html from what it left in the run dir (unless `report`
    is False). frame=False: return no dataset (a streamed run's stays on disk; the CLI needs none).
    The run holds the run dir's lock throughout (rundir_lock.py): another live run into the
    same dir raises RunDirLocked (exit 2) before anything is written."""
    with rundir_lock.holding(run_dir), _few_gc_pauses():
        try:
            out, manifest = _run_config(cfg, run_dir, overrides, show_progress)
            if not frame:
                return None, manifest
            return out.frame(), manifest
        finally:
            if report:  # False for a throw-away run (the estimate's dry run)
                from selfalign.html_report import try_write_run_report  # after the calls

                try_write_run_report(run_dir)


GC_THRESHOLD = (50_000, 20, 10)  # allocations between young collections (CPython's default: 700)


@contextlib.contextmanager
def _few_gc_pauses() -> Iterator[None]:
    """While a run goes: what exists already (modules, config, stages) is frozen out of the
    garbage collector, and young collections come less often. Each collection stops the event
    loop, and every slot whose answer arrives meanwhile waits: with CPython's defaults, a
    2,000-row 2-stage run spent 0.33 s in 420 collections (four full ones of ~45 ms each, over
    the ~150,000 objects that imports leave), with these 0.02 s. Restored after the run, for
    a program that calls the API."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _run_config(
    cfg: DictConfig, run_dir: Path, overrides: list[str], show_progress: bool
) -> tuple[Stored, dict[str, Any]]:
    meta: dict[str, Any] = {
        "pipeline": OmegaConf.select(cfg, "pipeline.name"),
        "overrides": list(overrides),
        "started": datetime.now(timezone.utc).isoformat(),
        "status": "running",
    }
    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    built: Built | None = None
    df: Stored | None = None
    with run_log(run_dir):
        try:
            built = prepare_run_dir(cfg, run_dir)
            built.ctx.show_progress = show_progress
            meta["attempt"] = built.attempt
            check_endpoints(built)
            if built.settings.executor == "ray":  # docs/execution.md, "Ray executor"
                from selfalign.executors.ray_executor import execute_ray

                df = aio.run(execute_ray(built, cfg))
            else:
                df = aio.run(execute(built))
            problems = assess(built, df)
            if problems:
                raise RunFailed("the run did not produce what was asked: " + "; ".join(problems))
        except SelfAlignError as exc:
            stopped = exc.exit_code == EXIT_BUDGET  # a budget stop is not a failure
            if stopped and built is not None:  # what was spent once the calls in flight settled
                exc.args = (built.ctx.llm.budget.message(),)
            meta.update(
                status="stopped" if stopped else "failed",
                error=str(exc),
                exit_code=exc.exit_code,
                wall_s=round(time.perf_counter() - start, 2),
            )
            log.error("%s", exc)
            if built is None:
                _write_bare_manifest(meta, run_dir)
            else:
                if df is not None:  # the run finished, but emptier than asked: keep its files
                    write_outputs(built, df, meta)
                rows = None if df is None else len(df)
                exc.manifest = write_manifest(built, meta, rows)  # type: ignore[attr-defined]
                if df is not None:
                    _write_card(built, run_dir)
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (aio.run has stopped every call)
            meta.update(status="interrupted", wall_s=round(time.perf_counter() - start, 2))
            log.warning("interrupted; re-run the same command to resume", extra={"file_only": True})
            if built is None:
                _write_bare_manifest(meta, run_dir)
            else:
                write_manifest(built, meta, None)
            raise Interrupted(getattr(exc, "signum", None), run_dir) from None
        meta.update(status="ok", wall_s=round(time.perf_counter() - start, 2), score_means=score_means(df))
        manifest = write_outputs(built, df, meta)
        _write_card(built, run_dir)
        log.info("done: %d rows in %s", len(df), run_dir)
        return df, manifest


def _write_bare_manifest(meta: dict[str, Any], run_dir: Path) -> None:
    """The manifest of a run stopped before it was built: its meta alone, redacted like every
    manifest (the overrides may carry a key)."""
    io.write_json(redact(meta), run_dir / "manifest.json")


def _write_card(built: Built, run_dir: Path) -> None:
    """README.md, the dataset card (selfalign/card.py); a card that cannot be written costs a
    warning, never the finished run."""
    from selfalign import card

    try:
        card.write(run_dir, built.stages)
    except Exception as exc:  # noqa: BLE001 — the data is written; the card is a summary of it
        log.warning("could not write the dataset card %s: %s", run_dir / card.CARD, exc)


def run(
    overrides: list[str],
    run_dir: str | Path,
    config_dirs: list[str] | None = None,
    show_progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Compose and run a pipeline into `run_dir`; returns (final dataset, manifest)."""
    cfg = compose_config(overrides, config_dirs)
    try:
        df, manifest = run_config(cfg, Path(run_dir), overrides, show_progress)
        assert df is not None
        return df, manifest
    finally:
        aio.run(close_all())
