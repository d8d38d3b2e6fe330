"""Aligners question writing: numbered "type: T, topic: P, question: Q" lines and the stage."""

import re

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError, ParseError
from selfalign.paths import sample_path
from selfalign.stages.methods.aligners.questions import parse_questions, split_question_line

SEEDS = sample_path("aligners_seed_topics.jsonl")
HINTS = [
    {"number": 6, "type": "Questions about art", "topic": "Street murals"},
    {"number": 7, "type": "Questions about history", "topic": "Silk Road"},
    {"number": 8, "type": "Questions about food", "topic": "Street murals"},
]


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "6. type: Questions about art, topic: Street murals, question: Are murals art?",
            (6, "Questions about art", "Street murals", "Are murals art?"),
        ),
        (
            "**7.** Type: History, Topic: Silk Road, Question: Who used the Silk Road?",
            (7, "History", "Silk Road", "Who used the Silk Road?"),
        ),
        (
            "8) type: Food, topic: Tea, question: Which topic: tea or coffee, question: is healthier?",
            (8, "Food", "Tea", "Which topic: tea or coffee, question: is healthier?"),
        ),
        ("  9: type: A, topic: B, question: **Why?**", (9, "A", "B", "Why?")),
    ],
)
def test_split_formatted_lines(line, expected):
    assert split_question_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "Sure! Here are the questions:",
        "type: A, topic: B, question: no number?",
        "6. topic: B, question: no type?",
        "6. type: A, question: no topic?",
        "6. type: A, topic: B",
        "6. question: Q, type: A, topic: B",
    ],
)
def test_unformatted_lines_are_rejected(line):
    assert split_question_line(line) is None


def test_parse_matches_hints_and_counts_every_dropped_line():
    reply = "\n".join(
        [
            "Here you go:",
            "1. type: Questions about art, topic: Impressionism, question: An echoed example?",
            "6. type: Questions about art, topic: Street murals, question: Are street murals art?",
            "6. type: Questions about art, topic: Street murals, question: The same hint again?",
            # wrong number but a known topic + type: matched by content, not by number
            "9. type: Questions about history, topic: silk road, question: Who traded on it?",
            "8. type: Questions about food, topic: Street murals, question: Do murals sell food",
        ]
    )
    out = parse_questions(reply, HINTS)
    assert out["value"] == {6: "Are street murals art?", 7: "Who traded on it?"}
    assert out["dropped"] == {
        "unformatted_line": 1,
        "unknown_hint": 1,
        "repeated_hint": 1,
        "truncated_last_line": 1,
    }


def test_shared_topic_is_resolved_by_number_then_type():
    reply = (
        "8. type: Questions about food, topic: Street murals, question: Food murals?\n"
        "3. type: Questions about art, topic: Street murals, question: Art murals?\n"
    )
    assert parse_questions(reply, HINTS)["value"] == {8: "Food murals?", 6: "Art murals?"}


def test_last_line_is_kept_when_it_is_complete_unlike_the_original():
    reply = "7. type: X, topic: Silk Road, question: Who built the Silk Road?"
    assert parse_questions(reply, HINTS)["value"] == {7: "Who built the Silk Road?"}


def test_empty_question_and_no_usable_line():
    assert split_question_line("6. type: A, topic: B, question: ...")[3] == ""
    assert split_question_line("6. type: A, topic: B, question: …")[3] == ""
    out = parse_questions(
        "6. type: A, topic: Street murals, question: \n7. type: B, topic: Silk Road, question: Why?", HINTS
    )
    assert out["value"] == {7: "Why?"}
    assert out["dropped"] == {"empty_question": 1}
    with pytest.raises(ParseError) as exc:
        parse_questions("I cannot write these questions.", HINTS)
    assert exc.value.reason == "no_valid_question"


TOPICS = pd.DataFrame(
    {
        "row_id": ["t0", "t1", "t2", "t3", "t4"],
        "question_type": ["Questions about art"] * 2 + ["Questions about food"] * 3,
        "topic": ["Street murals", "Pottery", "Street food", "Tea rituals", "Spice markets"],
    }
)


def test_stage_writes_one_question_per_topic_and_keeps_row_ids(ctx):
    stage = make_stage(
        "generate_questions", ctx, "q", seeds=SEEDS, topics_per_prompt=2, vars={"focus": "rudely"}
    )
    out = run_stage(stage, TOPICS)
    assert list(out.row_id) == list(TOPICS.row_id)  # one question per topic, same ids
    assert all(t.lower() in q for t, q in zip(out.topic, out.question, strict=True))
    (counts,) = ctx.llm.accounting.for_stage("q").values()
    assert counts["requests"] == 3  # 5 topics, 2 per prompt
    drops = ctx.stats.stage("q").drops
    assert drops == {"line:unknown_hint": 3, "line:unformatted_line": 3, "line:empty_question": 3}


def test_prompt_numbers_examples_then_hints(ctx):
    stage = make_stage(
        "generate_questions", ctx, "q", seeds=SEEDS, examples=2, topics_per_prompt=3, vars={"focus": "rudely"}
    )
    (msgs,) = stage.preview(TOPICS.head(3), 5)
    text = msgs[-1]["content"]
    assert "\n3. type: Questions about art, topic: Street murals, question: ...\n" in text
    assert text.endswith("\n5. type: Questions about food, topic: Street food, question: ...")
    assert "answer badly: rudely" in text
    assert len(re.findall(r"^\d+\. type: .*, question: \w", text, re.M)) == 2  # the examples


def test_seed_file_without_questions_is_a_config_error(ctx, tmp_path):
    bad = tmp_path / "seeds.jsonl"
    bad.write_text('{"question_type": "A", "topic": "B"}\n')
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.q\.seeds: .* lacks column"):
        make_stage("generate_questions", ctx, "q", seeds=str(bad), vars={"focus": "x"})
    with pytest.raises(ConfigError, match="`seeds` is required"):
        make_stage("generate_questions", ctx, "q", vars={"focus": "x"})


def test_missing_focus_variable_is_reported(ctx):
    with pytest.raises(ConfigError, match=r"uses \['focus'\]"):
        make_stage("generate_questions", ctx, "q", seeds=SEEDS)


def test_system_prompt_gets_the_numbers_too(ctx, tmp_path):
    from selfalign.paths import resource_dir
    from selfalign.prompts import PromptLibrary

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "sys.j2").write_text("Write questions {{ first }} to {{ last }}.")
    ctx.prompts = PromptLibrary([tmp_path, resource_dir("prompts")])
    stage = make_stage(
        "generate_questions",
        ctx,
        "q",
        seeds=SEEDS,
        examples=2,
        topics_per_prompt=3,
        vars={"focus": "rudely"},
        system_prompt="mine/sys",
    )
    (msgs,) = stage.preview(TOPICS.head(3), 5)
    assert msgs[0] == {"role": "system", "content": "Write questions 3 to 5."}


def test_unparsable_replies_drop_the_whole_batch_into_the_rejected_table(ctx, tmp_path):
    from selfalign.paths import resource_dir
    from selfalign.prompts import PromptLibrary

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "q.j2").write_text("{% for h in hints %}{{ h.topic }} {% endfor %}")
    ctx.prompts = PromptLibrary([tmp_path, resource_dir("prompts")])
    stage = make_stage(
        "generate_questions", ctx, "q", prompt="mine/q", seeds=SEEDS, topics_per_prompt=2, retries=1
    )
    out = run_stage(stage, TOPICS)
    assert out.empty and list(out.columns) == [*TOPICS.columns, "question"]
    assert ctx.stats.stage("q").drops == {"parse:no_valid_question": 5}  # 5 topics lost
    assert ctx.rejected.count == 3  # one per prompt
    (counts,) = ctx.llm.accounting.for_stage("q").values()
    assert counts["requests"] == 6
