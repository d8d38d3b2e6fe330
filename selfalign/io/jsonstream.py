"""A JSON document's list of rows, read element by element in constant memory."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from selfalign.io.formats import Report, _raise
from selfalign.io.lines import _lines
from selfalign.io.values import _LENIENT, _NON_FINITE_FIX, _STRICT, _NonFinite, short, value_type


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
