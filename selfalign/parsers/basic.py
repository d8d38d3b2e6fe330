"""General-purpose parsers: text, score, numbered_list, verdict, markers, json."""

from __future__ import annotations

import functools
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
def parse_text(
    text: str,
    strip_prefixes: list[str] = (),
    cut_at: list[str] = (),  # type: ignore[assignment]
    strip_quotes: bool = True,
    min_chars: int = 1,
) -> dict[str, Any]:
    """Clean free text: cut at markers, drop a leading label like 'Instruction:', strip quotes."""
    out = _cut(text, list(cut_at)).strip()
    for prefix in strip_prefixes:
        if out.lower().startswith(prefix.lower()):
            out = out[len(prefix) :].strip()
    if strip_quotes and len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'":
        out = out[1:-1].strip()
    if len(out) < min_chars:
        raise ParseError("empty", f"fewer than {min_chars} characters")
    return {"value": out}


_SCORE = re.compile(
    r"score\s*\**\s*[:=]\s*\**\s*\[*\s*(-?\d+(?:\.\d+)?)"
    r"(?:[ \t]*\**[ \t]*(?:/|out[ \t]+of)[ \t]*(\d+(?:\.\d+)?))?",  # "4/10", "4 out of 10"
    re.I,
)


@parser("score", fields=lambda o: ["reasoning"], check=lambda o, w: check_score_options(o, w))
def parse_score(
    text: str,
    min: float = 1,
    max: float = 5,
    integer: bool = False,  # noqa: A002
    other_scale: str = "reject",
) -> dict[str, Any]:
    """The number after the LAST 'Score:' (also '**Score:** 4', 'Score: 4.5', 'score = 3').

    A score written on another scale ('Score: 4/10', '8 out of 10') is not a score on this one:
    other_scale=reject raises `other_scale` (the engine retries with a new sample); rescale maps
    it to value / denominator x max ('4/10' → 2.0 on a 1–5 scale; rounded when `integer`).
    'N/max' is taken as N."""
    hits = list(_SCORE.finditer(text))
    if not hits:
        raise ParseError("no_score", "no 'Score: N' found")
    value = float(hits[-1].group(1))
    if hits[-1].group(2) is not None and float(hits[-1].group(2)) != max:
        denominator = float(hits[-1].group(2))
        if other_scale != "rescale" or denominator <= 0:
            raise ParseError("other_scale", f"score {hits[-1].group(0)!r} is not on the 1–{max:g} scale")
        value = value / denominator * max
        value = float(round(value)) if integer else value
    if not (min <= value <= max):
        raise ParseError("score_out_of_range", f"{value} not in [{min}, {max}]")
    reasoning = text[: hits[-1].start()].strip().rstrip("*").strip()
    return {"value": int(value) if integer else value, "reasoning": reasoning}


def check_score_options(opts: dict[str, Any], where: str) -> None:
    if opts.get("other_scale", "reject") not in ("reject", "rescale"):
        raise ConfigError(f"{where}.other_scale: expected 'reject' | 'rescale', got {opts['other_scale']!r}.")


_ITEM = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s+(.+?)\s*$")


@parser("numbered_list")
def parse_list(
    text: str, min_items: int = 1, max_items: int = 100, allow_plain_lines: bool = False
) -> dict[str, Any]:
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


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    """A jsonschema validator of the draft the schema names ($schema; else the latest)."""
    from jsonschema.validators import validator_for

    schema = json.loads(schema_json)
    cls = validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def check_json_options(opts: dict[str, Any], where: str) -> None:
    """A schema that is not valid JSON Schema is a config error, found before any call."""
    from jsonschema.exceptions import SchemaError

    schema = opts.get("schema")
    if schema is None:
        return
    if not isinstance(schema, dict):
        raise ConfigError(f"{where}.schema: expected a JSON schema mapping, got {type(schema).__name__}.")
    try:
        _validator(json.dumps(schema, sort_keys=True))
    except SchemaError as exc:
        at = "/".join(map(str, exc.absolute_path)) or "(top)"
        raise ConfigError(
            f"{where}.schema: not a valid JSON schema at {at}: {exc.message}. Fix that keyword "
            "(see https://json-schema.org/understanding-json-schema)."
        ) from None


@parser(
    "json", fields=lambda o: list((o.get("schema") or {}).get("properties", {})), check=check_json_options
)
def parse_json(text: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first JSON object in the text (fences allowed), validated against `schema` with
    jsonschema: required keys, types, enums, ranges, nested objects — the whole schema."""
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
        _check(obj, _validator(json.dumps(schema, sort_keys=True)))
    return {"value": obj, **obj}


def _check(obj: Any, validator: Any) -> None:
    """Raise the most relevant schema error as missing_key:K or schema:PATH (for drop counts)."""
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(obj))
    if error is None:
        return
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        prefix = "".join(f"{p}." for p in error.absolute_path)
        raise ParseError(f"missing_key:{prefix}{missing[0] if missing else '?'}", error.message)
    at = ".".join(map(str, error.absolute_path)) or "(top)"
    raise ParseError(f"schema:{at}", error.message)
