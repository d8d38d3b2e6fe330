"""`scan_file` / `check_file`: one pass over a whole input file in constant memory (nothing is
kept but the column names), each kind of problem reported once as `FILE:LINE: what. How to fix.`"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from selfalign.errors import InputError
from selfalign.io.jsonstream import _json_records
from selfalign.io.lines import _folder_files, _lines, _resolve, _sniff_or_raise
from selfalign.io.values import _jsonl_records


@dataclasses.dataclass
class Scan:
    """What one streaming pass over an input file found."""

    problems: list[str]  # "FILE:LINE: …", the first of each kind (with how many more)
    columns: list[str]  # every column seen, in order of appearance
    rows: int
    non_text: list[tuple[int, int, str, Any]] = dataclasses.field(default_factory=list)  # (row, line, col, v)
    non_text_count: int = 0
    parquet_types: dict[str, str] = dataclasses.field(default_factory=dict)  # text column → its non-text type


class _Problems:
    """Keeps the first problem of each kind and counts the rest."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}
        self.more: Counter[str] = Counter()

    def __call__(self, kind: str, message: str) -> None:
        if kind in self.first:
            self.more[kind] += 1
        else:
            self.first[kind] = message

    def messages(self) -> list[str]:
        return [
            m + (f" ({self.more[k]} more like it further on.)" if self.more[k] else "")
            for k, m in self.first.items()
        ]


def check_file(path: str | Path, fmt: str | None = None, encoding: str = "utf-8") -> list[str]:
    """Every problem found reading the whole file (in constant memory), each as one message that
    names FILE:LINE (and the byte offset for bytes that do not decode). [] means readable."""
    try:
        return scan_file(path, fmt, encoding).problems
    except InputError as exc:
        return [str(exc)]


def scan_file(
    path: str | Path,
    fmt: str | None = None,
    encoding: str = "utf-8",
    text_column: str = "text",
    text_columns: Iterable[str] = (),
    examples: int = 5,
) -> Scan:
    """Stream through the whole file: problems of each kind, the columns, the row count, and the
    first `examples` values of `text_columns` that are not text. A problem that makes the file
    unreadable (missing, wrong format, UTF-16 read as UTF-8, no rows …) raises InputError."""
    p, kind = _resolve(path, fmt, encoding)
    wanted = tuple(text_columns)
    key = None
    if p.is_file():  # `selfalign run` validates, then builds again in the Hydra job: scan once
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns, kind, encoding, text_column, wanted, examples)
        if key in _SCANS:
            return dataclasses.replace(_SCANS[key])
    try:
        scan = _scan(p, kind, encoding, text_column, wanted, examples)
    except OSError as exc:
        raise InputError(f"{p}: cannot read it as {kind}: {exc}") from None
    if key is not None:
        if len(_SCANS) >= 16:
            _SCANS.pop(next(iter(_SCANS)))
        _SCANS[key] = scan
    return dataclasses.replace(scan)


_SCANS: dict[tuple[Any, ...], Scan] = {}  # scans of unchanged files (path, size, mtime, options)


def _scan(
    p: Path, kind: str, encoding: str, text_column: str, wanted: tuple[str, ...], examples: int
) -> Scan:
    problems = _Problems()
    scan = Scan([], [], 0)
    if kind == "parquet":
        _scan_parquet(p, scan, wanted)
    elif kind in ("jsonl", "json"):
        seen: dict[str, None] = {}
        records = (_jsonl_records if kind == "jsonl" else _json_records)(p, encoding, problems)
        for line, obj in records:
            if not seen.keys() >= obj.keys():
                seen.update(dict.fromkeys(obj))
            for col in wanted:
                v = obj.get(col)
                if v is not None and type(v) is not str:
                    scan.non_text_count += 1
                    if len(scan.non_text) < examples:
                        scan.non_text.append((scan.rows, line, col, v))
            scan.rows += 1
        scan.columns = list(seen)
    elif kind == "csv":
        _scan_csv(p, encoding, scan, problems)
    elif p.is_dir():
        for f in _folder_files(p):
            _sniff_or_raise(f, encoding)
            for _ in _lines(f, encoding, problems):
                pass
            scan.rows += 1
        scan.columns = [text_column, "source_file"]
    else:
        for _, text in _lines(p, encoding, problems):
            scan.rows += sum(1 for ln in text.splitlines() if ln.strip())
        scan.columns = [text_column]
    scan.problems = problems.messages()
    if not scan.rows and not scan.problems:
        raise InputError(f"{p}: the file has no rows. Point the load stage at a non-empty file.")
    return scan


def _scan_csv(p: Path, encoding: str, scan: Scan, problems: _Problems) -> None:
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    sentinel = "\ue000selfalign:end-of-file\ue000"
    lines = (text for _, text in _lines(p, encoding, problems))
    reader = csv.reader(_then(lines, sentinel))
    header: list[str] | None = None
    last = 0
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if row and any(sentinel in f for f in row):
                if row != [sentinel]:
                    problems(
                        "csv",
                        f"{p}:{start}: a quoted field that starts on line {start} is "
                        "never closed (it runs to the end of the file). Close the quote "
                        'or double any " inside the field ("").',
                    )
                break
            if not row or (len(row) == 1 and not row[0].strip()):  # blank lines are skipped
                continue
            if header is None:
                header = row
                continue
            if len(row) != len(header):
                problems(
                    "ragged",
                    f"{p}:{start}: line {start} has {len(row)} field(s), the header "
                    f"(its first line) has {len(header)}. Quote fields that hold a "
                    'comma ("a, b"), or fix the row.',
                )
            scan.rows += 1
    except csv.Error as exc:
        problems("csv", f"{p}:{last + 1}: cannot read it as CSV ({exc}).")
    scan.columns = list(header or [])


def _then(items: Iterator[str], last: str) -> Iterator[str]:
    yield from items
    yield last


def _scan_parquet(p: Path, scan: Scan, text_columns: tuple[str, ...]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
        schema, scan.rows = pf.schema_arrow, pf.metadata.num_rows
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot read it as parquet: {str(exc).splitlines()[0]}") from None
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    scan.columns = [n for n in schema.names if n not in index]
    for col in text_columns:
        if col in scan.columns:
            t = schema.field(col).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if not (
                pa.types.is_string(t)
                or pa.types.is_large_string(t)
                or pa.types.is_null(t)
                or str(t) == "string_view"
            ):
                scan.parquet_types[col] = str(t)
