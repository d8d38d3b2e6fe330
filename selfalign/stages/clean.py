"""`strip_substrings`: remove fixed substrings from text columns (a transform, never a filter)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from selfalign.config import doc
from selfalign.stages.base import Stage, register_stage


@dataclass
class StripParams:
    columns: list[str] = doc("text columns to clean")
    remove: list[str] = doc("substrings removed wherever they occur (case-sensitive)", factory=list)
    strip: bool = doc("then strip surrounding whitespace", True)


@register_stage
class StripSubstrings(Stage):
    """Remove fixed substrings from text columns, then strip (a transform; never drops rows)."""

    kind = "strip_substrings"
    row_local = True
    Params = StripParams

    def reads(self) -> set[str]:
        return set(self.params.columns)

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: StripParams = self.params
        out = df.copy()
        for col in p.columns:
            s = out[col].fillna("").astype(str)
            for sub in p.remove:
                s = s.str.replace(sub, "", regex=False)
            out[col] = s.str.strip() if p.strip else s
        return out
