"""Writing a table chunk by chunk: `TableWriter` (a JSONL or Parquet file equal to writing the whole
frame at once) and `append_jsonl` / `read_jsonl_parts` (an append-only checkpoint that a kill -9
leaves readable: at most the line being written is lost).

Parquet infers each column's type from the whole frame (`arrow_table`), which a writer that sees
one chunk at a time cannot do: a column all null in the first chunk and strings later, ints then
floats, dicts that gain a key. So each chunk is spooled to a part file with its own types, and
`close()` settles every column's type from all parts (an Arrow schema unification; a column no
type fits, ints in one chunk and strings in another, becomes JSON text as `arrow_table` does) and
rewrites the parts into the file one at a time: memory holds one chunk, the disk a second copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from selfalign.io.writers import as_json, infer_array, jsonl_line, jsonl_rows, records

FORMATS = ("jsonl", "parquet")
_GROUP = 131_072  # rows per Parquet row group at least (but the last)


class TableWriter:
    """`with TableWriter(path, "parquet") as w: w.write(chunk) …`: the file appears (atomically)
    at close; an exception inside the `with` leaves no file."""

    def __init__(self, path: str | Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"TableWriter writes {' or '.join(FORMATS)}, not {fmt!r}")
        self.path, self.fmt, self.rows = Path(path), fmt, 0
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._fh = self._tmp.open("w", encoding="utf-8") if fmt == "jsonl" else None
        self._parts = self.path.with_name(self.path.name + ".parts")
        self._columns: dict[str, _Column] = {}  # in order of first appearance, as pd.concat
        if fmt == "parquet":
            shutil.rmtree(self._parts, ignore_errors=True)
            self._parts.mkdir(parents=True)
        self._n = 0

    def write(self, df: pd.DataFrame) -> None:
        if self._fh is not None:
            self._fh.writelines(jsonl_line(r) for r in records(df))
        else:
            self._spool(df)
        self.rows += len(df)

    def _spool(self, df: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays, names = [], []
        for col in df.columns:
            array, as_text = infer_array(df[col])
            self._columns.setdefault(str(col), _Column()).add(array, as_text, self._n)
            arrays.append(array)
            names.append(str(col))
        pq.write_table(pa.Table.from_arrays(arrays, names=names), self._parts / f"{self._n:08d}.parquet")
        self._n += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        else:
            self._assemble()
            shutil.rmtree(self._parts, ignore_errors=True)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Stop without writing the file (and remove what was spooled)."""
        if self._fh is not None:
            self._fh.close()
        shutil.rmtree(self._parts, ignore_errors=True)
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close() if kind is None else self.abort()

    def _assemble(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([pa.field(name, c.final()) for name, c in self._columns.items()])
        with pq.ParquetWriter(self._tmp, schema) as out:
            group: list[Any] = []  # small chunks are gathered into row groups of _GROUP rows
            for i in range(self._n):
                table = pq.read_table(self._parts / f"{i:08d}.parquet")
                n = table.num_rows
                got = dict(zip(table.column_names, table.columns, strict=True))
                arrays = [self._columns[f.name].conform(got.get(f.name), f.type, n, i) for f in schema]
                group.append(pa.Table.from_arrays(arrays, schema=schema))
                if sum(t.num_rows for t in group) >= _GROUP:
                    out.write_table(pa.concat_tables(group))
                    group = []
            if group or not self._n:
                out.write_table(pa.concat_tables(group) if group else schema.empty_table())


class _Column:
    """One column's Arrow types across the chunks, and its type in the whole file."""

    def __init__(self) -> None:
        self.types: list[Any] = []  # of chunks with a value
        self.null_types: list[Any] = []  # of chunks where it is all null (a NaN float column …)
        self.as_text = False  # some chunk mixed kinds: the whole column is JSON text
        self.text_parts: set[int] = set()  # the parts where it is JSON text already

    def add(self, array: Any, as_text: bool, part: int) -> None:
        if as_text:
            self.as_text = True
            self.text_parts.add(part)
        (self.null_types if array.null_count == len(array) else self.types).append(array.type)

    def final(self) -> Any:
        import pyarrow as pa

        if self.as_text:
            return pa.string()
        found = _unify(self.types or self.null_types)
        if found is None and not self.types:  # only nulls, of several types: an object column
            return pa.null()
        if found is None:  # ints here, strings there: mixed kinds, as arrow_table stores them
            self.as_text = True
            return pa.string()
        for t in self.null_types if self.types else ():  # a NaN float column widens ints to double
            found = _unify([found, t]) or found
        return found

    def conform(self, chunk: Any, want: Any, n: int, part: int) -> Any:
        """Part `part`'s column as the whole file types it."""
        import pyarrow as pa

        if chunk is None or chunk.null_count == len(chunk):
            return pa.nulls(n, want)
        if self.as_text and part not in self.text_parts:  # JSON text, as arrow_table writes mixed kinds
            return pa.array(as_json(chunk.to_pylist()), type=pa.string())
        if chunk.type == want:
            return chunk
        try:
            return chunk.cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return pa.array(chunk.to_pylist(), type=want)


def _unify(types: list[Any]) -> Any:
    """The Arrow type all of `types` fit (int64 and double: double; struct fields merged), or None."""
    import pyarrow as pa

    try:
        schemas = [pa.schema([pa.field("x", t)]) for t in types]
        return pa.unify_schemas(schemas, promote_options="permissive").field("x").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def append_jsonl(df: pd.DataFrame, path: Path) -> None:
    """Append the rows to a JSONL file, flushed and fsynced, so a kill -9 loses at most the line
    being written. A torn last line from an earlier kill is cut off first (it would otherwise
    run into the first new line)."""
    _cut_torn_line(path)
    with path.open("ab") as fh:
        fh.write("".join(jsonl_line(r) for r in records(df)).encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def _cut_torn_line(path: Path) -> None:
    """Truncate the file after its last line end (nothing to do when it ends with one)."""
    if not path.exists():
        return
    with path.open("r+b") as fh:
        pos = end = fh.seek(0, os.SEEK_END)
        while pos > 0:
            start = max(0, pos - 65_536)
            fh.seek(start)
            block = fh.read(pos - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                if start + cut + 1 < end:
                    fh.truncate(start + cut + 1)
                return
            pos = start
        fh.truncate(0)


def read_jsonl_parts(path: Path) -> pd.DataFrame:
    """The complete rows of a file written by `append_jsonl` (a torn last line is left out)."""
    return pd.DataFrame.from_records(list(jsonl_rows(path, complete_only=True)))
