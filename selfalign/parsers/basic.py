"""General-purpose parsers: text, score, numbered_list, verdict, markers, json."""

from __future__ import annotations

import json
import re
from typing import Any

from selfalign.errors import ConfigError, ParseError
from selfalign.parsers.registry import parser


def _cut(text: str, markers: list[str]) -> str:
    for m in markers:
        if m and m in text:
            text = text.split(m, 1)[0]
    return text


@parser("text")
def parse_text(text: str, strip_prefixes: list[str] = (), cut_at: list[str] = (),  # type: ignore[assignment]
               strip_quotes: bool = True, min_chars: int = 1) -> dict[str, Any]:
    """Clean free text: cut at markers, drop a leading label like 'Instruction:', strip quotes."""
    out = _cut(text, list(cut_at)).strip()
    for prefix in strip_prefixes:
        if out.lower().startswith(prefix.lower()):
            out = out[len(prefix):].strip()
    if strip_quotes and len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'":
        out = out[1:-1].strip()
    if len(out) < min_chars:
        raise ParseError("empty", f"fewer than {min_chars} characters")
    return {"value": out}


_SCORE = re.compile(r"score\s*\**\s*[:=]\s*\**\s*\[*\s*(-?\d+(?:\.\d+)?)", re.I)


@parser("score", fields=lambda o: ["reasoning"])
def parse_score(text: str, min: float = 1, max: float = 5, integer: bool = False) -> dict[str, Any]:  # noqa: A002
    """The number after the LAST 'Score:' (also '**Score:** 4', 'Score: 4.5', 'score = 3')."""
    hits = list(_SCORE.finditer(text))
    if not hits:
        raise ParseError("no_score", "no 'Score: N' found")
    value = float(hits[-1].group(1))
    if not (min <= value <= max):
        raise ParseError("score_out_of_range", f"{value} not in [{min}, {max}]")
    reasoning = text[: hits[-1].start()].strip().rstrip("*").strip()
    return {"value": int(value) if integer else value, "reasoning": reasoning}


_ITEM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s+(.+?)\s*$")


@parser("numbered_list")
def parse_list(text: str, min_items: int = 1, max_items: int = 100,
               allow_plain_lines: bool = False) -> dict[str, Any]:
    """Items of a numbered or bulleted list, in order."""
    items = []
    for line in text.splitlines():
        m = _ITEM.match(line)
        if m:
            items.append(m.group(1).strip())
        elif allow_plain_lines and line.strip():
            items.append(line.strip())
    if len(items) < min_items:
        raise ParseError("too_few_items", f"{len(items)} < {min_items}")
    return {"value": items[:max_items]}


_VERDICT = re.compile(r"\[\[\s*([^\[\]]+?)\s*\]\]")


@parser("verdict")
def parse_verdict(text: str, choices: list[str] = ("A", "B", "C")) -> dict[str, Any]:  # type: ignore[assignment]
    """The last [[X]] in the text, X one of `choices` (e.g. A/B/C or a 1–10 rating)."""
    hits = [h for h in _VERDICT.findall(text) if h in choices]
    if not hits:
        raise ParseError("no_verdict", f"no [[X]] with X in {list(choices)}")
    return {"value": hits[-1]}


@parser("markers", fields=lambda o: [f["name"] for f in o.get("fields", [])[1:]])
def parse_markers(text: str, fields: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """Split text into named fields by start markers, in order. The first field's start may be
    null (= start of text). Example: [{name: value, start: null}, {name: critique, start: 'Critique:'}]."""
    if not fields:
        raise ConfigError("parser markers: `fields` is empty")
    out: dict[str, Any] = {}
    rest = text
    starts = [f.get("start") for f in fields]
    for i, f in enumerate(fields):
        start = starts[i]
        if start:
            if start not in rest:
                raise ParseError(f"missing_marker:{start.strip()}")
            rest = rest.split(start, 1)[1]
        nxt = starts[i + 1] if i + 1 < len(fields) else None
        piece = rest.split(nxt, 1)[0] if nxt and nxt in rest else rest
        key = "value" if i == 0 else f["name"]
        out[key] = piece.strip()
        if not out[key] and not f.get("allow_empty", False):
            raise ParseError(f"empty_field:{f['name']}")
    return out


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


@parser("json", fields=lambda o: list((o.get("schema") or {}).get("properties", {})))
def parse_json(text: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first JSON object in the text (fences allowed), checked against a simple schema."""
    m = _FENCE.search(text)
    body = m.group(1) if m else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ParseError("no_json", "no JSON object found")
    try:
        obj = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ParseError("bad_json", exc.msg) from None
    if schema:
        for key in schema.get("required", []):
            if key not in obj:
                raise ParseError(f"missing_key:{key}")
    return {"value": obj, **obj}
