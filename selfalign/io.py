"""The only module that reads or writes dataset files (JSONL, JSON, CSV, Parquet, text lines)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from selfalign.errors import InputError

FORMATS = ("jsonl", "json", "csv", "parquet", "text")
_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
        ".parquet": "parquet", ".pq": "parquet", ".txt": "text", ".md": "text"}


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    if path.is_dir():
        return "text"
    found = _EXT.get(path.suffix.lower())
    if not found:
        raise InputError(
            f"{path}: cannot tell the file format from the extension '{path.suffix}'. "
            f"Set the load stage's `format` to one of: {', '.join(FORMATS)}."
        )
    return found


def read_table(path: str | Path, fmt: str | None = None, text_column: str = "text",
               encoding: str = "utf-8", nrows: int | None = None) -> pd.DataFrame:
    """Read a dataset file into a DataFrame; every failure is an InputError naming the file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"input file not found: {p}. Check the load stage's `path` "
                         "(override it with e.g. pipeline.stages.load.path=/data/file.jsonl).")
    kind = detect_format(p, fmt)
    try:
        df = _read(p, kind, text_column, encoding, nrows)
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not valid {encoding} text (byte {exc.start}: {exc.reason}). "
                         "Re-save the file as UTF-8 or set the load stage's `encoding`.") from None
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: cannot read it as {kind}: {str(exc).splitlines()[0]}") from None
    if df.empty:
        raise InputError(f"{p}: the file has no rows. Point the load stage at a non-empty file.")
    return df


def _read(p: Path, kind: str, text_column: str, encoding: str, nrows: int | None) -> pd.DataFrame:
    if kind == "jsonl":
        return pd.DataFrame.from_records(_read_jsonl(p, encoding, nrows))
    if kind == "json":
        data = json.loads(p.read_text(encoding=encoding))
        if isinstance(data, dict):  # {"data": [...]} or column-oriented
            data = next((v for v in data.values() if isinstance(v, list)), [data])
        return pd.DataFrame.from_records(data[:nrows] if nrows else data)
    if kind == "csv":
        return pd.read_csv(p, encoding=encoding, nrows=nrows, dtype=str, keep_default_na=False)
    if kind == "parquet":
        df = pd.read_parquet(p)
        return df.head(nrows) if nrows else df
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    if p.is_dir():  # a folder of text files: one document per file
        return pd.DataFrame({text_column: [f.read_text(encoding=encoding) for f in files],
                             "source_file": [str(f) for f in files]})
    lines = [ln for ln in p.read_text(encoding=encoding).splitlines() if ln.strip()]
    return pd.DataFrame({text_column: lines[:nrows] if nrows else lines})


def _read_jsonl(p: Path, encoding: str, nrows: int | None) -> list[dict[str, Any]]:
    rows = []
    with p.open(encoding=encoding) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {lineno} is not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"line {lineno} is a JSON {type(obj).__name__}, not an object")
            rows.append(obj)
            if nrows and len(rows) >= nrows:
                break
    return rows


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN → null, numpy scalars/arrays → Python."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def write_jsonl(df: pd.DataFrame | list[dict[str, Any]], path: Path) -> None:
    """Write atomically (temp file + rename) so an interrupted run never leaves half a file."""
    rows = records(df) if isinstance(df, pd.DataFrame) else df
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> pd.DataFrame:
    return pd.DataFrame.from_records(_read_jsonl(path, "utf-8", None))


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Parquet needs one type per column; mixed object columns are stored as JSON strings."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and not _isnan(v)}
            if len(kinds) > 1 or kinds & {dict, list}:
                out[col] = [json.dumps(_clean(v), default=str) if v is not None else None
                            for v in out[col]]
    tmp = path.with_suffix(".parquet.tmp")
    out.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def write_json(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
