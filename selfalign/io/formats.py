"""Input formats (from the extension) and text encodings: which codec, and the problems visible in
a file's first bytes (a byte-order mark the encoding does not expect, compressed or binary data)."""

from __future__ import annotations

import codecs
import encodings.aliases
from collections.abc import Callable
from pathlib import Path

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
