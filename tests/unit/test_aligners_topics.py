"""Aligners topic pool: line validation, per-type dedup + balancing, and `grow_topics` rounds."""

import random

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError, ParseError
from selfalign.stages.methods.aligners.topics import dedup_balance, parse_topics, validate_topic


@pytest.mark.parametrize(
    "line, topic",
    [
        ("1. Climate change", "Climate change"),
        ("  10) Solar power", "Solar power"),
        ("- Wind farms", "Wind farms"),
        ("3. **Ocean tides**", "Ocean tides"),
        ("Marie Curie", "Marie Curie"),
        ("High-speed rail", "High-speed rail"),
        ("4.Tax law", "Tax law"),
    ],
)
def test_valid_topic_lines(line, topic):
    assert validate_topic(line) == (topic, "ok")


@pytest.mark.parametrize(
    "line, reason",
    [
        ("", "empty"),
        ("7. ", "empty"),
        ("**", "empty"),
        ("Four words are here", "too_many_words"),
        ("2. Here are ten new topics:", "too_many_words"),
        ("lowercase start", "not_capitalised"),
        ("Ölkrise", "not_capitalised"),  # the original's test is A-Z only
        ("3D printing", "not_capitalised"),
        ('"Quoted"', "not_capitalised"),
        ("Ends with dot.", "trailing_punctuation"),
        ("Which one?", "trailing_punctuation"),
        ("Rock (music)", "trailing_punctuation"),
        ("Pop music!", "trailing_punctuation"),
    ],
)
def test_invalid_topic_lines_have_a_reason(line, reason):
    assert validate_topic(line) == (None, reason)


def test_max_words_is_a_parameter():
    assert validate_topic("One two three four", max_words=4)[0] == "One two three four"
    assert validate_topic("One two", max_words=1) == (None, "too_many_words")


def test_parse_topics_keeps_valid_lines_and_counts_the_rest():
    reply = (
        "Here are some new topics for you:\n\n1. Tidal energy\n2. fossil fuels\n"
        "3. Carbon tax.\n4. Green hydrogen\n"
    )
    out = parse_topics(reply)
    assert out["value"] == ["Tidal energy", "Green hydrogen"]
    assert out["dropped"] == {"too_many_words": 1, "not_capitalised": 1, "trailing_punctuation": 1}


def test_parse_topics_reads_only_the_first_lines_and_fails_without_any_topic():
    reply = "\n".join(f"{i}. Topic {i}" for i in range(1, 31))
    assert len(parse_topics(reply, max_lines=20)["value"]) == 20
    with pytest.raises(ParseError) as exc:
        parse_topics("sorry, i cannot help with that.\n")
    assert exc.value.reason == "no_valid_topic"


def test_dedup_is_per_type_after_lowercasing_then_balances_to_the_smallest_type():
    pool = {"a": ["Rivers", "rivers", "Lakes", "Hills"], "b": ["Rivers", "Dunes"]}
    out, dups, balanced = dedup_balance(pool)
    assert out == {"a": ["Rivers", "Lakes"], "b": ["Rivers", "Dunes"]}
    assert (dups, balanced) == (1, 1)
    out, dups, balanced = dedup_balance(pool, balance=False)
    assert out["a"] == ["Rivers", "Lakes", "Hills"] and balanced == 0


SEEDS = pd.DataFrame(
    {
        "row_id": ["0", "1", "2"],
        "question_type": ["Questions about art", "Questions about history", "Questions about food"],
        "topic": ["Impressionism", "Printing press", "Street food"],
    }
)


def test_grow_topics_accumulates_balances_and_counts(ctx):
    stage = make_stage("grow_topics", ctx, "topics", epochs=2, prompts_per_type=2, temperature=1.0)
    out = run_stage(stage, SEEDS)
    sizes = out.groupby("question_type").size()
    assert len(sizes) == 3 and sizes.nunique() == 1 and sizes.iloc[0] > 1  # balanced, grown
    assert set(out.epoch) <= {0, 1, 2} and (out.epoch == 0).sum() == 3  # seeds kept first
    for _, group in out.groupby("question_type"):
        assert group.topic.str.lower().is_unique
        assert all(validate_topic(t)[0] == t for t in group.topic[group.epoch > 0])
    drops = ctx.stats.stage("topics").drops
    assert drops["topic:too_many_words"] > 0 and drops["topic:not_capitalised"] > 0
    (counts,) = ctx.llm.accounting.for_stage("topics").values()
    assert counts["requests"] == 12  # 3 types x 2 prompts x 2 rounds
    again = run_stage(
        make_stage("grow_topics", ctx, "topics", epochs=2, prompts_per_type=2, temperature=1.0), SEEDS
    )
    pd.testing.assert_frame_equal(out, again)  # deterministic


def test_grow_topics_zero_epochs_only_tidies_the_seeds(ctx):
    seeds = pd.concat([SEEDS, SEEDS.assign(row_id=["3", "4", "5"], topic=["impressionism", "Maps", "Tea"])])
    out = run_stage(make_stage("grow_topics", ctx, "t0", epochs=0), seeds)
    assert out.groupby("question_type").size().tolist() == [1, 1, 1]
    assert ctx.stats.stage("t0").drops == {"duplicate": 1, "balance": 2}


def test_one_prompt_per_topic_mode_follows_the_original(ctx):
    stage = make_stage("grow_topics", ctx, "t", prompts_per_type=None, examples=2)
    pool = {"small": ["A1", "A2", "A3"], "big": ["B1", "B2", "B3", "B4", "B5"]}
    plans = stage._plan(pool, random.Random(0))
    small = [ex for q, ex in plans if q == "small"]
    big = [ex for q, ex in plans if q == "big"]
    assert small == [["A1"], ["A2"], ["A3"]]  # < 2 x examples: that one topic alone
    assert len(big) == 5 and all(len(ex) == 2 for ex in big)


def test_preview_renders_the_prompt(ctx):
    stage = make_stage("grow_topics", ctx, "t", n_new=7)
    msgs = stage.preview(SEEDS, 2)
    assert len(msgs) == 2 and "Brainstorm 7 new topics" in msgs[0][-1]["content"]
    assert "1. Impressionism" in msgs[0][-1]["content"]


def test_template_with_unknown_variables_is_a_config_error(ctx, tmp_path):
    from selfalign.paths import resource_dir
    from selfalign.prompts import PromptLibrary

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "topics.j2").write_text("{{ question_type }} {{ colour }}")
    ctx.prompts = PromptLibrary([tmp_path, resource_dir("prompts")])
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.t\.prompt: .*\['colour'\]"):
        make_stage("grow_topics", ctx, "t", prompt="mine/topics")
    make_stage("grow_topics", ctx, "t", prompt="mine/topics", vars={"colour": "red"})


@pytest.mark.parametrize(
    "params, message",
    [
        ({"epochs": -1}, "epochs must be >= 0"),
        ({"prompts_per_type": 0}, "prompts_per_type must be >= 1"),
        ({"examples": 0}, "examples, n_new, max_words >= 1"),
    ],
)
def test_bad_params(ctx, params, message):
    with pytest.raises(ConfigError, match=message):
        make_stage("grow_topics", ctx, "t", **params)


def own_prompt(ctx, tmp_path, text):
    from selfalign.paths import resource_dir
    from selfalign.prompts import PromptLibrary

    (tmp_path / "mine").mkdir(exist_ok=True)
    (tmp_path / "mine" / "t.j2").write_text(text)
    ctx.prompts = PromptLibrary([tmp_path, resource_dir("prompts")])


def test_replies_without_a_topic_are_retried_then_rejected(ctx, tmp_path):
    own_prompt(ctx, tmp_path, "{{ question_type }}: say anything")  # no valid topic line
    out = run_stage(make_stage("grow_topics", ctx, "t", prompt="mine/t", epochs=1, retries=1), SEEDS)
    assert sorted(out.topic) == sorted(SEEDS.topic)  # only the seeds are left
    assert ctx.stats.stage("t").drops == {"parse:no_valid_topic": 3}
    (counts,) = ctx.llm.accounting.for_stage("t").values()
    assert counts["requests"] == 6  # 3 prompts x 2 attempts
    assert ctx.rejected.count == 3


def test_on_failure_fail_stops_the_run_with_the_raw_reply(ctx, tmp_path):
    from selfalign.errors import StageError

    own_prompt(ctx, tmp_path, "{{ question_type }}: say anything")
    stage = make_stage("grow_topics", ctx, "t", prompt="mine/t", retries=0, on_failure="fail")
    with pytest.raises(
        StageError,
        match=r"t: row e1\.\d failed after 1 attempt\(s\): "
        r"parse: no_valid_topic\. Raw output: 'Test answer",
    ):
        run_stage(stage, SEEDS)


def test_system_prompt_gets_the_same_values(ctx, tmp_path):
    own_prompt(ctx, tmp_path, "You brainstorm {{ n_new }} topics about {{ question_type }}.")
    stage = make_stage("grow_topics", ctx, "t", system_prompt="mine/t", n_new=4)
    system, user = stage.preview(SEEDS, 1)[0]
    assert system == {"role": "system", "content": "You brainstorm 4 topics about Questions about art."}
    assert user["role"] == "user" and "Brainstorm 4 new topics" in user["content"]
