"""The only module that reads or writes dataset files (JSONL, JSON, CSV, Parquet, text lines).

Reading streams: `iter_table` hands the file over in chunks and reads no further than the caller
takes, so a `limit` reads only the rows it needs. `scan_file` / `check_file` go through a whole file
in constant memory (nothing is kept but the column names) and report each kind of problem once, as
`FILE:LINE: what is wrong. How to fix it.`, so that bad input is found before any model call.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import encodings.aliases
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from selfalign.errors import InputError
from selfalign.registry import did_you_mean

FORMATS = ("jsonl", "json", "csv", "parquet", "text")
_EXT = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
    ".md": "text",
}
_MAX_CHUNK = 65_536  # rows per chunk at most when reading in chunks


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


# ---------------------------------------------------------------------------------------------
# encodings

_COMMON_ENCODINGS = [
    "utf-8",
    "utf-8-sig",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "ascii",
    "latin-1",
    "iso-8859-15",
    "cp1252",
    "cp1251",
    "cp1250",
    "mac-roman",
    "koi8-r",
    "shift_jis",
    "euc-jp",
    "gb18030",
    "gbk",
    "big5",
    "euc-kr",
]


def encoding_problem(encoding: str) -> str | None:
    """Why `encoding` cannot decode a text file (unknown name, or a bytes-to-bytes codec), or None."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        names = list(
            dict.fromkeys(
                _COMMON_ENCODINGS + sorted(v.replace("_", "-") for v in encodings.aliases.aliases.values())
            )
        )
        return (
            f"'{encoding}' is not a text encoding Python knows."
            f"{did_you_mean(str(encoding).lower(), names)} Use e.g. utf-8, utf-16, latin-1 or cp1252."
        )
    if not getattr(info, "_is_text_encoding", True):
        return f"'{encoding}' is a bytes-to-bytes codec, not a text encoding. Use e.g. utf-8 or latin-1."
    return None


def _codec(p: Path, encoding: str) -> codecs.CodecInfo:
    problem = encoding_problem(encoding)
    if problem:
        raise InputError(f"{p}: {problem} Set the load stage's `encoding`.")
    return codecs.lookup(encoding)


def _ascii_compatible(codec: codecs.CodecInfo) -> bool:
    """True when line ends and JSON/CSV punctuation are the same bytes as in ASCII (so the file
    can be split into lines as bytes, each decoded on its own, with exact byte offsets)."""
    if codec.name == "utf-8-sig":
        return True
    probe = '\n\r,"{}[]:a '
    try:
        return codec.encode(probe)[0] == probe.encode("ascii")
    except (UnicodeError, TypeError):
        return False


_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32", "utf-32"),
    (codecs.BOM_UTF32_BE, "UTF-32", "utf-32"),
    (codecs.BOM_UTF16_LE, "UTF-16", "utf-16"),
    (codecs.BOM_UTF16_BE, "UTF-16", "utf-16"),
)
_MAGIC = (
    (b"PAR1", "a Parquet file: set the load stage's `format: parquet` (or name it .parquet)"),
    (b"\x1f\x8b", "gzip-compressed: decompress it first (gunzip FILE)"),
    (b"BZh", "bzip2-compressed: decompress it first (bunzip2 FILE)"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first (unxz FILE)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first (unzstd FILE)"),
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook is one): unzip it, or export the sheet as CSV"),
)


def _sniff(p: Path, head: bytes, codec: codecs.CodecInfo, encoding: str) -> str | None:
    """A problem visible in the first bytes that makes the whole file unreadable as `encoding`
    text: a UTF-16/32 byte-order mark the encoding does not expect, compressed or binary data."""
    name = codec.name
    for bom, family, enc in _BOMS:
        if head.startswith(bom):
            if name.startswith(enc):
                return None
            hexes = " ".join(f"{b:02X}" for b in bom)
            return (
                f"{p}: the file is {family}; re-save as UTF-8 or set encoding: {enc} (the "
                f"load stage's `encoding`). It starts with the {family} byte-order mark {hexes}."
            )
    if head.startswith(codecs.BOM_UTF8) and name not in ("utf-8", "utf-8-sig"):
        return (
            f"{p}: the file starts with a UTF-8 byte-order mark (EF BB BF), but the encoding is "
            f"'{encoding}': it is UTF-8. Set encoding: utf-8 (the load stage's `encoding`)."
        )
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"{p}: this is not a text file, it is {what}."
    if _ascii_compatible(codec) and b"\x00" in head:
        return (
            f"{p}: NUL bytes near the start (byte {head.index(0)}): the file is binary, or "
            "UTF-16 without a byte-order mark. Re-save it as UTF-8, or set encoding: utf-16-le "
            "(or utf-16-be) (the load stage's `encoding`)."
        )
    return None


def _decode_message(p: Path, encoding: str, lineno: int, offset: int, exc: UnicodeDecodeError) -> str:
    bad = " ".join(f"0x{b:02X}" for b in exc.object[exc.start : exc.end][:4])
    return (
        f"{p}:{lineno}: not valid {encoding} text (line {lineno}, byte {offset} of the file: "
        f"{bad}, {exc.reason}). Re-save the file as UTF-8 or set the load stage's `encoding` "
        "(e.g. latin-1 or cp1252)."
    )


Report = Callable[[str, str], None]  # (kind of problem, message) — None means: raise InputError


def _raise(kind: str, message: str) -> None:
    raise InputError(message)


def _lines(p: Path, encoding: str, report: Report | None = None) -> Iterator[tuple[int, str]]:
    """(line number from 1, text without its line end) of a text file, in constant memory; the
    first line loses a byte-order mark. Lines are split at '\\n' (a '\\r' before it goes too).
    A line that does not decode is reported with its byte offset and given with replacement
    characters (so counting goes on), or raises InputError when `report` is None."""
    report = report or _raise
    codec = _codec(p, encoding)
    with p.open("rb") as fh:
        if _ascii_compatible(codec):
            offset, name = 0, codec.name
            for lineno, raw in enumerate(fh, 1):
                try:
                    text = raw.decode(name)
                except UnicodeDecodeError as exc:
                    report("decode", _decode_message(p, encoding, lineno, offset + exc.start, exc))
                    text = raw.decode(name, errors="replace")
                if b"\x00" in raw:
                    report(
                        "nul",
                        f"{p}:{lineno}: line {lineno} holds a NUL byte (byte "
                        f"{offset + raw.index(0)} of the file): part of the file is "
                        f"binary, or not {encoding} text. Remove it or re-save the file.",
                    )
                offset += len(raw)
                if text.endswith("\n"):
                    text = text[:-2] if text.endswith("\r\n") else text[:-1]
                yield lineno, _strip_line(text, lineno) if lineno == 1 or text.endswith("\r") else text
            return
        # UTF-16, UTF-32, EBCDIC …: decode in chunks, split into lines after decoding
        decoder = codec.incrementaldecoder("strict")
        lineno, pending, consumed, final = 0, "", 0, False
        while not final:
            chunk = fh.read(1 << 16)
            final = not chunk
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as exc:
                report(
                    "decode",
                    f"{p}:{lineno + 1}: not valid {encoding} text (after line {lineno}, "
                    f"near byte {consumed + max(exc.start, 0)}: {exc.reason}). Re-save "
                    "the file as UTF-8 or set the load stage's `encoding`.",
                )
                return  # cannot find the next character boundary reliably: stop here
            consumed += len(chunk)
            pending += text
            *complete, pending = pending.split("\n")
            for line in complete:
                lineno += 1
                yield lineno, _strip_line(line, lineno)
        if pending:
            yield lineno + 1, _strip_line(pending, lineno + 1)


def _strip_line(text: str, lineno: int) -> str:
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    if lineno == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text


# ---------------------------------------------------------------------------------------------
# JSON values


class _NonFinite(ValueError):
    """NaN, Infinity, -Infinity or a number too large for a float: not JSON, not data."""


def _constant(name: str) -> Any:
    raise _NonFinite(name)


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NonFinite(f"{text} (too large for a number, it would be Infinity)")
    return value


_STRICT = json.JSONDecoder(parse_constant=_constant, parse_float=_float)
_LENIENT = json.JSONDecoder()
_NON_FINITE_FIX = "JSON has no NaN or Infinity: write null (or a number) there instead."


def value_type(value: Any) -> str:
    """The JSON name of a value's type: string, number, boolean, array, object, null."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.number)):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "array"
    return type(value).__name__


def short(value: Any, width: int = 40) -> str:
    text = json.dumps(_clean(value), ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _jsonl_records(
    p: Path, encoding: str, report: Report | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    report = report or _raise
    for lineno, text in _lines(p, encoding, report):
        for piece in text.split("\r") if "\r" in text else (text,):  # old Mac line ends
            if not piece.strip():
                continue
            try:
                obj = _STRICT.decode(piece)
            except _NonFinite as exc:
                report("non_finite", f"{p}:{lineno}: line {lineno} holds {exc}. {_NON_FINITE_FIX}")
                continue
            except json.JSONDecodeError as exc:
                report(
                    "json",
                    f"{p}:{lineno}: line {lineno} is not valid JSON ({exc.msg} at "
                    f"column {exc.colno}). Fix or delete that line: each line of a JSONL "
                    "file is one JSON object.",
                )
                continue
            if not isinstance(obj, dict):
                report(
                    "not_object",
                    f"{p}:{lineno}: line {lineno} is a JSON {value_type(obj)}, not "
                    'an object. Each line of a JSONL file is one object {"column": '
                    "value, …}.",
                )
                continue
            yield lineno, obj


class _JsonError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


_WS = re.compile(r"[ \t\n\r]*")


class _JsonStream:
    """The elements of a JSON document's list, read piece by piece: the top-level list, or the first
    list in a top-level object ({"data": [...]}); an object without a list is one row. Memory
    holds one element (plus a 64 KB window) at a time, and a reader can stop after any element."""

    def __init__(self, lines: Iterator[tuple[int, str]], on_non_finite: Callable[[int, str], None]) -> None:
        self.lines, self.on_non_finite = lines, on_non_finite
        self.buf, self.pos, self.eof = "", 0, False
        self._base = 1  # line number at buf[0]
        self._lpos, self._lline = 0, 1  # line number at buffer position _lpos
        self.key: str | None = None  # the key of the list, for a list inside an object

    def line(self, pos: int | None = None) -> int:
        pos = self.pos if pos is None else pos
        if pos < self._lpos:
            self._lpos, self._lline = 0, self._base
        self._lline += self.buf.count("\n", self._lpos, pos)
        self._lpos = pos
        return self._lline

    def _fill(self, want: int = 1 << 16) -> None:
        if self.pos:  # drop what has been read
            self._base = self.line(self.pos)
            self.buf, self.pos, self._lpos, self._lline = self.buf[self.pos :], 0, 0, self._base
        parts, n = [], 0
        for _, text in self.lines:
            parts += (text, "\n")
            n += len(text) + 1
            if n >= want:
                break
        else:
            self.eof = True
        self.buf += "".join(parts)

    def peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos : self.pos + 1]
            self._fill()

    def value(self) -> Any:
        self.peek()
        want, reported = 1 << 16, False
        while True:
            try:
                obj, end = (_LENIENT if reported else _STRICT).raw_decode(self.buf, self.pos)
            except _NonFinite as exc:  # reported once; then read over it to find where it ends
                self.on_non_finite(self.line(), str(exc))
                reported = True
                continue
            except json.JSONDecodeError as exc:
                cut = not self.eof and (
                    exc.pos >= len(self.buf) - 64 or exc.msg.startswith("Unterminated string")
                )
                if not cut:
                    raise _JsonError(
                        self.line(max(exc.pos, self.pos)), f"not valid JSON ({exc.msg})"
                    ) from None
                want = max(want * 2, len(self.buf))  # the value goes on past the window
                self._fill(want)
                continue
            if end == len(self.buf) and not self.eof:  # a number may go on in the next piece
                self._fill(want)
                continue
            self.pos = end
            return obj

    def _expect(self, chars: str, after: str) -> str:
        c = self.peek()
        if c not in chars or not c:
            found = f"found {c!r}" if c else "the file ends there"
            raise _JsonError(
                self.line(),
                f"not valid JSON (expected {' or '.join(map(repr, chars))} after {after}, {found})",
            )
        self.pos += 1
        return c

    def elements(self) -> Iterator[tuple[int, int, Any]]:
        """(index, line, value) of each element; then the document must end."""
        c = self.peek()
        if c == "[":
            self.pos += 1
            yield from self._list()
        elif c == "{":
            yield from self._object()
        elif c:
            line, v = self.line(), self.value()
            raise _JsonError(
                line,
                f"the file holds a JSON {value_type(v)} ({short(v)}), not a list "
                'of objects. Write it as [{"column": value, …}, …].',
            )
        if self.peek():
            raise _JsonError(self.line(), "not valid JSON (more data after the end of the document)")

    def _list(self) -> Iterator[tuple[int, int, Any]]:
        if self.peek() == "]":
            self.pos += 1
            return
        i = 0
        while True:
            self.peek()  # to the element's first character
            line = self.line()
            yield i, line, self.value()
            if self._expect(",]", f"element {i}") == "]":
                return
            i += 1

    def _object(self) -> Iterator[tuple[int, int, Any]]:
        self.pos += 1
        whole: dict[str, Any] = {}
        found = False
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            if self.peek() != '"':
                raise _JsonError(self.line(), "not valid JSON (expected a key in double quotes)")
            key = self.value()
            self._expect(":", f"the key {key!r}")
            if not found and self.peek() == "[":
                self.pos += 1
                found, self.key = True, key
                yield from self._list()
            else:
                v = self.value()
                if not found:
                    whole[key] = v
            if self._expect(",}", f"the value of {key!r}") == "}":
                break
        if not found:  # an object without a list: one row
            yield 0, 1, whole


def _json_records(
    p: Path, encoding: str, report: Report | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, object) for each row of a JSON file; a syntax error ends the file (reported)."""
    report = report or _raise

    def non_finite(line: int, what: str) -> None:
        report("non_finite", f"{p}:{line}: the value starting on line {line} holds {what}. {_NON_FINITE_FIX}")

    stream = _JsonStream(_lines(p, encoding, report), non_finite)
    try:
        for i, line, value in stream.elements():
            if not isinstance(value, dict):
                under = f" under the key {stream.key!r}" if stream.key is not None else ""
                report(
                    "not_object",
                    f"{p}:{line}: element {i} of the list{under} is a JSON "
                    f"{value_type(value)} ({short(value)}), not an object. A JSON "
                    'input is a list of objects [{"column": value, …}, …].',
                )
                continue
            yield line, value
    except _JsonError as exc:
        message = str(exc)
        if not message.endswith("."):  # a syntax error
            message += ". Fix the JSON there (`python -m json.tool FILE` points at the spot)."
        report("json", f"{p}:{exc.line}: {message}")


# ---------------------------------------------------------------------------------------------
# checking a whole file


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


# ---------------------------------------------------------------------------------------------
# reading


def _resolve(path: str | Path, fmt: str | None, encoding: str) -> tuple[Path, str]:
    """The path and format of an existing input; text files are sniffed for fatal problems."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(
            f"input file not found: {p}. Check the load stage's `path` "
            "(override it with e.g. pipeline.stages.load.path=/data/file.jsonl)."
        )
    kind = detect_format(p, fmt)
    if kind not in FORMATS:
        raise InputError(f"{p}: unknown format '{kind}'. Use one of: {', '.join(FORMATS)}.")
    if kind != "parquet":
        _codec(p, encoding)
        if p.is_file():
            if p.stat().st_size == 0:
                raise InputError(f"{p}: the file has no rows. Point the load stage at a non-empty file.")
            _sniff_or_raise(p, encoding)
    return p, kind


def _sniff_or_raise(p: Path, encoding: str) -> None:
    with p.open("rb") as fh:
        problem = _sniff(p, fh.read(4096), _codec(p, encoding), encoding)
    if problem:
        raise InputError(problem)


def _folder_files(p: Path) -> list[Path]:
    return sorted(f for f in p.rglob("*") if f.is_file())


def _sizes(first: int | None) -> Iterator[int | None]:
    """Chunk sizes: everything at once, or `first` rows, then twice as many each time."""
    if first is None:
        while True:
            yield None
    size = first
    while True:
        yield size
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


def _framed(batches: Iterator[list[dict[str, Any]]]) -> Iterator[pd.DataFrame]:
    start = 0
    for rows in batches:
        df = pd.DataFrame.from_records(rows)
        df.index = pd.RangeIndex(start, start + len(rows))
        start += len(rows)
        yield df


def iter_table(
    path: str | Path,
    fmt: str | None = None,
    text_column: str = "text",
    encoding: str = "utf-8",
    first: int | None = None,
) -> Iterator[pd.DataFrame]:
    """The file as DataFrames indexed by row number: all of it in one frame (`first` None), or
    `first` rows, then twice as many each time (up to 65,536); nothing past what the caller takes
    is read. Every failure is an InputError naming the file (and the line, where there is one)."""
    p, kind = _resolve(path, fmt, encoding)
    produced = 0
    try:
        for df in _chunks(p, kind, text_column, encoding, _sizes(first)):
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
        files = iter(_folder_files(p))
        for batch in _batches(files, sizes):
            yield pd.DataFrame(
                {
                    text_column: [_read_text_file(f, encoding) for f in batch],
                    "source_file": [str(f) for f in batch],
                }
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
    start = 0
    for batch in pf.iter_batches(batch_size=min(n, _MAX_CHUNK)):
        df = pa.Table.from_batches([batch]).to_pandas()
        if not own_index:
            df.index = pd.RangeIndex(start, start + len(df))
        start += len(df)
        yield df


def _read_text_file(f: Path, encoding: str) -> str:
    data = f.read_bytes()
    problem = _sniff(f, data[:4096], _codec(f, encoding), encoding)
    if problem:
        raise InputError(problem)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(_decode_message(f, encoding, line, exc.start, exc)) from None
    text = text[1:] if text.startswith("\ufeff") else text
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as Path.read_text reads it


def _locate_decode_error(p: Path, encoding: str) -> str:
    try:
        for _ in _lines(p, encoding):
            pass
    except InputError as exc:
        return str(exc)
    return f"{p}: not valid {encoding} text. Re-save the file as UTF-8 or set the load stage's `encoding`."


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


# ---------------------------------------------------------------------------------------------
# writing (and reading back what we wrote)


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
    """Read back a JSONL file that selfalign wrote (a stage output): plain JSON, no input checks."""
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: line {lineno} is not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: line {lineno} is a JSON {value_type(obj)}, not an object")
            rows.append(obj)
    return pd.DataFrame.from_records(rows)


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
        array = _typed(values, want) if want is not None else _inferred(values)
        arrays.append(array)
        fields.append(pa.field(str(col), array.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _inferred(values: pd.Series) -> Any:
    import pyarrow as pa

    if values.dtype != object:
        array = pa.Array.from_pandas(values)
        # pandas' str dtype becomes large_string; `string` is what the Hub and TRL expect
        return array.cast(pa.string()) if pa.types.is_large_string(array.type) else array
    clean = [_clean(v) for v in values]
    try:
        return pa.array(clean, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array(_as_json(clean), type=pa.string())


def _typed(values: pd.Series, want: Any) -> Any:
    import pyarrow as pa

    clean = [_clean(v) for v in values]
    textual = pa.types.is_string(want) or pa.types.is_large_string(want)
    if textual and any(v is not None and not isinstance(v, str) for v in clean):
        clean = _as_json(clean)  # this column was stored as JSON text in the whole view
    return pa.array(clean, type=want, from_pandas=True)


def _as_json(values: list[Any]) -> list[str | None]:
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


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def write_json(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
