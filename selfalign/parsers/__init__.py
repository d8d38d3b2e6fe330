"""Parsers for model output. Each returns a dict of fields ('value' is the main one) or raises
ParseError with a short reason; the engine applies the stage's failure policy (retry, drop, fail).

Every parser module is imported here, so every parser is registered whatever stages are used."""

from selfalign.parsers import basic, critique, label, labelled, revised
from selfalign.parsers.basic import (
    parse_json,
    parse_list,
    parse_markers,
    parse_score,
    parse_text,
    parse_verdict,
)
from selfalign.parsers.critique import marker_pattern, parse_critique_correction
from selfalign.parsers.label import normalize_label, parse_label
from selfalign.parsers.labelled import LABELS, PARSER_OPTIONS, parse_labelled_text
from selfalign.parsers.registry import PARSERS, Parser, get_parser, parser, parser_fields
from selfalign.parsers.revised import parse_revised

__all__ = [
    "LABELS",
    "PARSERS",
    "PARSER_OPTIONS",
    "Parser",
    "basic",
    "critique",
    "get_parser",
    "label",
    "labelled",
    "marker_pattern",
    "normalize_label",
    "parse_critique_correction",
    "parse_json",
    "parse_label",
    "parse_labelled_text",
    "parse_list",
    "parse_markers",
    "parse_revised",
    "parse_score",
    "parse_text",
    "parse_verdict",
    "parser",
    "parser_fields",
    "revised",
]
