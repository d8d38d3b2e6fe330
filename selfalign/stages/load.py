"""`load`: read a dataset file into rows with stable row ids.

`check` (run by validate/run/preview before any model call) streams the whole file through
`io.scan_file`: every kind of bad line is reported as FILE:LINE, in constant memory. `run` reads
no further than it needs when there is a `limit` and no `sample`; `stream` hands the rows over in
chunks, reading the file a chunk at a time. See docs/inputs.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.errors import ConfigError, InputError
from selfalign.stages.base import ROW_ID, Stage, register_stage
from selfalign.stages.load_params import LoadParams
from selfalign.stages.load_rows import _EXAMPLES, LoadRows

# a previous run's output (chaining pipelines): where each row came from
SOURCE_ROW_ID, SOURCE_RUN = "source_row_id", "source_run"


@register_stage
class Load(LoadRows, Stage):
    """Read a file; rename columns; check required columns; sample; assign row ids."""

    kind = "load"
    Params = LoadParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p: LoadParams = self.params
        for key, none in (("limit", "all rows"), ("sample", "no sampling")):
            value = getattr(p, key)
            if value is not None and value < 1:
                via = (
                    " If the pipeline sets it from a root key (as `limit: ${n_rows}` does), fix "
                    "that key instead, e.g. n_rows=10 or n_rows=null."
                    if key == "limit"
                    else ""
                )
                raise ConfigError(
                    f"{self.where}.{key}: {value} is not a number of rows. Set a "
                    f"positive number (e.g. {self.where}.{key}=10) or null for "
                    f"{none}.{via}"
                )
        problem = io.encoding_problem(p.encoding)
        if problem:
            raise ConfigError(f"{self.where}.encoding: {problem} Set e.g. {self.where}.encoding=utf-8.")

    # -- columns -------------------------------------------------------------------------------

    def _text_columns(self) -> list[str]:
        """Pipeline columns whose values are used as text."""
        p: LoadParams = self.params
        return list(dict.fromkeys([*p.required, p.text_column]))

    def _source_names(self, cols: Iterable[str]) -> list[str]:
        """The input file's names for pipeline columns (undoing `rename`)."""
        p: LoadParams = self.params
        back = {v: k for k, v in p.rename.items()}
        return [back.get(c, c) for c in cols if c in back or c not in p.rename]

    def _missing(self, found: list[str]) -> str | None:
        p: LoadParams = self.params
        need = set(p.required) | set(p.columns) | ({p.id_column} if p.id_column else set())
        missing = sorted(need - set(found))
        if not missing:
            return None
        col = missing[0]
        renames = {v: k for k, v in p.rename.items()}
        hint = f" (renamed from '{renames[col]}')" if col in renames else ""
        what = (
            f"required column '{col}'{hint} is missing"
            if len(missing) == 1
            else f"required columns {', '.join(repr(c) for c in missing)} are missing"
        )
        return (
            f"{p.path}: {what}. Columns found: {', '.join(map(str, found))}. Map one of them "
            f"with {self.where}.rename={{YOUR_COLUMN: {col}}}, or fix `{self.where}.required`."
        )

    # -- check: the whole file, before any model call ------------------------------------------

    def _hf(self) -> Any:
        """The Hugging Face dataset this stage reads (selfalign/hf.py), or None for a file;
        found once (telling a folder's kind walks it)."""
        if not hasattr(self, "_hf_source"):
            from selfalign import hf

            p: LoadParams = self.params
            found = hf.kind(p.path, p.format)
            self._hf_source = hf.Source(p.path, p.split, p.subset, p.revision) if found else None
        return self._hf_source

    def fingerprint_extra(self) -> str:
        """The input file's size and mtime, so an edited input re-runs the pipeline."""
        if src := self._hf():
            from selfalign import hf

            return hf.fingerprint(src)
        st = Path(self.params.path).expanduser().stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    def check(self, columns: set[str]) -> tuple[set[str], list[str]]:
        p: LoadParams = self.params
        wanted = self._source_names(self._text_columns()) if p.non_text == "fail" else []
        src = self._hf()
        if src:
            from selfalign import hf

            scan = hf.scan(src, wanted)
        else:
            scan = io.scan_file(p.path, p.format, p.encoding, p.text_column, wanted, _EXAMPLES)
        if not scan.rows:  # nothing readable: the columns are unknown
            raise InputError(" ".join(scan.problems))
        problems = list(scan.problems)
        if scan.non_text_count:
            problems.append(
                self._non_text_message(
                    scan.non_text_count,
                    [
                        f"line {line} (row {row}) '{col}': {io.value_type(v)} {io.short(v)}"
                        for row, line, col, v in scan.non_text
                    ],
                )
            )
        for col, tp in scan.parquet_types.items():
            problems.append(
                f"{p.path}: column '{col}' is used as text but its Parquet type is {tp}. Write it "
                f"as strings, or set {self.where}.non_text=coerce (or drop)."
            )
        found = self._provenance_names([p.rename.get(c, c) for c in scan.columns])
        missing = self._missing(found)
        if missing:  # an InputError stops the column check here
            raise InputError(" ".join([missing, *(f"Also: {m}" for m in problems)]))
        cols = set(p.columns) if p.columns else set(map(str, found))
        return columns | cols | {ROW_ID}, [f"{self.where}: {m}" for m in problems]

    # -- run ------------------------------------------------------------------------------------

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: LoadParams = self.params
        early = p.limit is not None and p.sample is None  # stop reading once `limit` rows are kept
        stop = p.limit if early else None
        frames = list(self._prepared(self._chunks(stop), partial=early, stop=stop))
        out = frames[0] if len(frames) == 1 else pd.concat(frames)
        if p.columns:
            out = out[p.columns]
        if p.sample is not None and p.sample < len(out):
            seed = p.seed if p.seed is not None else self.ctx.seed
            out = out.sample(n=p.sample, random_state=seed).sort_index()
        if p.limit is not None:
            out = out.head(p.limit)
        ids = self._row_ids(out, set())
        out = out.reset_index(drop=True)
        out.insert(0, ROW_ID, ids)
        return out

    def streamable(self) -> bool:
        """Whether `stream` can hand the rows over chunk by chunk: not with `sample`, which draws
        from all rows."""
        return self.params.sample is None

    def stream(self, rows: int) -> Iterator[pd.DataFrame]:
        """`run`'s output in chunks of about `rows` rows (fewer where rows are dropped), reading the
        file `rows` rows at a time and no further than `limit` needs. The chunks concatenated equal
        `run`'s output when every chunk has the same value kinds (a JSON column that is only null in
        one chunk may get another dtype); a chunk of a JSON file lacks the columns that none of its
        rows has, as `pd.DataFrame.from_records` would. A duplicate `id_column` value, a missing
        column of a JSON file, or a non-text value raises when the chunk holding it is read."""
        p: LoadParams = self.params
        if not self.streamable():
            raise ValueError(f"{self.where}: `sample` needs all rows; check streamable() before stream()")
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        size = min(rows, p.limit) if p.limit is not None else rows
        kept, seen, empty = 0, set[str](), None
        for chunk in self._prepared(self._chunks(size, fixed=True), partial=True, stop=p.limit):
            if p.columns:  # a JSON chunk may lack a column that later rows have: as from_records
                chunk = chunk[[c for c in p.columns if c in chunk.columns]]
            if p.limit is not None:
                chunk = chunk.head(p.limit - kept)
            ids = self._row_ids(chunk, seen)
            chunk = chunk.set_axis(pd.RangeIndex(kept, kept + len(chunk)))
            chunk.insert(0, ROW_ID, ids)
            if chunk.empty:  # all its rows dropped (an empty row_id column would be `object`)
                empty = chunk
                continue
            kept += len(chunk)
            yield chunk
        if not kept and empty is not None:  # every row dropped: the columns, as run gives them
            yield empty

    def _prepared(
        self, chunks: Iterable[pd.DataFrame], partial: bool, stop: int | None
    ) -> Iterator[pd.DataFrame]:
        """Chunks renamed, with non-text values and rows missing required values handled; stops
        once `stop` rows are kept. Missing columns raise as soon as the columns are known."""
        p: LoadParams = self.params
        kept, seen, first = 0, dict[str, None](), True
        for chunk in chunks:
            chunk = self._provenance(chunk.rename(columns=p.rename))
            seen.update(dict.fromkeys(map(str, chunk.columns)))
            if first:
                self._raise_missing(list(seen), partial=partial)
                first = False
            chunk = self._drop_missing(self._text_values(chunk))
            kept += len(chunk)
            yield chunk
            if stop is not None and kept >= stop:
                break
        self._raise_missing(list(seen), partial=False)

    # -- chaining: a previous run's dataset as input -------------------------------------------

    def _source_run(self) -> str | None:
        """The run dir's name when the input file sits in one (beside its manifest.json)."""
        if self._hf():
            return None
        folder = Path(self.params.path).expanduser().parent
        return folder.name if (folder / "manifest.json").is_file() else None

    def _provenance_names(self, cols: list[str]) -> list[str]:
        """The columns `_provenance` makes of `cols` (for the check before any model call)."""
        if ROW_ID not in cols:
            return cols
        kept = [SOURCE_ROW_ID if c == ROW_ID else c for c in cols if c not in (SOURCE_ROW_ID, SOURCE_RUN)]
        return kept + ([SOURCE_RUN] if self._source_run() else [])

    def _provenance(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """An input that has a row_id (a previous run's dataset.jsonl): that id becomes
        source_row_id, with source_run, and this run assigns its own row ids. A chain of runs
        keeps the latest link: an older source_row_id / source_run is replaced."""
        if ROW_ID not in chunk.columns:
            return chunk
        older = [c for c in (SOURCE_ROW_ID, SOURCE_RUN) if c in chunk.columns]
        chunk = chunk.drop(columns=older).rename(columns={ROW_ID: SOURCE_ROW_ID})
        if run := self._source_run():
            chunk.insert(chunk.columns.get_loc(SOURCE_ROW_ID) + 1, SOURCE_RUN, run)
        return chunk

    def _row_ids(self, df: pd.DataFrame, seen: set[str]) -> list[str]:
        """Row ids: the `id_column` (unique across `seen`, the ids of earlier chunks, which this
        adds to) or the row number in the file."""
        p: LoadParams = self.params
        if not p.id_column:
            return list(df.index.astype(str))
        ids = df[p.id_column].astype(str)
        dup = ids.duplicated() | ids.isin(seen)
        if dup.any():
            raise InputError(
                f"{p.path}: `{self.where}.id_column` '{p.id_column}' has duplicate "
                f"values (e.g. {ids[dup].iloc[0]!r}); ids must be unique."
            )
        seen.update(ids)
        return list(ids)

    def _chunks(self, first: int | None, fixed: bool = False) -> Iterable[pd.DataFrame]:
        p: LoadParams = self.params
        if src := self._hf():
            from selfalign import hf

            return hf.iter_table(src, first, fixed)
        return io.iter_table(p.path, p.format, p.text_column, p.encoding, first=first, fixed=fixed)

    def _raise_missing(self, found: list[str], partial: bool) -> None:
        """Columns are fixed by the first chunk except in JSON, where a later row may add one."""
        p: LoadParams = self.params
        kind = "hf" if self._hf() else io.detect_format(Path(p.path).expanduser(), p.format)
        if partial and kind in ("jsonl", "json"):
            return
        message = self._missing(found)
        if message:
            raise InputError(message)
