"""Writing outputs atomically (JSONL, Parquet with nested values kept, JSON) and reading back the
JSONL that selfalign wrote."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from selfalign.errors import InputError
from selfalign.io.values import _clean, value_type


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON-safe dicts. Column by column (Series.tolist), a third of the time of
    to_dict(orient="records") on the small chunks the streaming runner passes (it was 8% of a
    streamed run's CPU)."""
    if not df.columns.is_unique:  # to_dict's own handling of duplicate names (the last wins)
        return [{k: _clean(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
    cols = list(df.columns)
    values = [[_clean(v) for v in col.tolist()] for _, col in df.items()]  # items(): no name lookup
    return (
        [dict(zip(cols, row, strict=True)) for row in zip(*values, strict=True)]
        if cols
        else [{} for _ in range(len(df))]
    )


def jsonl_line(row: dict[str, Any]) -> str:
    """One row as a JSONL line (with its line end), as every JSONL writer here writes it."""
    return json.dumps(row, ensure_ascii=False, default=str) + "\n"


def write_jsonl(df: pd.DataFrame | list[dict[str, Any]], path: Path) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves half a file."""
    rows = records(df) if isinstance(df, pd.DataFrame) else df
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(jsonl_line(row))
    os.replace(tmp, path)


def read_jsonl(path: Path) -> pd.DataFrame:
    """Read back a JSONL file that selfalign wrote (a stage output): plain JSON, no input checks."""
    return pd.DataFrame.from_records(list(jsonl_rows(path)))


def jsonl_rows(path: Path, complete_only: bool = False) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file that selfalign wrote; with `complete_only`, a last line without
    its line end (torn by a kill while it was appended) is left out."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip() or (complete_only and not line.endswith("\n")):
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: line {lineno} is not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: line {lineno} is a JSON {value_type(obj)}, not an object")
            yield obj


def arrow_table(df: pd.DataFrame, types: dict[str, Any] | None = None) -> Any:
    """The frame as a pyarrow Table that keeps nested values (a list of {role, content} dicts is
    a list<struct>, as `datasets` and TRL expect). `types` fixes a column's Arrow type (so split
    files share one schema); a column Arrow cannot type (mixed kinds) is stored as JSON text."""
    import pyarrow as pa

    types = types or {}
    arrays, fields = [], []
    for col in df.columns:
        values = df[col]
        want = types.get(str(col))
        array = _typed(values, want) if want is not None else infer_array(values)[0]
        arrays.append(array)
        fields.append(pa.field(str(col), array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def infer_array(values: pd.Series) -> tuple[Any, bool]:
    """The column as an Arrow array, and whether it had to be stored as JSON text (mixed kinds)."""
    import pyarrow as pa

    if values.dtype != object:
        array = pa.Array.from_pandas(values)
        # pandas' str dtype becomes large_string; `string` is what the Hub and TRL expect
        return (array.cast(pa.string()) if pa.types.is_large_string(array.type) else array), False
    clean = [_clean(v) for v in values]
    try:
        return pa.array(clean, from_pandas=True), False
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array(as_json(clean), type=pa.string()), True


def _typed(values: pd.Series, want: Any) -> Any:
    import pyarrow as pa

    clean = [_clean(v) for v in values]
    textual = pa.types.is_string(want) or pa.types.is_large_string(want)
    if textual and any(v is not None and not isinstance(v, str) for v in clean):
        clean = as_json(clean)  # this column was stored as JSON text in the whole view
    return pa.array(clean, type=want, from_pandas=True)


def as_json(values: list[Any]) -> list[str | None]:
    return [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values]


def write_parquet(df: pd.DataFrame, path: Path, schema: Any = None) -> None:
    """Write atomically; nested values stay nested (see `arrow_table`). `schema` (a pyarrow
    Schema, e.g. of the whole view before it was split) fixes every column's type."""
    import pyarrow.parquet as pq

    types = dict(zip(schema.names, schema.types, strict=True)) if schema is not None else None
    table = arrow_table(df, types)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
