"""`segment_text`: split long documents into pieces of at most N tokens, one row per piece."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.stages.base import ROW_ID, Stage, register_stage
from selfalign.text import count_tokens

# paragraph → sentence → word: each level is tried only for pieces still over the limit
_LEVELS = ((re.compile(r"\n\s*\n"), "\n\n"), (re.compile(r"(?<=[.!?])\s+"), " "), (re.compile(r"\s+"), " "))


def _pack(units: list[str], max_tokens: int, sep: str) -> list[str]:
    """Greedily join consecutive units while the joined piece stays within max_tokens."""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for unit in units:
        n = count_tokens(unit)
        if cur and size + n > max_tokens:
            out.append(sep.join(cur))
            cur, size = [], 0
        cur.append(unit)
        size += n
    if cur:
        out.append(sep.join(cur))
    return out


def segment(text: str, max_tokens: int, level: int = 0) -> list[str]:
    """Split text into pieces of at most max_tokens (count_tokens), cutting at paragraph breaks
    first, then sentence ends, then spaces. A single word longer than the limit stays whole."""
    text = text.strip()
    if not text:
        return []
    if count_tokens(text) <= max_tokens or level == len(_LEVELS):
        return [text]
    split, sep = _LEVELS[level]
    units = [u for part in split.split(text) for u in segment(part, max_tokens, level + 1)]
    return _pack(units, max_tokens, sep)


@dataclass
class SegmentParams:
    column: str = doc("column holding the documents", "text")
    output: str = doc("column for each piece (the source column is removed if different)", "response")
    max_tokens: int | None = doc("split documents longer than this; null = one piece each", None)

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("`max_tokens` must be >= 1 or null")


@register_stage
class SegmentText(Stage):
    """One row per piece of each document (doc_id, segment); empty documents are dropped."""

    kind = "segment_text"
    row_local = True
    Params = SegmentParams

    def reads(self) -> set[str]:
        return {self.params.column}

    def writes(self) -> set[str]:
        return {self.params.output, "doc_id", "segment"}

    def removes(self) -> set[str]:
        p: SegmentParams = self.params
        return {p.column} if p.column != p.output else set()

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: SegmentParams = self.params
        out: list[dict[str, Any]] = []
        for row in io.records(df):
            pieces = segment(str(row.pop(p.column) or ""), p.max_tokens or sys.maxsize)
            if not pieces:
                self.ctx.stats.drop(self.name, f"empty:{p.column}")
            rid = str(row[ROW_ID])
            for k, piece in enumerate(pieces):
                # a document that fits keeps its id, so ids do not depend on max_tokens
                new_id = rid if len(pieces) == 1 else f"{rid}.s{k}"
                out.append({**row, ROW_ID: new_id, "doc_id": rid, "segment": k, p.output: piece})
        cols = [c for c in df.columns if c != p.column] + ["doc_id", "segment", p.output]
        return pd.DataFrame.from_records(out, columns=list(dict.fromkeys(cols)))
