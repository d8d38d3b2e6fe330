"""JSON values: strict parsing (no NaN/Infinity), type names and short renderings for messages,
JSON-safe cleaning of pandas/numpy values, and the objects of a JSONL file."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from selfalign.io.formats import Report, _raise
from selfalign.io.lines import _lines


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


_PLAIN = frozenset({str, int, bool, type(None)})


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN → null, numpy scalars/arrays → Python."""
    if type(value) in _PLAIN:  # most values: nothing to do (the checks below cost per value)
        return value
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):
        return _clean(value.tolist())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


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
