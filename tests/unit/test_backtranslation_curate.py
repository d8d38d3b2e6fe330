"""Self-curation: the score parser on judge-like outputs, and `curate_pairs` (threshold, retry
policy through the engine, best-of-n, iterations with a model per round) with scripted
test-model judges."""

import json

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError, ParseError, StageError
from selfalign.llm.config import ModelConfig
from selfalign.parsers import parse_score
from selfalign.stages.methods.backtranslation.curate import copy_overlap

PROMPTS = {"prompt": "backtranslation/curate", "system_prompt": "backtranslation/curate_system"}


@pytest.mark.parametrize(
    "text,value",
    [
        ("Clear and complete.\nScore: 5", 5.0),
        ("Close to ideal.\nScore: 4.5", 4.5),  # fails A5, passes A4 (the original read "4")
        ("Solid answer.\n**Score:** 4", 4.0),
        ("**Score**: 3", 3.0),
        ("Score: **2**", 2.0),
        ("Score:4.", 4.0),
        ("SCORE: 1", 1.0),
        ("Score: 4/5", 4.0),
        ("A 5 means perfect. Score: 1 is for spam.\nOverall it is fine.\nScore: 4", 4.0),  # the last
        ("Score: 3\nScore: <rating>", 3.0),  # an echoed placeholder after the real score is ignored
    ],
)
def test_score_parser_on_judge_outputs(text, value):
    assert parse_score(text)["value"] == value


def test_score_parser_keeps_reasoning_before_the_score():
    assert parse_score("It is on topic but wordy.\n**Score:** 4")["reasoning"] == "It is on topic but wordy."


@pytest.mark.parametrize(
    "text,reason",
    [
        ("The answer is fine.", "no_score"),
        ("Score: <rating>", "no_score"),
        ("Score: five", "no_score"),
        ("Score: 0", "score_out_of_range"),
        ("Score: 10/10", "other_scale"),  # not 10 on the 5-point scale
        ("Score: 6", "score_out_of_range"),
    ],
)
def test_score_parser_failures_trigger_the_retry_policy(text, reason):
    with pytest.raises(ParseError) as e:
        parse_score(text)
    assert e.value.reason == reason


def judge(ctx, name, reply):
    """Register a test-model judge whose reply (a Jinja template) sees the pair via `m`."""
    rule = {"match": r"### Instruction\n(?P<ins>[^\n]*)", "reply": reply}
    ctx.llm.models[name] = ModelConfig(provider="test", name=name, rules=[rule])
    return name


def pairs(*instructions, **extra):
    n = len(instructions)
    return pd.DataFrame(
        {
            "row_id": [str(i) for i in range(n)],
            "instruction": list(instructions),
            "response": [f"answer {i}" for i in range(n)],
            **extra,
        }
    )


# the judge reads the score to give from the instruction text, e.g. "q s4" -> Score: 4
BY_NAME = "Looks {{ m.group('ins') }}.\nScore: {{ m.group('ins').split('s')[-1] }}"


def test_threshold_keeps_score_at_or_above(ctx):
    judge(ctx, "j", BY_NAME)
    stage = make_stage("curate_pairs", ctx, "cur", model="j", threshold=4, **PROMPTS)
    out = run_stage(stage, pairs("q s5", "q s4", "q s3", "q s4.5", "q s1"))
    assert list(out.instruction) == ["q s5", "q s4", "q s4.5"]
    assert list(out.score) == [5.0, 4.0, 4.5]
    assert out.reasoning.iloc[0] == "Looks q s5."
    assert ctx.stats.stage("cur").drops == {"below_threshold": 2}


def test_default_threshold_is_five_and_null_keeps_everything(ctx):
    judge(ctx, "j", BY_NAME)
    df = pairs("q s5", "q s4.5", "q s2")
    assert list(run_stage(make_stage("curate_pairs", ctx, "a", model="j", **PROMPTS), df).score) == [5.0]
    assert len(run_stage(make_stage("curate_pairs", ctx, "b", model="j", threshold=None, **PROMPTS), df)) == 3


def test_missing_score_is_retried_hotter_then_dropped_to_rejected(ctx):
    # "late" answers without a score on the first try only; "never" always omits it
    judge(
        ctx,
        "j",
        "{% if 'never' in m.group('ins') or sample < 1000 and 'late' in m.group('ins')"
        " %}I like it.{% else %}Good.\nScore: 5{% endif %}",
    )
    seen = []
    real = ctx.llm.call

    async def spy(stage, ref, req, *rest):
        seen.append((req.row_id, req.sample, req.param_dict.get("temperature")))
        return await real(stage, ref, req, *rest)

    ctx.llm.call = spy
    stage = make_stage(
        "curate_pairs", ctx, "cur", model="j", temperature=0.0, retries=2, retry_temperature=0.8, **PROMPTS
    )
    out = run_stage(stage, pairs("ok", "late", "never"))
    assert list(out.instruction) == ["ok", "late"]
    assert sorted(s for s in seen if s[0] == "1") == [("1", 0, 0.0), ("1", 1000, 0.8)]
    assert len([s for s in seen if s[0] == "2"]) == 3
    rejected = [json.loads(x) for x in (ctx.run_dir / "rejected.jsonl").read_text().splitlines()]
    assert [(r["row_id"], r["reason"], r["attempts"], r["iteration"]) for r in rejected] == [
        ("2", "parse: no_score", 3, 1)
    ]
    assert ctx.stats.stage("cur").drops == {"parse:no_score": 1}


def test_on_failure_fail_stops_the_run(ctx):
    judge(ctx, "j", "No verdict.")
    stage = make_stage("curate_pairs", ctx, "cur", model="j", retries=0, on_failure="fail", **PROMPTS)
    with pytest.raises(
        StageError,
        match=r"^cur: row 0, iteration=1 failed after 1 attempt\(s\): parse: "
        r"no_score",
    ):
        run_stage(stage, pairs("a"))


def test_retries_sample_hotter_by_default(ctx):
    judge(ctx, "j", "{% if sample < 1000 %}No score yet.{% else %}Fine.\nScore: 5{% endif %}")
    temps = []
    real = ctx.llm.call

    async def spy(stage, ref, req, *rest):
        temps.append(req.param_dict.get("temperature"))
        return await real(stage, ref, req, *rest)

    ctx.llm.call = spy
    stage = make_stage("curate_pairs", ctx, "cur", model="j", temperature=0.0, **PROMPTS)
    assert stage.params.retry_temperature == 0.7
    assert list(run_stage(stage, pairs("a")).score) == [5.0]
    assert temps == [0.0, 0.7]


def test_a_failed_round_two_is_rejected_with_its_iteration_and_round_model(ctx):
    judge(ctx, "m0", BY_NAME)
    judge(ctx, "m1", "{% if 'b' in m.group('ins') %}No verdict.{% else %}Ok.\nScore: 5{% endif %}")
    stage = make_stage("curate_pairs", ctx, "cur", iterations=2, models=["m0", "m1"], retries=1, **PROMPTS)
    out = run_stage(stage, pairs("a s5", "b s5"))
    assert list(out.instruction) == ["a s5"]
    rejected = [json.loads(x) for x in (ctx.run_dir / "rejected.jsonl").read_text().splitlines()]
    assert [(r["row_id"], r["reason"], r["attempts"], r["iteration"]) for r in rejected] == [
        ("1", "parse: no_score", 2, 2)
    ]
    assert ctx.stats.stage("cur").drops == {"iter2:parse:no_score": 1}
    per_model = ctx.llm.accounting.for_stage("cur")
    assert [per_model[ctx.llm.identity(m)]["requests"] for m in ("m0", "m1")] == [2, 3]


def test_a_misspelt_param_gets_did_you_mean(ctx):
    with pytest.raises(
        ConfigError,
        match=r"pipeline\.stages\.cur\.treshold: unknown key\. Did "
        r"you mean 'threshold'\?",
    ):
        make_stage("curate_pairs", ctx, "cur", treshold=4, **PROMPTS)


def test_best_candidate_per_text_when_parent_id_exists(ctx):
    judge(ctx, "j", BY_NAME)
    df = pairs("x s4", "x s5", "y s5", "y s5", "z s3", parent_id=["0", "0", "1", "1", "2"])
    out = run_stage(make_stage("curate_pairs", ctx, "cur", model="j", threshold=4, **PROMPTS), df)
    assert list(out.row_id) == ["1", "2"]  # tie between 2 and 3: the first wins
    assert ctx.stats.stage("cur").drops == {"below_threshold": 1, "not_best_per:parent_id": 2}


def test_two_iterations_use_their_own_models_and_rescore_all(ctx):
    judge(ctx, "m0", BY_NAME)
    judge(ctx, "m1", "Round two.\nScore: {{ 5 if 'b' in m.group('ins') else 2 }}")
    stage = make_stage("curate_pairs", ctx, "cur", iterations=2, models=["m0", "m1"], **PROMPTS)
    out = run_stage(stage, pairs("a s5", "b s2", "c s5"))
    # round 2 re-scores every pair (the paper's scheme), so "b" comes back and the others go
    assert list(out.instruction) == ["b s2"]
    assert out.score_iter1.iloc[0] == 2.0 and out.score_iter2.iloc[0] == out.score.iloc[0] == 5.0
    assert out.reasoning_iter2.iloc[0] == "Round two."
    assert ctx.stats.stage("cur").drops == {"iter2:below_threshold": 2}


def test_rescore_kept_only_scores_what_the_previous_round_kept(ctx):
    judge(ctx, "m0", BY_NAME)
    judge(ctx, "m1", "Round two.\nScore: {{ 5 if 'c' in m.group('ins') else 3 }}")
    stage = make_stage(
        "curate_pairs", ctx, "cur", iterations=2, models=["m0", "m1"], rescore="kept", **PROMPTS
    )
    out = run_stage(stage, pairs("a s5", "b s2", "c s5"))
    assert list(out.instruction) == ["c s5"]
    assert ctx.stats.stage("cur").drops == {"iter1:below_threshold": 1, "iter2:below_threshold": 1}
    per_model = ctx.llm.accounting.for_stage("cur")
    assert [per_model[ctx.llm.identity(m)]["requests"] for m in ("m0", "m1")] == [3, 2]


def test_model_per_iteration_errors_name_the_path(ctx):
    with pytest.raises(
        ConfigError,
        match=r"pipeline\.stages\.cur: `models` has 1 entries but "
        r"iterations=2.*curation\.models=\[null,m1\]",
    ):
        make_stage("curate_pairs", ctx, "cur", iterations=2, models=[None], **PROMPTS)
    with pytest.raises(
        ConfigError,
        match=r"pipeline\.stages\.cur\.models\[1\]: unknown model "
        r"'nope'",
    ):
        make_stage("curate_pairs", ctx, "cur", iterations=2, models=[None, "nope"], **PROMPTS)


def test_empty_input_gives_empty_output_with_columns(ctx):
    out = run_stage(make_stage("curate_pairs", ctx, "cur", **PROMPTS), pairs().astype(str))
    assert out.empty and {"score", "reasoning"} <= set(out.columns)


def test_reasoning_written_after_a_leading_score_is_kept(ctx):
    stage = make_stage("curate_pairs", ctx, "cur", **PROMPTS)
    assert stage.parse("Score: 4\n\nClear, but a bit long.") == {
        "value": 4.0,
        "reasoning": "Clear, but a bit long.",
    }
    assert stage.parse("Fine overall.\nScore: 3\nThanks!")["reasoning"] == "Fine overall."
    assert stage.parse("Score: 5")["reasoning"] == ""


@pytest.mark.parametrize(
    "instruction,response,overlap",
    [
        ("Boil the eggs, then cool them.", "Boil the eggs, then cool them. Peel.", 1.0),
        ("Amber leaves drifting, and one branch", "Amber leaves drifting\none branch", 0.6),
        ("How do I boil eggs?", "Boil the eggs for nine minutes.", 0.0),
        ("Eggs", "Eggs are good.", 0.0),  # a single word has no bigram
        ("", "anything", 0.0),
    ],
)
def test_copy_overlap(instruction, response, overlap):
    assert copy_overlap(instruction, response) == pytest.approx(overlap)


def test_copied_text_is_dropped_before_judging(ctx):
    judge(ctx, "j", BY_NAME)
    df = pd.DataFrame(
        {
            "row_id": ["0", "1"],
            "instruction": ["q s5", "mix one part coffee s5"],
            "response": ["answer", "First mix one part coffee s5 with water."],
        }
    )
    stage = make_stage("curate_pairs", ctx, "cur", model="j", **PROMPTS)
    assert list(run_stage(stage, df).row_id) == ["0"]
    assert ctx.stats.stage("cur").drops == {"copied_response": 1}
    per_model = ctx.llm.accounting.for_stage("cur")
    assert per_model[ctx.llm.identity("j")]["requests"] == 1
    off = make_stage("curate_pairs", ctx, "off", model="j", max_copy_overlap=None, **PROMPTS)
    assert len(run_stage(off, df)) == 2


def test_a_ten_point_score_is_not_kept_at_a4(ctx, test_model):
    """'Score: 4/10' is not 4 on the 5-point scale: retried, then dropped; or rescaled to 2."""
    test_model.queue("Decent.\nScore: 4/10", "Decent.\nScore: 8/10", "Decent.\nScore: 4/10")
    stage = make_stage("curate_pairs", ctx, "cur", threshold=4, retries=1, **PROMPTS)
    out = run_stage(stage, pairs("q one"))
    assert out.empty and ctx.stats.stage("cur").drops == {"parse:other_scale": 1}
    assert len(test_model.requests) == 2  # the first try and one retry
    rescaled = make_stage("curate_pairs", ctx, "re", threshold=None, other_scale="rescale", **PROMPTS)
    assert list(run_stage(rescaled, pairs("q two")).score) == [2.0]
