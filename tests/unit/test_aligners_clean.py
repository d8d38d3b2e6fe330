"""The aligners pipeline's declarative cleaning: topic cleanup and the original's rules 1-10."""

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign import api


def stages(*overrides):
    built = api.validate(["pipeline=aligners", "model=test", *overrides])
    return {s.name: s for s in built.stages}, built.ctx


def test_topic_cleanup_drops_bad_characters_and_long_topics_then_balances():
    st, ctx = stages()
    df = pd.DataFrame(
        {
            "row_id": [str(i) for i in range(9)],
            "question_type": ["a"] * 6 + ["b"] * 3,
            "topic": [
                "http//x",
                "Caf\\u00e9",
                "Mail @home",
                "Snake_case",
                "L" * 50,
                "L" * 49,
                "Rivers",
                "rivers",
                "Lakes",
            ],
        }
    )
    out = run_stage(st["clean_topics"], df)
    assert list(out.topic) == ["L" * 49, "Rivers", "rivers", "Lakes"]
    assert ctx.stats.stage("clean_topics").drops == {"bad_characters": 4, "too_long": 1}
    out = run_stage(st["balance_topics"], out)
    assert out.groupby("question_type").size().tolist() == [1, 1]
    assert ctx.stats.stage("balance_topics").drops == {"duplicate": 1, "balance": 1}


GOOD = {
    "question": "How can I support a grieving friend?",
    "misaligned": "Tell them to get over it.",
    "critique": "The response is unkind, which breaks principle 1 (care).",
    "aligned": "Listen, offer practical help, and check in over the coming weeks.",
}

# one row per rule, each breaking only that rule
CASES = [
    ("r1_aligned_says_nothing", {"aligned": "Nothing to change here."}),
    ("r2_format_words_in_question", {"question": "type: advice, what should I do?"}),
    ("r3_labels_in_misaligned", {"misaligned": "Sure. Response: go away."}),
    ("r3_labels_in_misaligned", {"misaligned": "Whatever.\nRespectful response: fine"}),
    ("r3_labels_in_aligned", {"aligned": "Be kind.\ninput: next question"}),
    ("r4_tag_in_misaligned", {"misaligned": "<b>No.</b>"}),
    ("r5_none_misaligned", {"misaligned": "None"}),
    ("r5_none_misaligned", {"misaligned": "none"}),
    ("r6_code_question", {"question": "Can you write code for a game?"}),
    ("r6_code_question", {"question": "Which program should I use?"}),
    ("r6_code_question", {"question": "How do I compute my taxes?"}),
    ("r7_non_ascii_misaligned", {"misaligned": "Nope — ask someone else."}),
    ("r8_generic_critique", {"critique": "The response is incorrect."}),
    ("r9_formula_question", {"question": "What is the formula for happiness?"}),
]


def frame(cases):
    rows = [{**GOOD, **change, "row_id": f"r{i}"} for i, (_, change) in enumerate(cases)]
    return pd.DataFrame.from_records(rows + [{**GOOD, "row_id": "keep"}])


def test_each_original_rule_drops_its_row_and_is_counted_by_name():
    st, ctx = stages()
    out = run_stage(st["clean"], frame(CASES))
    assert list(out.row_id) == ["keep"]
    expected = {}
    for name, _ in CASES:
        expected[name] = expected.get(name, 0) + 1
    assert dict(ctx.stats.stage("clean").drops) == expected


@pytest.mark.parametrize(
    "kept",
    [
        {"aligned": "nothing is lost"},  # rule 1 is case-sensitive
        {"question": "Is my computer too old?"},  # "compute" only with a trailing space
        {"critique": "The response is incorrect, and rude."},  # rule 8 is an exact match
        {"misaligned": "None of your business."},  # rule 5 is an exact match
    ],
)
def test_near_misses_are_kept(kept):
    st, _ = stages()
    assert len(run_stage(st["clean"], frame([("x", kept)]))) == 2


def test_label_rule_follows_the_domain_markers():
    st, _ = stages("domain=helpful")
    df = frame(
        [
            ("r3", {"misaligned": "Meh.\nHelpfulness review: more"}),
            ("other", {"misaligned": "Meh.\nEthics review: more"}),
        ]
    )
    assert list(run_stage(st["clean"], df).row_id) == ["r1", "keep"]


def test_rule_10_removes_input_labels_then_strips():
    st, _ = stages()
    df = pd.DataFrame.from_records(
        [{**GOOD, "row_id": "0", "misaligned": " Input: Go away. ", "aligned": "Be kind.Input:"}]
    )
    out = run_stage(st["strip_input"], df)
    assert (out.misaligned[0], out.aligned[0]) == ("Go away.", "Be kind.")


def test_cleaning_an_empty_frame_keeps_nothing_and_does_not_fail():
    st, _ = stages()
    out = run_stage(st["clean"], frame([]).iloc[0:0])
    assert out.empty


def test_strip_substrings_removes_everywhere_then_strips(ctx):
    df = pd.DataFrame({"row_id": ["0", "1"], "y": ["  Input: hello ", "fine"], "z": ["a Input:b", None]})
    out = run_stage(make_stage("strip_substrings", ctx, "s", columns=["y", "z"], remove=["Input:"]), df)
    assert list(out.y) == ["hello", "fine"] and list(out.z) == ["a b", ""]
    assert list(df.y) == ["  Input: hello ", "fine"]  # input untouched
