"""`iter_table` / `read_table`: an input file as DataFrames, read no further than the caller takes."""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from selfalign.errors import InputError
from selfalign.io.jsonstream import _json_records
from selfalign.io.lines import _folder_files, _lines, _locate_decode_error, _read_text_file, _resolve
from selfalign.io.values import _jsonl_records

_MAX_CHUNK = 65_536  # rows per chunk at most when reading in chunks


def _sizes(first: int | None, fixed: bool = False) -> Iterator[int | None]:
    """Chunk sizes: everything at once, or `first` rows, then twice as many each time (or `first`
    rows every time when `fixed`)."""
    if first is None:
        while True:
            yield None
    size = first
    while True:
        yield size
        if not fixed:
            size = min(size * 2, max(first, _MAX_CHUNK))


def _batches(items: Iterator[Any], sizes: Iterator[int | None]) -> Iterator[list[Any]]:
    while True:
        n = next(sizes)
        batch = list(items) if n is None else list(itertools.islice(items, n))
        if not batch:
            return
        yield batch
        if n is None or len(batch) < n:
            return


def _numbered(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The frames indexed by row number, going on across chunks."""
    start = 0
    for df in frames:
        df.index = pd.RangeIndex(start, start + len(df))
        start += len(df)
        yield df


def _framed(batches: Iterator[list[dict[str, Any]]]) -> Iterator[pd.DataFrame]:
    return _numbered(pd.DataFrame.from_records(rows) for rows in batches)


def iter_table(
    path: str | Path,
    fmt: str | None = None,
    text_column: str = "text",
    encoding: str = "utf-8",
    first: int | None = None,
    fixed: bool = False,
) -> Iterator[pd.DataFrame]:
    """The file as DataFrames indexed by row number: all of it in one frame (`first` None), or
    `first` rows, then twice as many each time (up to 65,536), or `first` rows each time when
    `fixed` (Parquet: at most 65,536); nothing past what the caller takes is read. Every
    failure is an InputError naming the file (and the line, where there is one)."""
    p, kind = _resolve(path, fmt, encoding)
    produced = 0
    try:
        for df in _chunks(p, kind, text_column, encoding, _sizes(first, fixed)):
            produced += len(df)
            yield df
    except UnicodeDecodeError:  # from pandas: find the line and byte ourselves
        raise InputError(_locate_decode_error(p, encoding)) from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{p}: cannot read it as {kind}: {str(exc).splitlines()[0]}") from None
    if not produced:
        raise InputError(f"{p}: the file has no rows. Point the load stage at a non-empty file.")


def _chunks(
    p: Path, kind: str, text_column: str, encoding: str, sizes: Iterator[int | None]
) -> Iterator[pd.DataFrame]:
    if kind == "jsonl":
        yield from _framed(_batches((r for _, r in _jsonl_records(p, encoding)), sizes))
    elif kind == "json":
        yield from _framed(_batches((r for _, r in _json_records(p, encoding)), sizes))
    elif kind == "csv":
        enc = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
        opts: dict[str, Any] = {"encoding": enc, "dtype": str, "keep_default_na": False}
        n = next(sizes)
        if n is None:
            yield pd.read_csv(p, **opts)
            return
        with pd.read_csv(p, iterator=True, **opts) as reader:
            while True:
                try:
                    df = reader.get_chunk(n)
                except StopIteration:
                    return
                yield df
                n = next(sizes)
    elif kind == "parquet":
        yield from _parquet_chunks(p, sizes)
    elif p.is_dir():  # a folder of text files: one document per file
        batches = _batches(iter(_folder_files(p)), sizes)
        yield from _numbered(
            pd.DataFrame(
                {
                    text_column: [_read_text_file(f, encoding) for f in batch],
                    "source_file": [str(f) for f in batch],
                }
            )
            for batch in batches
        )
    else:
        lines = (ln for _, text in _lines(p, encoding) for ln in text.splitlines() if ln.strip())
        yield from _framed(_batches(({text_column: ln} for ln in lines), sizes))


def _parquet_chunks(p: Path, sizes: Iterator[int | None]) -> Iterator[pd.DataFrame]:
    n = next(sizes)
    if n is None:
        yield pd.read_parquet(p)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(p)
    meta = pf.schema_arrow.pandas_metadata or {}
    own_index = any(isinstance(c, str) for c in meta.get("index_columns", []))
    frames = (pa.Table.from_batches([b]).to_pandas() for b in pf.iter_batches(batch_size=min(n, _MAX_CHUNK)))
    yield from frames if own_index else _numbered(frames)


def read_table(
    path: str | Path,
    fmt: str | None = None,
    text_column: str = "text",
    encoding: str = "utf-8",
    nrows: int | None = None,
) -> pd.DataFrame:
    """Read a dataset file into a DataFrame (the first `nrows` rows only, reading no further);
    every failure is an InputError naming the file."""
    if nrows is not None and nrows < 1:
        raise ValueError(f"nrows must be None or at least 1, got {nrows}")
    frames, n = [], 0
    for df in iter_table(path, fmt, text_column, encoding, first=nrows):
        frames.append(df)
        n += len(df)
        if nrows is not None and n >= nrows:
            break
    df = frames[0] if len(frames) == 1 else pd.concat(frames)
    if nrows is not None:
        df = df.head(nrows)
    if df.empty:
        raise InputError(
            f"{Path(path).expanduser()}: the file has no rows. Point the load stage at a non-empty file."
        )
    return df
