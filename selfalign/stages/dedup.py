"""`dedup_exact`: drop rows whose (normalised) text repeats, optionally per group or balanced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
import regex

from selfalign.config import doc
from selfalign.stages.base import Stage, register_stage
from selfalign.text import normalize_text


@dataclass
class DedupParams:
    column: str = doc("column compared")
    normalize: Literal["none", "strip", "lower", "lower_ws"] = doc(
        "strip | lower (strip, NFKC, lowercase) | lower_ws (also collapse whitespace, drop "
        "punctuation; any script)",
        "lower",
    )
    group_by: str | None = doc("dedup within each group of this column", None)
    balance: bool = doc("then truncate every group to the smallest group's size", False)
    shuffle: bool = doc("seeded shuffle before balancing (else keep first rows)", False)
    seed: int | None = doc("seed for shuffle (null = the run seed)", None)


# punctuation and symbols in any script; combining marks (Devanagari vowel signs …) are kept,
# which the stdlib's \w would have counted as punctuation and removed
_PUNCT = regex.compile(r"[^\p{L}\p{M}\p{N}_\s]")


def normalize(s: pd.Series, how: str) -> pd.Series:
    """lower and lower_ws also apply NFKC (full-width forms, composed/decomposed accents)."""
    s = s.fillna("").astype(str)
    if how == "none":
        return s
    s = s.str.strip()
    if how in ("lower", "lower_ws"):
        s = s.map(normalize_text)
    if how == "lower_ws":
        s = s.map(lambda t: " ".join(_PUNCT.sub("", t).split()))
    return s


@register_stage
class DedupExact(Stage):
    """Exact dedup after normalisation, optionally per group, optionally balancing groups."""

    kind = "dedup_exact"
    Params = DedupParams

    def reads(self) -> set[str]:
        p: DedupParams = self.params
        return {p.column} | ({p.group_by} if p.group_by else set())

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: DedupParams = self.params
        key = normalize(df[p.column], p.normalize)
        subset = [key] if not p.group_by else [df[p.group_by].astype(str), key]
        dup = pd.concat(subset, axis=1).duplicated()
        self.ctx.stats.drop(self.name, "duplicate", int(dup.sum()))
        out = df[~dup.to_numpy()]
        if p.shuffle:
            out = out.sample(frac=1.0, random_state=p.seed if p.seed is not None else self.ctx.seed)
        if p.group_by and p.balance and len(out):
            smallest = int(out.groupby(p.group_by).size().min())
            kept = out.groupby(p.group_by, sort=False).head(smallest)
            self.ctx.stats.drop(self.name, "balance", len(out) - len(kept))
            out = kept
        return out.reset_index(drop=True)
