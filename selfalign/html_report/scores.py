"""Score columns of a run: which stage wrote each one, its values, and before/after pairs of the
stages that refine (a `<x>_pre_<tag>_score…` column beside its `<x>_<tag>_score…`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from selfalign.html_report.rundata import RunData


def is_score_name(name: str) -> bool:
    low = name.lower()
    return ("score" in low or low.startswith("composite") or low.endswith("similarity")) and not (
        low.endswith("_imputed")
    )


def numeric(series: pd.Series) -> pd.Series | None:
    """The column's numbers (NaN dropped), or None when it is not a numeric column."""
    if pd.api.types.is_bool_dtype(series):
        return None
    vals = pd.to_numeric(series, errors="coerce").dropna()
    if vals.empty or (series.notna().sum() and len(vals) < series.notna().sum() / 2):
        return None  # mostly text: a reasoning column whose name says "score"
    return vals.astype(float)


@dataclass
class ScoreGroup:
    """The score columns one stage wrote, with their values at that stage."""

    stage: str
    rows: int
    columns: dict[str, pd.Series] = field(default_factory=dict)
    final: dict[str, pd.Series] = field(default_factory=dict)  # the same columns in the dataset
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (before, after) of a refine


def score_groups(data: RunData) -> list[ScoreGroup]:
    groups, seen = [], set()
    for i, stage in enumerate(data.stages):
        if stage.get("status") == "not run":
            continue
        df = data.frame(i)
        new = [c for c in df.columns if c not in seen and is_score_name(str(c))]
        seen |= set(df.columns)
        cols = {str(c): v for c in new if (v := numeric(df[c])) is not None}
        if not cols:
            continue
        group = ScoreGroup(stage["name"], len(df), cols)
        group.pairs = [
            (c, after) for c in cols if "_pre_" in c and (after := c.replace("_pre_", "_", 1)) in cols
        ]
        if len(data.dataset) != len(df):
            for c in cols:
                if c in data.dataset.columns and (v := numeric(data.dataset[c])) is not None:
                    group.final[c] = v
        groups.append(group)
    return groups


def paired(group: ScoreGroup) -> set[str]:
    return {c for pair in group.pairs for c in pair}


def summary(values: pd.Series) -> dict[str, float | int]:
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def refine_rows(group: ScoreGroup, frame: pd.DataFrame) -> list[dict[str, object]]:
    """Per (before, after) pair: means, the change, and how many rows went up or down."""
    out = []
    for before, after in group.pairs:
        b = pd.to_numeric(frame[before], errors="coerce")
        a = pd.to_numeric(frame[after], errors="coerce")
        both = b.notna() & a.notna()
        out.append(
            {
                "before": before,
                "after": after,
                "n": int(both.sum()),
                "mean_before": float(b[both].mean()) if both.any() else None,
                "mean_after": float(a[both].mean()) if both.any() else None,
                "up": int((a[both] > b[both]).sum()),
                "down": int((a[both] < b[both]).sum()),
            }
        )
    return out


_SCALES = (1.0, 5.0, 10.0, 100.0, 1000.0)


def by_scale(columns: dict[str, pd.Series]) -> list[list[str]]:
    """Columns grouped so that each chart shares one x scale (0–1, 1–5, 0–100 …)."""
    buckets: dict[float, list[str]] = {}
    for name, vals in columns.items():
        top = float(vals.abs().max()) if len(vals) else 0.0
        scale = next((s for s in _SCALES if top <= s), float("inf"))
        buckets.setdefault(scale, []).append(name)
    return [buckets[k] for k in sorted(buckets)]
