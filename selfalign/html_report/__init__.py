"""The HTML report: report.html in a run dir (written at the end of every run) or a sweep dir."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import jinja2

from selfalign import __version__
from selfalign.errors import InputError

log = logging.getLogger("selfalign")
REPORT = "report.html"
_TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    # autoescape everything: stage names, column names and model text are untrusted
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(n=fmt_int, f2=fmt_f2, usd=fmt_usd, secs=fmt_secs)
    return env


def fmt_int(v: Any) -> str:
    return "-" if v is None else f"{int(v):,}" if isinstance(v, (int, float)) else str(v)


def fmt_f2(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


def fmt_usd(v: Any) -> str:
    return "-" if v is None else "0" if not v else f"{float(v):.4f}"


def fmt_secs(v: Any) -> str:
    return "-" if v is None else f"{float(v):.2f}"


def _write(path: Path, html: str) -> Path:
    tmp = path.with_suffix(".html.tmp")  # temp + rename: a reader never sees half a page
    try:
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, no permission: say so, and leave no .tmp behind
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write the report ({exc.strerror or exc}).") from None
    return path


def check_output(out: str | Path) -> Path:
    """`-o FILE` must name a file in a folder that exists: checked before any page is built."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name, e.g. -o {path / REPORT}.")
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist; create it first.")
    return path


def write_run_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write report.html for a run dir; returns its path."""
    from selfalign.html_report.rundata import RunData
    from selfalign.html_report.runpage import run_context

    run_dir = Path(run_dir)
    html = (
        _env().get_template("run.html.j2").render(version=__version__, **run_context(RunData.load(run_dir)))
    )
    return _write(Path(out) if out else run_dir / REPORT, html)


def write_sweep_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write report.html for a sweep dir (its jobs are the subfolders with a manifest.json)."""
    from selfalign.html_report.sweeppage import sweep_context

    sweep_dir = Path(sweep_dir)
    page = sweep_context(sweep_dir, REPORT)
    html = _env().get_template("sweep.html.j2").render(version=__version__, **page)
    return _write(Path(out) if out else sweep_dir / REPORT, html)


def write_report(path: str | Path, out: str | Path | None = None) -> Path:
    """A run dir (manifest.json) or a sweep dir (multirun.yaml or sweep_summary.csv): write its
    report; `out` (-o) is checked first."""
    from selfalign.sweep_summary import is_sweep_dir

    p = Path(path)
    out = check_output(out) if out else None
    if (p / "manifest.json").is_file():
        return write_run_report(p, out)
    if is_sweep_dir(p):
        return write_sweep_report(p, out)
    raise InputError(
        f"{p}: neither a run dir (no manifest.json) nor a sweep dir (no multirun.yaml, which "
        "Hydra writes when a sweep starts, nor sweep_summary.csv). Give the folder that "
        "`selfalign run` printed, e.g. outputs/<pipeline>/<time>, or a sweep's "
        "multirun/<pipeline>/<time>."
    )


def try_write_run_report(run_dir: Path) -> Path | None:
    """At the end of a run: write the report, and never let a report problem change the run's
    outcome (the data and the manifest are written already)."""
    try:
        return write_run_report(run_dir)
    except Exception as exc:  # noqa: BLE001 — any failure here is logged, not raised
        log.warning(
            "could not write %s: %s: %s (rebuild it with `selfalign report %s`)",
            run_dir / REPORT,
            type(exc).__name__,
            exc,
            run_dir,
        )
        return None


def try_write_sweep_report(sweep_dir: Path) -> Path | None:
    """At the end of a sweep: like try_write_run_report, for the sweep dir."""
    try:
        return write_sweep_report(sweep_dir)
    except Exception as exc:  # noqa: BLE001 — the sweep's CSV and jobs are written already
        log.warning(
            "could not write %s: %s: %s (rebuild it with `selfalign report %s`)",
            sweep_dir / REPORT,
            type(exc).__name__,
            exc,
            sweep_dir,
        )
        return None
