"""Parsers on real-looking and malformed model outputs."""

import pytest

from selfalign.errors import ParseError
from selfalign.parsers import parse_json, parse_list, parse_markers, parse_score, parse_text, parse_verdict


@pytest.mark.parametrize(
    "text,value",
    [
        ("The answer is good.\nScore: 4", 4.0),
        ("Reasoning here.\n**Score:** 5", 5.0),
        ("Score: 2 at first, then revised.\nScore: 4.5", 4.5),
        ("score = 3", 3.0),
        ("Final Score: [[2]]", 2.0),
    ],
)
def test_score_variants(text, value):
    assert parse_score(text)["value"] == value


def test_score_takes_last_and_keeps_reasoning():
    out = parse_score("It follows the rubric. Score: 3\nActually better. Score: 5")
    assert out["value"] == 5.0 and out["reasoning"].startswith("It follows")


def test_score_missing_and_out_of_range():
    with pytest.raises(ParseError) as e:
        parse_score("no number here")
    assert e.value.reason == "no_score"
    with pytest.raises(ParseError) as e:
        parse_score("Score: 9")
    assert e.value.reason == "score_out_of_range"


def test_text_cut_prefix_and_quotes():
    out = parse_text(
        'Instruction: "Name three rivers."\nResponse: x',
        strip_prefixes=["Instruction:"],
        cut_at=["\nResponse:"],
    )
    assert out["value"] == "Name three rivers."
    with pytest.raises(ParseError):
        parse_text("   ")


def test_numbered_and_bulleted_list():
    text = "Here you go:\n1. Solar power\n2) Wind farms\n- Tidal energy\nThanks"
    assert parse_list(text)["value"] == ["Solar power", "Wind farms", "Tidal energy"]
    with pytest.raises(ParseError):
        parse_list("no list", min_items=1)


def test_verdict_last_valid_choice():
    assert parse_verdict("[[A]] hmm, no: [[B]]")["value"] == "B"
    assert parse_verdict("Rating: [[7]]", choices=[str(i) for i in range(1, 11)])["value"] == "7"
    with pytest.raises(ParseError):
        parse_verdict("[[D]]")


def test_markers_split_and_missing_marker():
    fields = [
        {"name": "response", "start": None},
        {"name": "critique", "start": "Critique:"},
        {"name": "fixed", "start": "Fixed:"},
    ]
    out = parse_markers("bad answer\nCritique: rude\nFixed: kind answer", fields=fields)
    assert out == {"value": "bad answer", "critique": "rude", "fixed": "kind answer"}
    with pytest.raises(ParseError) as e:
        parse_markers("bad answer\nFixed: x", fields=fields)
    assert e.value.reason == "missing_marker:Critique:"


def test_json_with_fences_and_required_keys():
    out = parse_json('Sure!\n```json\n{"a": 1, "b": "x"}\n```', schema={"required": ["a"]})
    assert out["a"] == 1 and out["value"] == {"a": 1, "b": "x"}
    with pytest.raises(ParseError):
        parse_json('{"b": 2}', schema={"required": ["a"]})
    with pytest.raises(ParseError):
        parse_json("{not json}")


SCHEMA = {
    "type": "object",
    "required": ["score", "label"],
    "properties": {
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "label": {"enum": ["good", "bad"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "detail": {"type": "object", "required": ["why"], "properties": {"why": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    "text,reason",
    [
        ('{"score": "seven", "label": "good"}', "schema:score"),  # passed the old required-only check
        ('{"score": 7.5, "label": "good"}', "schema:score"),
        ('{"score": 11, "label": "good"}', "schema:score"),
        ('{"score": 0, "label": "good"}', "schema:score"),
        ('{"score": 7, "label": "meh"}', "schema:label"),
        ('{"score": 7, "label": "good", "tags": ["a", 3]}', "schema:tags.1"),
        ('{"score": 7, "label": "good", "detail": {}}', "missing_key:detail.why"),
        ('{"label": "good"}', "missing_key:score"),
    ],
)
def test_json_is_validated_against_the_whole_schema(text, reason):
    with pytest.raises(ParseError) as e:
        parse_json(text, schema=SCHEMA)
    assert e.value.reason == reason and e.value.detail


def test_json_that_fits_the_schema():
    out = parse_json('{"score": 7, "label": "bad", "tags": ["x"], "detail": {"why": "w"}}', schema=SCHEMA)
    assert out["score"] == 7 and out["label"] == "bad"


def test_a_bad_schema_is_a_config_error_before_any_call(ctx):
    from helpers import make_stage

    from selfalign.errors import ConfigError

    bad = {"kind": "json", "schema": {"type": "object", "properties": {"score": {"type": "integr"}}}}
    with pytest.raises(
        ConfigError, match=r"x\.parser\.schema: not a valid JSON schema at properties/score/type"
    ):
        make_stage("generate_text", ctx, "x", prompt="wizardlm_aaa/generate_instruction", parser=bad)


@pytest.mark.parametrize(
    "text,value",
    [
        ("Score: 4/5", 4.0),  # the right denominator is just the score
        ("Score: 4/10", 2.0),
        ("**Score:** 8 out of 10", 4.0),
        ("Score: 90 / 100", 4.5),
    ],
)
def test_score_on_another_scale_is_rejected_or_rescaled(text, value):
    if value != 4.0 or "/5" not in text:
        with pytest.raises(ParseError) as e:
            parse_score(text)
        assert e.value.reason == "other_scale"
    assert parse_score(text, other_scale="rescale")["value"] == value


def test_rescaled_integer_scores_round():
    assert parse_score("Score: 7/10", integer=True, other_scale="rescale")["value"] == 4  # 3.5 → 4
    assert parse_score("Score: 4.9", integer=True)["value"] == 4  # no rescaling: truncated as before
