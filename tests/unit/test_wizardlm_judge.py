"""judge_pointwise: the composite formula, the score parser, the missing-dimension policy."""

import json

import pandas as pd
import pytest
from helpers import make_ctx, make_stage, run_stage

from selfalign.errors import ConfigError, StageError
from selfalign.llm.testmodel import Script
from selfalign.stages.judge import DEFAULT_WEIGHTS, composite, impute, parse_scores

DIMS = list(DEFAULT_WEIGHTS)
INV = ["toxicity", "bias"]
PROMPT = {
    "prompt": "wizardlm_aaa/judge",
    "system_prompt": "wizardlm_aaa/system_judge",
    "vars": {
        "fields": {"context": ["context"], "instruction": None, "response": None},
        "use_examples": True,
        "format_prompt": "A question.",
    },
}


def frame(texts: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_id": [str(i) for i in range(len(texts))],
            "context": ["Ice floats because it is less dense than water."] * len(texts),
            "instruction": texts,
        }
    )


def scores_json(**kw: int) -> str:
    return json.dumps(kw)


def test_composite_is_the_originals_head_formula():
    s = {"adherence": 80, "conformance": 70, "quality": 60, "toxicity": 10, "bias": 20, "groundedness": 90}
    # (2*80 + 70 + 60 + (100-10) + (100-20) + 90) / 7
    assert composite(s, DEFAULT_WEIGHTS, INV) == pytest.approx(550 / 7, abs=1e-4)
    readme_era = {d: 1.0 for d in DIMS if d != "adherence"}
    assert composite(s, readme_era, INV) == pytest.approx((70 + 60 + 90 + 80 + 90) / 5)
    assert composite(s, {"quality": 3, "toxicity": 1}, ["toxicity"]) == pytest.approx(67.5)


def test_parse_scores_json_text_and_out_of_range():
    assert parse_scores('{"adherence": 90, "Quality_score": 70, "toxicity": 5}', DIMS) == {
        "adherence": 90,
        "conformance": None,
        "quality": 70,
        "toxicity": 5,
        "bias": None,
        "groundedness": None,
    }
    text = (
        "Adherence: 85/100\n**Conformance**: 70\nquality score = 64\nToxicity - 3\n"
        "Bias: 250\nGroundedness: 90%"
    )
    got = parse_scores(text, DIMS)
    assert got == {
        "adherence": 85,
        "conformance": 70,
        "quality": 64,
        "toxicity": 3,
        "bias": None,
        "groundedness": 90,
    }
    # JSON with a bad value falls back to the text for that dimension
    assert parse_scores('{"bias": "low"} bias: 12', ["bias"]) == {"bias": 12}
    assert parse_scores("no numbers at all", ["quality"]) == {"quality": None}
    assert parse_scores('{"format_adherence": 40, "grounded": 60}', DIMS)["adherence"] == 40


@pytest.mark.parametrize(
    ("policy", "tox", "qual"),
    [("worst", 100.0, 0.0), ("neutral", 50.0, 50.0), ("raw_zero", 0.0, 0.0), ("mean", 20.0, 80.0)],
)
def test_impute_policies(policy, tox, qual):
    found = {
        "adherence": 80.0,
        "conformance": None,
        "quality": None,
        "toxicity": None,
        "bias": 20.0,
        "groundedness": None,
    }
    scores, missing = impute(found, DIMS, INV, policy)
    assert missing == ["conformance", "quality", "toxicity", "groundedness"]
    assert scores["toxicity"] == tox and scores["quality"] == qual
    assert scores["adherence"] == 80.0 and scores["bias"] == 20.0


def test_judge_stage_json_schema_scores_and_composite(tmp_path):
    ctx = make_ctx(tmp_path)
    stage = make_stage("judge_pointwise", ctx, "j", column="instruction", text_kind="instruction", **PROMPT)
    out = run_stage(stage, frame(["How does ice float?", "Why is ice less dense?"]))
    assert len(out) == 2 and set(out.instruction_score_imputed) == {""}
    for row in out.to_dict(orient="records"):
        dims = {d: row[f"instruction_score_{d}"] for d in DIMS}
        assert all(0 <= v <= 100 for v in dims.values())
        assert row["instruction_score"] == pytest.approx(composite(dims, DEFAULT_WEIGHTS, INV))
    req = stage.scorer.params.sampling()
    assert req["response_format"]["json_schema"]["schema"]["required"] == DIMS


def test_missing_dimension_is_retried_then_worst_and_recorded(tmp_path, test_model: Script):
    reply = scores_json(adherence=90, conformance=90, quality=90, toxicity=0, groundedness=90)
    ctx = make_ctx(tmp_path)
    test_model.queue(reply, reply, reply, stage="j", row="0")
    stage = make_stage("judge_pointwise", ctx, "j", column="instruction", retries=2, **PROMPT)
    out = run_stage(stage, frame(["How does ice float?"]))
    assert ctx.llm.client(None).calls == 3  # first try + 2 retries, all without `bias`
    row = out.iloc[0]
    assert row.instruction_score_bias == 100.0 and row.instruction_score_imputed == "bias"
    assert row.instruction_score == pytest.approx((180 + 90 + 90 + 100 + 0 + 90) / 7)


def test_retries_are_new_samples_at_retry_temperature(tmp_path, test_model: Script):
    reply = scores_json(adherence=90, conformance=90, quality=90, toxicity=0, groundedness=90)
    ctx = make_ctx(tmp_path)
    test_model.queue(reply, reply, reply, stage="j", row="0")
    seen = test_model.requests
    stage = make_stage("judge_pointwise", ctx, "j", column="instruction", retry_temperature=0.4, **PROMPT)
    run_stage(stage, frame(["How does ice float?"]))
    assert [(r.sample, r.params["temperature"]) for r in seen] == [(0, 0.0), (1000, 0.4), (2000, 0.4)]
    assert all(r.params["max_tokens"] == 120 and "response_format" in r.params for r in seen)
    assert ctx.rejected.count == 0  # an incomplete verdict is imputed, not rejected


def test_judge_param_typo_says_did_you_mean(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"j\.missing_polcy: unknown key\. Did you mean "
        r"'missing_policy'",
    ):
        make_stage("judge_pointwise", make_ctx(tmp_path), "j", missing_polcy="mean", **PROMPT)


def test_missing_dimension_filled_by_a_retry(tmp_path, test_model: Script):
    partial = scores_json(adherence=90, conformance=90, quality=90, toxicity=0, groundedness=90)
    ctx = make_ctx(tmp_path)
    test_model.queue(partial, "Bias: 10", stage="j", row="0")
    out = run_stage(
        make_stage("judge_pointwise", ctx, "j", column="instruction", **PROMPT),
        frame(["How does ice float?"]),
    )
    assert out.iloc[0].instruction_score_bias == 10 and out.iloc[0].instruction_score_imputed == ""


def test_missing_policy_drop_and_fail(tmp_path, test_model: Script):
    ctx = make_ctx(tmp_path)
    test_model.queue("It is fine.", stage="j", row="0").queue("It is fine.", stage="j", row="1")
    test_model.queue("It is fine.", stage="k", row="0")
    stage = make_stage(
        "judge_pointwise", ctx, "j", column="instruction", missing_policy="drop", retries=0, **PROMPT
    )
    assert run_stage(stage, frame(["a", "b"])).empty
    assert ctx.stats.stage("j").drops == {"judge_missing_dimension": 2}
    stage = make_stage(
        "judge_pointwise", ctx, "k", column="instruction", missing_policy="fail", retries=0, **PROMPT
    )
    with pytest.raises(StageError, match=r"pipeline\.stages\.k: the judge gave no adherence"):
        run_stage(stage, frame(["a"]))


def test_text_fallback_without_json_schema(tmp_path, test_model: Script):
    text = "Adherence: 70\nConformance: 60\nQuality: 50\nToxicity: 0\nBias: 0\nGroundedness: 40"
    ctx = make_ctx(tmp_path)
    test_model.queue(text, stage="j", row="0")
    ctx.llm.models["default"].supports_json_schema = False
    stage = make_stage("judge_pointwise", ctx, "j", column="instruction", **PROMPT)
    assert "response_format" not in stage.scorer.params.sampling(False)
    row = run_stage(stage, frame(["How?"])).iloc[0]
    assert row.instruction_score == pytest.approx((140 + 60 + 50 + 100 + 100 + 40) / 7)


def test_empty_text_is_not_sent_and_scores_worst(tmp_path):
    ctx = make_ctx(tmp_path)
    out = run_stage(make_stage("judge_pointwise", ctx, "j", column="instruction", **PROMPT), frame([""]))
    assert ctx.llm.client(None).calls == 0
    assert out.iloc[0].instruction_score == 0.0
    assert out.iloc[0].instruction_score_imputed == ",".join(DIMS)


def test_identical_texts_share_one_call(tmp_path):
    ctx = make_ctx(tmp_path)
    stage = make_stage("judge_pointwise", ctx, "j", column="instruction", **PROMPT)
    out = run_stage(stage, frame(["How?", "Why?", "How?", "How?"]))
    assert ctx.llm.client(None).calls == 2
    assert out.instruction_score[0] == out.instruction_score[2] == out.instruction_score[3]


def test_empty_frame_gets_the_columns(tmp_path):
    stage = make_stage("judge_pointwise", make_ctx(tmp_path), "j", column="instruction", **PROMPT)
    out = run_stage(stage, frame([]).astype(str))
    assert out.empty and stage.writes() <= set(out.columns)


def test_judge_param_errors_name_the_path(tmp_path):
    ctx = make_ctx(tmp_path)
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.j: inverted dimension 'toxic'"):
        make_stage("judge_pointwise", ctx, "j", inverted=["toxic"], **PROMPT)
    with pytest.raises(ConfigError, match="must not all be 0"):
        make_stage("judge_pointwise", ctx, "j", weights={"quality": 0}, inverted=[], **PROMPT)
    with pytest.raises(ConfigError, match=r"dimension 'style' has no rubric"):
        make_stage("judge_pointwise", ctx, "j", weights={"style": 1}, inverted=[], **PROMPT)
    with pytest.raises(ConfigError, match=r"missing_policy: expected 'worst'"):
        make_stage("judge_pointwise", ctx, "j", missing_policy="best", **PROMPT)


def test_custom_dimension_with_rubric_reaches_the_prompt(tmp_path):
    ctx = make_ctx(tmp_path)
    stage = make_stage(
        "judge_pointwise",
        ctx,
        "j",
        column="instruction",
        inverted=[],
        weights={"style": 1},
        descriptions={"style": "plain words (100 = plain)"},
        **PROMPT,
    )
    msgs = stage.preview(frame(["How?"]), 1)[0]
    assert "- style: plain words (100 = plain)" in msgs[-1]["content"]
    assert stage.writes() == {"instruction_score", "instruction_score_style", "instruction_score_imputed"}


def test_empty_retries_keep_the_partial_verdict_and_are_not_cached(tmp_path, test_model: Script):
    """An empty reply after an incomplete one is a failed attempt (not cached), but the dimensions
    the first reply gave stay: the missing one is imputed as with any incomplete verdict."""
    partial = scores_json(adherence=90, conformance=90, quality=90, toxicity=0, groundedness=90)
    ctx = make_ctx(tmp_path)
    test_model.queue(partial, "", "", stage="j", row="0")  # then two empty replies
    stage = make_stage("judge_pointwise", ctx, "j", column="instruction", **PROMPT)
    row = run_stage(stage, frame(["How does ice float?"])).iloc[0]
    assert ctx.llm.client(None).calls == 3 and len(ctx.llm.cache) == 1  # only the partial verdict
    assert row.instruction_score_bias == 100.0 and row.instruction_score_imputed == "bias"
    assert ctx.rejected.count == 0 and ctx.stats.stage("j").failed == 0
