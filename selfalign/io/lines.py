"""Text files as numbered lines in constant memory, and the files an input path stands for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from selfalign.errors import InputError
from selfalign.io.formats import (
    FORMATS,
    Report,
    _ascii_compatible,
    _codec,
    _decode_message,
    _raise,
    _sniff,
    detect_format,
)


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
