"""`select_best`: per group, keep the argmax of a score, the longest text, or rows above a threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from selfalign.config import doc
from selfalign.stages.base import PARENT_ID, ROW_ID, Stage, register_stage
from selfalign.text import count_tokens


@dataclass
class SelectParams:
    mode: Literal["argmax", "threshold", "longest"] = doc("argmax | threshold | longest")
    column: str = doc("score column (argmax, threshold) or text column (longest)")
    group_by: str = doc("rows compared together (fan-out rows share parent_id)", PARENT_ID)
    threshold: float | None = doc("threshold mode: keep rows with column >= threshold", None)
    length: Literal["chars", "words", "tokens"] = doc("longest: how length is measured", "tokens")
    collapse: bool = doc("the kept row takes its group's id (row_id = parent_id)", True)

    def __post_init__(self) -> None:
        if self.mode == "threshold" and self.threshold is None:
            raise ValueError("mode 'threshold' needs `threshold`")


@register_stage
class SelectBest(Stage):
    """Best-of-n per group (ties: the first sample), longest-of-n, or a score threshold."""

    kind = "select_best"
    row_local = True
    Params = SelectParams

    def is_row_local(self) -> bool:
        # fan-out rows of one input row (one parent_id) stay in one chunk; other groups may not
        p: SelectParams = self.params
        return p.mode == "threshold" or p.group_by == PARENT_ID

    def reads(self) -> set[str]:
        p: SelectParams = self.params
        # no parent_id (a stage with n=1 does not fan out): every row is its own group
        grouped = p.mode != "threshold" and p.group_by != PARENT_ID
        return {p.column} | ({p.group_by} if grouped else set())

    def removes(self) -> set[str]:
        p: SelectParams = self.params
        return {PARENT_ID, "sample"} if p.mode != "threshold" and p.collapse else set()

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: SelectParams = self.params
        if df.empty:
            return df
        if p.mode != "threshold" and p.group_by == PARENT_ID and PARENT_ID not in df.columns:
            return df  # best of one: nothing to choose
        if p.mode == "threshold":
            score = pd.to_numeric(df[p.column], errors="coerce")
            keep = score >= p.threshold
            self.ctx.stats.drop(self.name, f"below_threshold:{p.column}<{p.threshold:g}", int((~keep).sum()))
            return df[keep].reset_index(drop=True)
        if p.mode == "longest":
            key = (
                df[p.column]
                .fillna("")
                .astype(str)
                .map({"chars": len, "words": lambda s: len(s.split()), "tokens": count_tokens}[p.length])
            )
        else:
            key = pd.to_numeric(df[p.column], errors="coerce").fillna(float("-inf"))
        # stable: among equal keys the earliest row (lowest sample index) wins
        order = key.reset_index(drop=True).sort_values(ascending=False, kind="stable").index
        ranked = df.reset_index(drop=True).loc[order]
        best = ranked.drop_duplicates(subset=[p.group_by], keep="first").sort_index()
        self.ctx.stats.drop(self.name, "not_best", len(df) - len(best))
        if p.collapse and p.group_by == PARENT_ID:
            best = best.assign(**{ROW_ID: best[PARENT_ID]}).drop(
                columns=[c for c in (PARENT_ID, "sample") if c in best.columns]
            )
        return best.reset_index(drop=True)
