"""The sweep report's content: one row per job with its overrides and figures, charts comparing
the jobs, links to each job's own report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from selfalign.html_report.charts import Charts
from selfalign.sweep_summary import main_scores, split_overrides, summarize

METRICS = (
    ("rows_out", "rows out"),
    ("tokens", "tokens"),
    ("cost_usd", "cost $"),
    ("wall_s", "wall time (s)"),
)


def sweep_context(sweep_dir: Path, report: str) -> dict[str, Any]:
    """The page's content; `report` is the file name of each job's own report (its link)."""
    df = summarize(sweep_dir)
    common, own = split_overrides(df) if not df.empty else ([], [])
    means = [c for c in df.columns if c.startswith("mean_")]
    main = main_scores(means)
    jobs = []
    for rec, mine in zip(df.to_dict(orient="records"), own, strict=True):
        link = f"{rec['job']}/{report}"
        jobs.append({"r": _clean(rec), "own": mine, "link": link if (sweep_dir / link).is_file() else None})
    labels = [f"job {j['r']['job']}" for j in jobs]  # the table beside says what each job set
    return {
        "sweep_dir": str(sweep_dir),
        "jobs": jobs,
        "common": common,
        "main": main,
        "means": means,
        "status_counts": df["status"].value_counts().to_dict() if len(df) else {},
        "chart": _chart(df, labels, main) if len(df) else None,
    }


def _clean(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in rec.items()}


def _chart(df: pd.DataFrame, labels: list[str], main: list[str]) -> str:
    panels = [(title, labels, _values(df, col)) for col, title in METRICS if col in df]
    panels += [(col.removeprefix("mean_"), labels, _values(df, col)) for col in main]
    # a figure that is 0 for every job (the cost on a local model) says nothing as a chart
    panels = [p for p in panels if any(p[2])] or panels[:1]
    return Charts().panels(panels, fmt="{:.4g}")


def _values(df: pd.DataFrame, col: str) -> list[float]:
    return [float(v) for v in pd.to_numeric(df[col], errors="coerce").fillna(0)]
