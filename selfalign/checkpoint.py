"""Stage checkpoints in the run dir: each stage's output with its fingerprint and its stats.

A re-run into the same run dir reuses a stage whose fingerprint matches, and restores its stats
(rows, drops, LLM accounting), so the manifest of a resumed run still tells the whole story. A
stage that had calls fail with an LLM error is marked partial: by default (`retry_failed`) a
re-run runs it again, the cache answers the calls that succeeded and only the failed ones are
sent again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from selfalign import io
from selfalign.context import StageStats

if TYPE_CHECKING:
    from selfalign.context import RunContext
    from selfalign.stages.base import Stage

PARTIAL = "\npartial"
# Long texts are stored once in stages/blobs/ and referenced from each stage file, so the
# checkpoints grow with the new columns a stage adds, not with stages × data.
BLOB_MIN = 4096
BLOB_REF = "\x00blob:"  # a NUL-prefixed reference cannot be real text from a model or a file


def fingerprint(prev: str, stage: Stage, ctx: RunContext) -> str:
    """sha256 of the previous fingerprint and everything that decides this stage's output."""
    params = asdict(stage.params) if hasattr(stage.params, "__dataclass_fields__") else {}
    extra = getattr(stage, "fingerprint_extra", lambda: "")()
    model = ctx.llm.identity(getattr(stage.params, "model", None)) if stage.uses_llm else ""
    blob = json.dumps(
        [prev, stage.kind, stage.name, params, stage.prompt_hashes(), model, ctx.seed, extra],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpoint:
    """stages/NN_<name>.jsonl (rows), .fingerprint, .stats.json (stats + LLM accounting)."""

    def __init__(self, stage_dir: Path, index: int, name: str) -> None:
        base = stage_dir / f"{index:02d}_{name}"
        self.blobs = stage_dir / "blobs"
        self.rows = base.with_suffix(".jsonl")
        self.marker = base.with_suffix(".fingerprint")
        self.stats = base.with_suffix(".stats.json")
        self.part = base.with_suffix(".jsonl.part")
        self.columns: list[str] = []  # of the rows appended: an empty output keeps them

    def load(self, fp: str, retry_failed: bool) -> tuple[pd.DataFrame, dict[str, Any]] | None:
        """(rows, saved stats) when this stage can be reused, else None."""
        if not (self.rows.exists() and self.marker.exists()):
            return None
        mark = self.marker.read_text()
        if mark != fp and not (mark == fp + PARTIAL and not retry_failed):
            return None
        saved = json.loads(self.stats.read_text()) if self.stats.exists() else {}
        return self.read(), saved

    def read(self) -> pd.DataFrame:
        """The saved rows, long texts inlined."""
        if self.rows.stat().st_size:
            return self._inline(io.read_jsonl(self.rows))
        # No rows: the columns they would have had (a later stage reads its columns even from
        # an empty table; a filter that dropped every row must not make that a KeyError).
        saved = json.loads(self.stats.read_text()) if self.stats.exists() else {}
        return pd.DataFrame(columns=saved.get("columns", self.columns))

    def frames(self, rows: int) -> Iterator[pd.DataFrame]:
        """The saved rows `rows` at a time (memory: one chunk), long texts inlined."""
        batch: list[dict[str, Any]] = []
        for row in io.jsonl_rows(self.rows):
            batch.append(row)
            if len(batch) == rows:
                yield self._inline(pd.DataFrame.from_records(batch))
                batch = []
        if batch:
            yield self._inline(pd.DataFrame.from_records(batch))

    def save(self, df: pd.DataFrame, fp: str, st: StageStats, llm: dict[str, dict[str, Any]]) -> None:
        self.begin()
        self.append(df)
        self.finish(fp, st, llm)

    def begin(self) -> None:
        """Start writing this stage's rows: chunk by chunk into a .part file (append-only, so a
        crash keeps what was written), which `finish` renames into place."""
        self.marker.unlink(missing_ok=True)
        self.part.write_text("", encoding="utf-8")

    def append(self, df: pd.DataFrame) -> None:
        self.columns = [str(c) for c in df.columns]
        with self.part.open("a", encoding="utf-8") as fh:
            for row in io.records(df):
                fh.write(io.jsonl_line(self._refs(row)))

    def finish(self, fp: str, st: StageStats, llm: dict[str, dict[str, Any]]) -> None:
        """Rows first, the marker last: a crash in between leaves no marker, so no reuse."""
        os.replace(self.part, self.rows)
        io.write_json({"stats": st.to_json(), "llm": llm, "columns": self.columns}, self.stats)
        self.marker.write_text(fp + (PARTIAL if st.llm_failed else ""))

    def _refs(self, row: dict[str, Any]) -> dict[str, Any]:
        for key, value in row.items():
            if isinstance(value, str) and len(value) >= BLOB_MIN:
                digest = hashlib.sha256(value.encode()).hexdigest()[:32]
                path = self.blobs / f"{digest}.txt"
                if not path.exists():
                    self.blobs.mkdir(exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(value, encoding="utf-8")
                    tmp.replace(path)
                row[key] = BLOB_REF + digest
        return row

    def _inline(self, df: pd.DataFrame) -> pd.DataFrame:
        for col in df.columns:
            if not (pd.api.types.is_object_dtype(df[col]) or pd.api.types.is_string_dtype(df[col])):
                continue
            refs = df[col].map(lambda v: isinstance(v, str) and v.startswith(BLOB_REF))
            if refs.any():
                df.loc[refs, col] = df.loc[refs, col].map(
                    lambda v: (self.blobs / f"{v[len(BLOB_REF) :]}.txt").read_text(encoding="utf-8")
                )
        return df


@dataclass
class Stored:
    """What every step yields, and so what a run returns: a stage's output, which is always in
    its checkpoint file, with the frame the stage returned while it is still in memory.

    One type rather than `DataFrame | Stored`: every executor writes every step's checkpoint,
    so the file is the one thing all outputs have, and the frame is an optional copy that
    spares reading it back (a barrier's output, one a later stage needs). A streamed pipeline's
    last output stays on disk only (`df` None): the dataset is written from it chunk by chunk,
    so a run never holds its whole output in memory. When both exist the frame is the truth
    (the dtypes the stage made; the file holds the same rows through JSON)."""

    ck: Checkpoint | None  # None only for the empty output of a pipeline with no stages
    rows: int
    df: pd.DataFrame | None = None

    @classmethod
    def kept(cls, ck: Checkpoint | None, df: pd.DataFrame) -> Stored:
        """An output still in memory (and, but for an empty pipeline, in `ck`'s file)."""
        return cls(ck, len(df), df)

    def __len__(self) -> int:
        return self.rows

    def frame(self) -> pd.DataFrame:
        """All rows: the frame in memory, else read from the file."""
        if self.df is not None:
            return self.df
        assert self.ck is not None
        return self.ck.read()

    def loaded(self) -> Stored:
        """The same output with its rows in memory."""
        return self if self.df is not None else Stored.kept(self.ck, self.frame())

    def frames(self, rows: int = 10_000) -> Iterator[pd.DataFrame]:
        """The rows chunk by chunk: from the file `rows` at a time, or the frame in memory whole."""
        if self.df is not None:
            yield self.df
            return
        assert self.ck is not None
        yield from self.ck.frames(rows)


def restore(ctx: RunContext, name: str, saved: dict[str, Any]) -> StageStats:
    """Put a reused stage's saved stats and accounting back into the run's."""
    st = StageStats.from_json(saved.get("stats", {}))
    st.reused = True
    ctx.stats.stages[name] = st
    ctx.llm.accounting.load_stage(name, saved.get("llm", {}))
    return st
