"""refine_aaa: co-teaching chain, suggestions, self-teaching, the guard, keep-if-improved."""

import json

import pandas as pd
import pytest
from helpers import make_ctx, make_stage, run_stage

from selfalign import api
from selfalign.config import parse_params
from selfalign.errors import ConfigError, ParseError, ValidationFailed
from selfalign.llm.testmodel import Script
from selfalign.parsers import parse_labelled_text
from selfalign.stages.base import StageSpec
from selfalign.stages.judge import DEFAULT_WEIGHTS, JudgeParams, Scorer
from selfalign.stages.methods.wizardlm_aaa.refine import (
    CoTeacher,
    LabelledOptions,
    RefineAaa,
    RefineParams,
)

DIMS = list(DEFAULT_WEIGHTS)
VARS = {
    "fields": {"context": ["context"], "instruction": None, "response": None},
    "use_examples": True,
    "format_prompt": "A question.",
}


def judge_reply(good: int, bad: int) -> str:
    return json.dumps({d: bad if d in ("toxicity", "bias") else good for d in DIMS})


# The pre-AAA text's first word decides what the (scripted) self-teacher writes:
# UP → a text the judge scores 90, DOWN → one it scores 10, SAME → one it scores 50 like the
# pre-AAA text, LEAK → an instruction that grew a "Response:" section.
FINAL = {
    "UP": "**Final instruction:** A BETTER question about ice?",
    "DOWN": "A WORSE question about ice?",
    "SAME": "An equally good question about ice?",
    "LEAK": "Why does ice float?\nResponse: Because it is less dense.",
}
VERDICT = {"UP": judge_reply(90, 10), "DOWN": judge_reply(10, 90), "SAME": judge_reply(50, 50)}
SUGGESTIONS = "1. Name the substance.\n2. Ask for the reason."


def co_taught(text: str, n: int) -> str:
    return f"Improved instruction: {text}{' (co)' * n}"


def aaa_replies(text: str, co_teachers: int = 2) -> list[str]:
    """What refine_aaa's calls for one row get, in the order it makes them: each co-teacher's
    improvement (of the one before), the suggestions, the self-taught text and the judge's
    verdict on it (none for a text the guard reverts)."""
    word = text.split()[0]
    replies = [co_taught(text, i + 1) for i in range(co_teachers)] + [SUGGESTIONS, FINAL[word]]
    return replies + ([VERDICT[word]] if word in VERDICT else [])


def script(test_model: Script, *texts: str) -> None:
    """Queue each row's replies (rows "0", "1", … as `frame` numbers them)."""
    for i, text in enumerate(texts):
        test_model.queue(*aaa_replies(text), stage="aaa", row=str(i))


JUDGE = {"prompt": "wizardlm_aaa/judge", "vars": VARS, "column": "instruction", "text_kind": "instruction"}
TEACHERS = [{"temperature": 0.3, "label": "cool"}, {"temperature": 1.0, "label": "warm"}]


def refine(ctx, **kw):
    params = {
        "column": "instruction",
        "text_kind": "instruction",
        "vars": VARS,
        "system_prompt": "wizardlm_aaa/system_writer",
        "co_teach_models": TEACHERS,
        "revert_if_contains": ["Response:"],
        "judge": JUDGE,
        **kw,
    }
    return make_stage("refine_aaa", ctx, "aaa", **params)


def frame(*texts: str) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "row_id": [str(i) for i in range(len(texts))],
            "context": ["Ice floats because it is less dense than water."] * len(texts),
            "instruction": list(texts),
            "instruction_score": 50.0,
            "instruction_score_imputed": "",
        }
    )
    for d in DIMS:
        df[f"instruction_score_{d}"] = 50.0
    return df


def requests(ctx, stage: str) -> int:
    return sum(c["requests"] for c in ctx.llm.accounting.for_stage(stage).values())


def by_text(out: pd.DataFrame) -> dict[str, dict]:
    return {r["instruction_pre_aaa"].split()[0]: r for r in out.to_dict(orient="records")}


def test_labelled_text_parser():
    assert parse_labelled_text("**Improved Instruction:** How?")["value"] == "How?"
    assert parse_labelled_text('Final response (revised): "It floats."')["value"] == "It floats."
    assert parse_labelled_text("Instruction: Why?\n\nNote: x", cut_at=["\n\n"])["value"] == "Why?"
    assert parse_labelled_text("Answer the question.")["value"] == "Answer the question."
    with pytest.raises(ParseError, match="empty"):
        parse_labelled_text("Instruction:  ")
    with pytest.raises(ParseError, match="too_long"):
        parse_labelled_text("x" * 50, max_chars=10)
    # only the given labels are stripped: an instruction that starts with an answer keeps it
    kept = parse_labelled_text("Response: It floats.", labels=["instruction"])["value"]
    assert kept == "Response: It floats."


def test_keep_if_improved_keeps_only_a_better_text(tmp_path, test_model: Script):
    ctx = make_ctx(tmp_path)
    script(test_model, "UP q", "DOWN q", "SAME q")
    stage = refine(ctx)
    assert isinstance(stage.scorer, Scorer)  # the judge's own scoring code, not a copy
    rows = by_text(run_stage(stage, frame("UP q", "DOWN q", "SAME q")))
    up, down, same = rows["UP"], rows["DOWN"], rows["SAME"]
    assert up["instruction"] == "A BETTER question about ice?"
    assert up["instruction_aaa_applied"] and up["instruction_aaa_improved"]
    assert up["instruction_score"] == pytest.approx(90.0)
    assert up["instruction_pre_aaa_score"] == 50.0 and up["instruction_aaa_score"] == 90.0
    assert up["instruction_written_by"] == "self_teach"
    assert down["instruction"] == "DOWN q" and down["instruction_aaa"] == "A WORSE question about ice?"
    assert not down["instruction_aaa_applied"] and down["instruction_aaa_improved"] is False
    assert down["instruction_score"] == 50.0 and down["instruction_aaa_score"] == 10.0
    assert down["instruction_written_by"] == "generate"
    # not lower is kept, but it is not an improvement
    assert same["instruction_aaa_applied"] and same["instruction_aaa_improved"] is False
    assert all(r.scripted for r in test_model.requests) and test_model.pending(stage="aaa", row="2") == 0


def test_keep_if_improved_false_always_replaces(tmp_path, test_model: Script):
    ctx = make_ctx(tmp_path)
    script(test_model, "UP q", "DOWN q")
    rows = by_text(run_stage(refine(ctx, keep_if_improved=False), frame("UP q", "DOWN q")))
    assert rows["DOWN"]["instruction"] == "A WORSE question about ice?"
    assert rows["DOWN"]["instruction_aaa_applied"] and not rows["DOWN"]["instruction_aaa_improved"]
    assert rows["DOWN"]["instruction_score"] == 10.0  # the score of the text written out
    assert rows["UP"]["instruction_aaa_applied"]


def test_guard_reverts_an_instruction_that_grew_a_response(tmp_path, test_model: Script):
    ctx = make_ctx(tmp_path)
    script(test_model, "LEAK q")
    row = run_stage(refine(ctx), frame("LEAK q")).iloc[0]
    assert row.instruction == "LEAK q" and row.instruction_aaa_reverted
    assert not row.instruction_aaa_applied and row.instruction_aaa_improved is None
    assert "Response:" in row.instruction_aaa and row.instruction_aaa_score is None
    # 2 co-teachers + suggestions + self-teach; no re-judge
    assert requests(ctx, "aaa") == 4


def test_co_teach_chain_in_order_and_capped(tmp_path, test_model: Script):
    ctx = make_ctx(tmp_path)
    script(test_model, "UP q")
    row = run_stage(refine(ctx), frame("UP q")).iloc[0]
    assert row.instruction_co_taught == "UP q (co) (co)"  # the 2nd improves the 1st's output
    assert row.instruction_co_teachers == "cool → warm"
    assert "1." in row.instruction_suggestions
    # the cool co-teacher's call and the verdict on the same final text come from the cache
    test_model.queue(SUGGESTIONS, FINAL["UP"], stage="aaa", row="0")
    row = run_stage(refine(ctx, max_co_teach_llms=1), frame("UP q")).iloc[0]
    assert row.instruction_co_taught == "UP q (co)" and row.instruction_co_teachers == "cool"
    test_model.queue(SUGGESTIONS, FINAL["UP"], stage="aaa", row="0")
    row = run_stage(refine(ctx, max_co_teach_llms=0), frame("UP q")).iloc[0]
    assert row.instruction_co_taught == "UP q" and row.instruction_co_teachers == ""
    assert all(r.scripted for r in test_model.requests) and test_model.pending(stage="aaa", row="0") == 0


def test_failed_co_teacher_is_skipped(tmp_path, test_model: Script):
    ctx = make_ctx(tmp_path)
    # the 2nd co-teacher answers empty on its try and both retries
    replies = [co_taught("UP q", 1), "", "", "", SUGGESTIONS, FINAL["UP"], VERDICT["UP"]]
    test_model.queue(*replies, stage="aaa", row="0")
    row = run_stage(refine(ctx), frame("UP q")).iloc[0]
    assert row.instruction_co_taught == "UP q (co)" and row.instruction_co_teachers == "cool"
    assert row.instruction_aaa_applied  # the chain went on to self-teaching
    assert ctx.rejected.count == 1


def test_inactive_passes_through_with_the_same_columns(tmp_path):
    ctx = make_ctx(tmp_path)
    on, off = refine(ctx), refine(ctx, active=False)
    out = run_stage(off, frame("UP q"))
    assert requests(ctx, "aaa") == 0
    row = out.iloc[0]
    assert row.instruction == row.instruction_pre_aaa == "UP q" and not row.instruction_aaa_applied
    assert row.instruction_pre_aaa_score == row.instruction_score == 50.0
    assert set(out.columns) == set(frame("x").columns) | on.writes()


def test_named_co_teacher_models_and_errors(tmp_path):
    ctx = make_ctx(tmp_path)
    with pytest.raises(ConfigError, match=r"co_teach_models\[1\]\.model: unknown model 'big'"):
        refine(ctx, co_teach_models=[None, "big"])
    with pytest.raises(ConfigError, match="exactly one of `judge_stage`"):
        refine(ctx, judge=None)
    # a string is the short form of {model: NAME}; a mapping sets the sampling too
    stage = refine(ctx, co_teach_models=["default", {"model": None, "max_tokens": 7}])
    assert stage.params.co_teach_models == ["default", CoTeacher(max_tokens=7)]
    assert [s.params.max_tokens for s in stage.chain] == [256, 7]
    assert [s.label for s in stage.chain] == ["default", "default"]


def test_typed_nested_params(tmp_path):
    ctx = make_ctx(tmp_path)
    stage = refine(ctx, parser={"labels": ["question"], "min_chars": 5})
    assert stage.params.parser == LabelledOptions(labels=["question"], min_chars=5)
    assert isinstance(stage.params.judge, JudgeParams) and stage.scorer.p is stage.params.judge
    for key, value in [
        ("parser", {"cut": ["x"]}),
        ("co_teach_models", [{"temprature": 0.3}]),
        ("judge", {**JUDGE, "colum": "instruction"}),
    ]:
        with pytest.raises(ConfigError, match=rf"pipeline\.stages\.aaa\.{key}"):
            refine(ctx, **{key: value})


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [
        ("parser", {"cut": ["x"]}, r"parser\.cut: unknown key\. Did you mean 'cut_at'"),
        ("co_teach_models", [{"temprature": 0.3}], r"\[0\]\.temprature: unknown key\. Did you mean"),
        ("judge", {**JUDGE, "colum": "instruction"}, r"judge\.colum: unknown key\. Did you mean"),
    ],
)
def test_nested_typo_says_did_you_mean(tmp_path, key, value, hint):
    with pytest.raises(ConfigError, match=hint):
        refine(make_ctx(tmp_path), **{key: value})


def test_judge_stage_is_resolved_by_the_runner():
    built = api.validate(["pipeline=wizardlm_aaa", "model=test"])
    stages = {s.name: s for s in built.stages}
    for c in ("instruction", "response"):
        aaa, judge = stages[f"aaa_{c}"], stages[f"judge_{c}s"]
        assert set(aaa.peers) == {f"judge_{c}s"}
        assert aaa.scorer.p == judge.params and aaa.scorer.where == judge.where
        assert aaa.scorer.render(
            {"row_id": "0", "context": "c", "instruction": "i"}, "t"
        ) == judge.scorer.render({"row_id": "0", "context": "c", "instruction": "i"}, "t")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "judge_instruction",
            r"aaa_instruction\.judge_stage: no stage 'judge_instruction' in this "
            r"pipeline\. Did you mean 'judge_instructions'",
        ),
        ("select_instruction", r"'select_instruction' is a select_best stage, not judge_pointwise"),
    ],
)
def test_judge_stage_ref_errors(target, message):
    with pytest.raises(ValidationFailed, match=message):
        api.validate(
            ["pipeline=wizardlm_aaa", "model=test", f"pipeline.stages.aaa_instruction.judge_stage={target}"]
        )


def test_judge_stage_without_peers_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"judge_stage: stage 'j' was not resolved"):
        refine(make_ctx(tmp_path), judge=None, judge_stage="j")
    judge = make_stage("judge_pointwise", make_ctx(tmp_path), "j", **JUDGE)
    spec = StageSpec("j", "judge_pointwise", judge.params)
    params = parse_params(
        RefineParams, {"column": "instruction", "vars": VARS, "judge_stage": "j"}, "pipeline.stages.aaa"
    )
    stage = RefineAaa("aaa", params, judge.ctx, peers={"j": spec})
    assert stage.scorer.p is judge.params and stage.scorer.where == "pipeline.stages.j"
