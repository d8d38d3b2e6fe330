"""A pipeline as a chain of segments: runs of row-local stages, with barriers between them.

Inside a segment rows may flow chunk by chunk (the executor decides how); a barrier stage sees
all rows at once. Chunks never split the rows fanned out of one input row (one parent_id), so
stages that compare a row's own samples (select_best, curate_pairs' best_per) stay row-local.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from selfalign.stages.base import PARENT_ID, Stage


@dataclass
class Segment:
    first: int  # index of its first stage in the pipeline
    stages: list[Stage]

    @property
    def streams(self) -> bool:
        """Row-local stages: may run chunk by chunk. A barrier is a segment of one stage."""
        return self.stages[0].is_row_local()

    @property
    def indexes(self) -> range:
        return range(self.first, self.first + len(self.stages))


def split(stages: list[Stage]) -> list[Segment]:
    """Consecutive row-local stages form one segment; every barrier is a segment of its own.
    The first stage (the source: load) is always a barrier."""
    out: list[Segment] = []
    for i, stage in enumerate(stages):
        local = i > 0 and stage.is_row_local()
        if local and out and out[-1].streams and out[-1].first > 0:
            out[-1].stages.append(stage)
        else:
            out.append(Segment(i, [stage]))
    return out


def chunks(df: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    """Slices of about `rows` rows, in order; a slice ends only where parent_id changes. An
    empty table is one empty slice: its stages still run, and pass on its columns."""
    n = len(df)
    if n == 0:
        yield df
        return
    if PARENT_ID not in df.columns:
        for start in range(0, n, rows):
            yield df.iloc[start : start + rows]
        return
    parents = df[PARENT_ID].to_numpy()
    start = 0
    while start < n:
        end = min(start + rows, n)
        while end < n and parents[end] == parents[end - 1]:
            end += 1
        yield df.iloc[start:end]
        start = end
