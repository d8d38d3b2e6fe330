"""The sweep summary: one row per multirun job, read from the jobs' manifests, as a table for the
terminal, a CSV and Markdown file, and the sweep report's rows. Plain data, no Hydra: the Hydra
callback that writes it at the end of `run -m` is selfalign/sweep.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from selfalign.redact import redact

# what marks a sweep dir: Hydra writes multirun.yaml when a sweep starts, we write the summary
# at its end. A folder that merely holds run dirs (a shared temp folder) is not a sweep.
SWEEP_MARKS = ("multirun.yaml", "sweep_summary.csv")


def is_sweep_dir(path: Path) -> bool:
    return any((path / mark).is_file() for mark in SWEEP_MARKS)


def _manifest(job_dir: Path) -> dict[str, Any]:
    """A job's manifest; a job that left none (its process died) shows as "no manifest".
    Redacted again: a run dir written before redaction existed may hold a key."""
    path = job_dir / "manifest.json"
    if path.is_file():
        return redact(json.loads(path.read_text()))
    overrides = job_dir / ".hydra" / "overrides.yaml"
    listed = OmegaConf.to_container(OmegaConf.load(overrides)) if overrides.is_file() else []
    return {"status": "no manifest", "overrides": redact(listed)}


def summarize(sweep_dir: Path) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    jobs = [p for p in sweep_dir.iterdir() if (p / "manifest.json").is_file() or (p / ".hydra").is_dir()]
    for job_dir in sorted(jobs, key=lambda p: job_number(p.name)):
        m = _manifest(job_dir)
        stages = m.get("stages", [])
        totals = m.get("llm_totals", {})
        row = {
            "job": job_dir.name,
            "overrides": " ".join(m.get("overrides", [])),
            "status": m.get("status", "?"),
            "rows_in": stages[0].get("rows_out") if stages else None,
            "rows_out": m.get("rows"),
            "drops": sum(sum(s.get("drops", {}).values()) for s in stages),
            "rejected": m.get("rejected"),
            "tokens": totals.get("prompt_tokens", 0) + totals.get("completion_tokens", 0),
            "cost_usd": totals.get("cost_usd", 0.0),
            "wall_s": m.get("wall_s"),
        }
        row.update({f"mean_{k}": v for k, v in (m.get("score_means") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def job_number(name: str) -> int:
    return int(name) if name.isdigit() else 10**9


def split_overrides(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(the overrides every job shares, each job's own overrides: those that differ)."""
    per_job = [o.split() for o in df["overrides"].fillna("")] if "overrides" in df else []
    common = [o for o in per_job[0] if all(o in j for j in per_job)] if per_job else []
    return common, [" ".join(o for o in j if o not in common) for j in per_job]


def main_scores(columns: list[str]) -> list[str]:
    """The mean_* columns that are not a dimension of another (mean_x_score, not
    mean_x_score_quality): what a chart compares when a run has dozens of score columns."""
    means = [c for c in columns if c.startswith("mean_")]
    return [c for c in means if not any(c != p and c.startswith(p + "_") for p in means)]


def render(df: pd.DataFrame, console: Console) -> None:
    """A table that stays readable at 80 columns: the overrides that differ, rows, cost, time."""
    common, own = split_overrides(df)
    table = Table(title="sweep summary", box=box.SIMPLE_HEAD, pad_edge=False)
    widest = max((len(o) for mine in own for o in mine.split()), default=1)
    for col in ("job", "status", "overrides", "rows", "rejected", "tokens", "wall s"):
        # one override per line; only one longer than 40 characters folds
        table.add_column(
            col,
            justify="left" if col in ("status", "overrides") else "right",
            overflow="fold",
            min_width=min(40, widest) if col == "overrides" else None,
        )
    for rec, mine in zip(df.to_dict(orient="records"), own, strict=True):
        table.add_row(
            str(rec["job"]),
            str(rec["status"]),
            escape("\n".join(mine.split()) or "-"),
            _cell(rec.get("rows_out")),
            _cell(rec.get("rejected")),
            _cell(rec.get("tokens")),
            _cell(rec.get("wall_s"), "{:.1f}"),
        )
    console.print(table)
    if common:
        console.print("every job: " + escape(" ".join(common)), highlight=False)


def _cell(v: Any, fmt: str = "{}") -> str:
    if v is None or v != v:
        return "-"
    return fmt.format(int(v) if isinstance(v, float) and v.is_integer() and fmt == "{}" else v)


def to_markdown(df: pd.DataFrame) -> str:
    cells = [[("" if v is None or v != v else str(v)) for v in r] for r in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
    return "\n".join(lines) + "\n"
