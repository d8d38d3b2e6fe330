"""ReAlign post-filter: each deterministic rule on hand-made edge cases; the stage never drops."""

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError
from selfalign.stages.methods.realign.select import (
    choose,
    code_ok,
    has_code,
    length_ok,
    select_alpaca,
    select_no_robots,
    select_open_platypus,
    single_char_ok,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("```python\nprint(1)\n```", True),
        ("Use ``` fences", False),  # an unclosed fence is not a block
        ("```\n```", True),
        ("def f(x):\n    return x", True),  # unfenced Python
        ("def f(x): pass", False),  # 'def ' alone
        ("They return home.", False),  # 'return ' alone
        ("undefined returns", False),  # no 'def ' / 'return ' with the space
        ("", False),
    ],
)
def test_has_code(text, expected):
    assert has_code(text) is expected


def test_code_parity():
    assert code_ok("```x```", "Here:\n```x```") == (True, "ok")
    assert code_ok("plain", "plain too") == (True, "ok")
    assert code_ok("```x```", "the code was removed") == (False, "code_mismatch")
    assert code_ok("no code", "def f():\n    return 1") == (False, "code_mismatch")


@pytest.mark.parametrize(
    "orig_tokens, rew_tokens, ok",
    [(10, 6, True), (10, 5, False), (10, 4, False), (1, 1, True), (0, 1, True), (0, 0, False)],
)
def test_length_rule_boundary(orig_tokens, rew_tokens, ok):
    # count_tokens splits words and punctuation: "w w w" has 3 tokens
    original, rewrite = " ".join(["w"] * orig_tokens), " ".join(["w"] * rew_tokens)
    assert length_ok(original, rewrite, 0.5)[0] is ok


def test_length_ratio_is_a_parameter():
    assert length_ok("a b c d e f g h i j", "a b c d e f g h", 0.8) == (False, "too_short")
    assert length_ok("a b c d e f g h i j", "a b c d e f g h i", 0.8) == (True, "ok")


@pytest.mark.parametrize(
    "original, rewrite, ok",
    [
        ("C", "The answer is C.", True),
        ("C", "C", True),
        ("C", "(C) because 29 is prime", True),
        ("C", "Correct answer: D", False),  # 'C' only inside a word
        ("C", "The answer is c.", False),  # case matters
        ("?", "Use a question mark: ?", True),  # the original's unescaped regex raised here
        ("?", "No mark here", False),
        (".", "no dot", False),  # the original's '.' matched any character
        (".", "End.", False),  # a letter right before it
        (".", "The mark is: .", True),
        ("5", "It is 5.", True),
        ("5", "It is 15.", True),  # adjacent digits are not letters
        ("x", "x2 + 1", True),
        ("é", "café", False),  # non-ASCII letters count as letters
        (" B ", "Option B", True),  # the original is stripped first
    ],
)
def test_single_character_rule(original, rewrite, ok):
    assert single_char_ok(original, rewrite) is ok


def test_open_platypus_rules():
    op = select_open_platypus
    assert op("q", "B", "B is right", "x", 0.5) == (True, "single_char")
    assert op("q", "B", "Both", "x", 0.5) == (False, "single_char_missing")
    assert op("q", "True", "Yes.", "x", 0.5) == (True, "true_false")  # always accepted
    assert op("q", " False\n", "No", "x", 0.5) == (True, "true_false")
    assert op("q", "true", "yes", "x", 0.5) == (True, "ok")  # exact case only: general rules
    assert op("q", "```a```", "a", "x", 0.5) == (False, "code_mismatch")
    assert op("q", "one two three four", "one", "x", 0.5) == (False, "too_short")
    assert op("q", "one two", "one two three", "x", 0.5) == (True, "ok")


def test_true_false_agree_option():
    op = select_open_platypus
    assert op("q", "False", "It is true.", "x", 0.5, "accept") == (True, "true_false")
    assert op("q", "False", "It is true.", "x", 0.5, "agree") == (False, "true_false_changed")
    assert op("q", "False", "FALSE: it is a myth.", "x", 0.5, "agree") == (True, "true_false")
    assert op("q", "True", "Untrue", "x", 0.5, "agree") == (False, "true_false_changed")


def test_alpaca_rules_have_no_single_char_exception():
    assert select_alpaca("q", "C", "It is C", "x", 0.5) == (True, "ok")
    assert select_alpaca("q", "True", "", "x", 0.5) == (False, "too_short")


def test_no_robots_rules():
    nr = select_no_robots
    assert nr("q", "a b", "a b c", "default", 0.5) == (False, "default_category")
    assert nr("q", "a b", "Revised response: a b", "open_qa", 0.5) == (False, "marker_leak")
    assert nr("Organise my week", "a b", "a b c", "planning", 0.5) == (False, "planning_without_plan")
    assert nr("Make a plan for my week", "a b", "a b c", "planning", 0.5) == (True, "ok")
    assert nr("Give me a Plan", "a b", "a b c", "planning", 0.5) == (True, "ok")
    assert nr("q", "```x```", "x", "open_qa", 0.5) == (False, "code_mismatch")


@pytest.mark.parametrize("rewrite", [None, "", "   ", float("nan")])
def test_missing_rewrite_keeps_original(rewrite):
    assert choose("q", "orig", rewrite, "open_qa", "open_platypus", 0.5) == (False, "no_rewrite")


def test_stage_tags_every_row_and_never_drops(ctx):
    df = pd.DataFrame(
        {
            "row_id": ["0", "1", "2", "3"],
            "instruction": ["q"] * 4,
            "response": ["a long original answer here", "B", "```x```", "kept"],
            "rewrite": ["an even longer rewritten answer here, nicely", "B.", "x", None],
            "category": ["open_qa", "math_puzzles", "explain_code", "advice_giving"],
        }
    )
    out = run_stage(make_stage("select_rewrite", ctx, "sel"), df)
    assert len(out) == 4
    assert list(out.tag) == ["rewrite", "rewrite", "original", "original"]
    assert list(out.tag_reason) == ["ok", "single_char", "code_mismatch", "no_rewrite"]
    assert list(out.response) == [df.rewrite[0], "B.", "```x```", "kept"]
    assert list(out.original_response) == list(df.response)


def test_stage_rule_set_and_output_column(ctx):
    df = pd.DataFrame(
        {
            "row_id": ["0"],
            "instruction": ["q"],
            "response": ["C"],
            "rewrite": ["Certainly"],
            "category": ["default"],
        }
    )
    alpaca = run_stage(make_stage("select_rewrite", ctx, "a", rules="alpaca", output="final"), df)
    assert alpaca.final[0] == "Certainly" and alpaca.response[0] == "C"
    nr = run_stage(make_stage("select_rewrite", ctx, "n", rules="no_robots"), df)
    assert nr.tag_reason[0] == "default_category"
    with pytest.raises(ConfigError, match=r"sel\.rules: expected 'open_platypus'"):
        make_stage("select_rewrite", ctx, "sel", rules="gsm8k")
