"""Typed params: unknown keys, wrong types and missing keys are errors naming the full path."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from selfalign.config import describe_params, doc, parse_params
from selfalign.errors import ConfigError


@dataclass
class P:
    prompt: str = doc("template")
    n: int = doc("samples", 1)
    temperature: float | None = doc("t", None)
    mode: Literal["a", "b"] = doc("mode", "a")
    stop: list[str] = field(default_factory=list)


def test_parses_and_widens_int_to_float():
    p = parse_params(P, {"prompt": "x", "temperature": 1, "stop": ["\n"]}, "pipeline.stages.g")
    assert p.temperature == 1.0 and isinstance(p.temperature, float) and p.stop == ["\n"]


def test_unknown_key_names_path_and_suggests():
    with pytest.raises(ConfigError) as e:
        parse_params(P, {"prompt": "x", "temprature": 0.2}, "pipeline.stages.g")
    msg = str(e.value)
    assert "pipeline.stages.g.temprature: unknown key" in msg
    assert "Did you mean 'temperature'?" in msg


def test_wrong_type_names_path_and_value():
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.g\.n: expected int, got 'five'"):
        parse_params(P, {"prompt": "x", "n": "five"}, "pipeline.stages.g")


def test_bool_is_not_an_int_and_literal_checked():
    with pytest.raises(ConfigError, match="expected int"):
        parse_params(P, {"prompt": "x", "n": True}, "w")
    with pytest.raises(ConfigError, match=r"expected 'a' \| 'b'"):
        parse_params(P, {"prompt": "x", "mode": "c"}, "w")


def test_list_items_checked_with_index():
    with pytest.raises(ConfigError, match=r"w\.stop\[1\]: expected str"):
        parse_params(P, {"prompt": "x", "stop": ["a", 3]}, "w")


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"w\.prompt: required key is missing"):
        parse_params(P, {}, "w")


def test_describe_params_lists_docs_and_defaults():
    rows = {r[0]: r for r in describe_params(P)}
    assert rows["n"][1:] == ("int", 1, "samples")
    assert rows["prompt"][2] == "(required)"
