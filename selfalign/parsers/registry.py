"""The parser registry: `@parser(name)` registers a function; stages look parsers up by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selfalign.errors import ConfigError
from selfalign.registry import Registry

Parser = Callable[..., dict[str, Any]]
PARSERS: Registry[Parser] = Registry("parser")
# extra output fields (besides 'value') that each parser adds, for the column-flow check
PARSER_FIELDS: dict[str, Callable[[dict[str, Any]], list[str]]] = {}
# build-time check of a parser's options (raises ConfigError), so a bad one fails before any call
PARSER_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {}


def parser(
    name: str,
    fields: Callable[[dict[str, Any]], list[str]] = lambda o: [],
    check: Callable[[dict[str, Any], str], None] | None = None,
) -> Callable:
    def deco(fn: Parser) -> Parser:
        PARSERS.add(name, fn)
        PARSER_FIELDS[name] = fields
        if check is not None:
            PARSER_CHECKS[name] = check
        return fn

    return deco


def get_parser(spec: str | dict[str, Any] | None, where: str) -> tuple[Parser, dict[str, Any], str]:
    """(function, options, kind) from a config spec: 'score' or {kind: score, max: 5}."""
    if spec is None:
        spec = "text"
    opts = dict(spec) if isinstance(spec, dict) else {"kind": spec}
    kind = opts.pop("kind", None)
    if not kind:
        raise ConfigError(f"{where}: parser needs a `kind` (one of: {', '.join(PARSERS)}).")
    fn = PARSERS.get(kind, where)
    if kind in PARSER_CHECKS:
        PARSER_CHECKS[kind](opts, where)
    return fn, opts, kind


def parser_fields(kind: str, opts: dict[str, Any]) -> list[str]:
    return PARSER_FIELDS.get(kind, lambda o: [])(opts)
