"""ReAlign reformatting: recipes, the rewrite parser, pass-through, longest-of-n, retry bound."""

import json

import pandas as pd
import pytest
from helpers import REALIGN_TASKS, make_stage, run_stage

from selfalign.errors import ConfigError, ParseError
from selfalign.parsers import parse_revised
from selfalign.paths import resource_dir

FORMATS = resource_dir("prompts") / "realign" / "formats"
# METHODS §5.2: the ten tasks the original has no format for
NO_FORMAT = {
    "story_generation",
    "poem_generation",
    "advice_giving",
    "paraphrasing",
    "code_simplification",
    "table_extraction",
    "title_generation",
    "text_summarization",
    "note_summarization",
    "roleplay",
}


def requests(ctx, stage: str) -> int:
    return sum(c["requests"] for c in ctx.llm.accounting.for_stage(stage).values())


def test_36_recipes_exactly_for_the_tasks_that_have_one():
    have = {p.stem for p in FORMATS.glob("*.j2")}
    assert len(have) == 36 and have == set(REALIGN_TASKS) - NO_FORMAT
    assert all(p.read_text().strip() for p in FORMATS.glob("*.j2"))


@pytest.mark.parametrize(
    "text, value, reasoning",
    [
        ("Reasoning: fits.\nRevised response: New text.", "New text.", "fits."),
        ("**Reasoning:** fits\n\n**Revised response:**\nLine 1\nLine 2", "Line 1\nLine 2", "fits"),
        ("reasoning: ok\nrevised response: x", "x", "ok"),
        ("Revised response: only this", "only this", ""),
        ("Reasoning: a\nRevised response: b\nRevised response: c", "b\nRevised response: c", "a"),
        ("Reasoning: r\nRevised response: body\n[End of response]", "body", "r"),
    ],
)
def test_parse_revised(text, value, reasoning):
    assert parse_revised(text) == {"value": value, "reasoning": reasoning}


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Reasoning: I would keep it.", "no_revised_response"),
        ("Reasoning: r\nRevised response:   \n", "empty_revised_response"),
        ("", "no_revised_response"),
    ],
)
def test_parse_revised_failures(text, reason):
    with pytest.raises(ParseError) as info:
        parse_revised(text)
    assert info.value.reason == reason


def rows(*items):
    return pd.DataFrame([{"row_id": str(i), **r} for i, r in enumerate(items)])


def test_passthrough_rows_do_not_call_the_model(ctx):
    stage = make_stage("reformat_response", ctx, "rf")
    df = rows(
        {"instruction": "Any advice?", "response": "Rest.", "category": "advice_giving"},
        {"instruction": "Hm", "response": "Yes.", "category": "default"},
        {"instruction": "Hm", "response": "Yes.", "category": None},
        {"instruction": "Hm", "response": " ", "category": "open_qa"},
    )
    out = run_stage(stage, df)
    assert list(out.rewrite_status) == ["no_format", "skipped_category", "no_format", "empty_response"]
    assert out.rewrite.isna().all() and requests(ctx, "rf") == 0
    assert list(out.response) == list(df.response)


def test_longest_of_n_and_samples_kept(ctx, test_model):
    stage = make_stage("reformat_response", ctx, "rf", n=3)
    df = rows({"instruction": "What causes tides?", "response": "The Moon's gravity.", "category": "open_qa"})
    test_model.queue(
        "Reasoning: short.\nRevised response: Gravity.",
        "Reasoning: the longest.\nRevised response: The Moon's gravity pulls the sea.",
        "Reasoning: medium.\nRevised response: The Moon's gravity.",
    )
    out = run_stage(stage, df)
    assert out.rewrite_status[0] == "rewritten" and requests(ctx, "rf") == 3
    # whichever sample got the longest answer wins, with its reasoning
    longest = next(r for r in test_model.requests if "the longest" in r.reply)
    assert out.rewrite[0] == "The Moon's gravity pulls the sea."
    assert out.rewrite_reasoning[0] == "the longest."
    assert sorted(s["sample"] for s in out.rewrite_samples[0]) == [0, 1, 2]
    assert sorted(r.sample for r in test_model.requests) == [0, 1, 2]
    assert {s["sample"] for s in out.rewrite_samples[0] if "pulls" in str(s)} == {longest.sample}


def test_pick_first(ctx):
    stage = make_stage("reformat_response", ctx, "rf", n=2, pick="first")
    out = run_stage(stage, rows({"instruction": "Q?", "response": "A.", "category": "open_qa"}))
    assert out.rewrite[0] == "A."


def test_prompt_has_recipe_evidence_and_adaptive_rule(ctx):
    stage = make_stage("reformat_response", ctx, "rf")
    row = {
        "row_id": "0",
        "instruction": "Q?",
        "response": "A.",
        "category": "open_qa",
        "evidence": ["fact one", "fact two"],
    }
    system, user = (m["content"] for m in stage.render(row))
    recipe = (FORMATS / "open_qa.j2").read_text().strip()
    assert recipe in user and "[Question]\nQ?" in user and "[Response]\nA." in user
    assert "1. fact one" in user and "2. fact two" in user and "evidence" in system
    assert "Judge first whether the recipe" in system
    assert "Reasoning:" in system and "Revised response:" in system
    plain = make_stage("reformat_response", ctx, "rf2", adaptive=False)
    system2, user2 = (m["content"] for m in plain.render({**row, "evidence": []}))
    assert "Judge first" not in system2 and "[Evidence]" not in user2
    assert "evidence" not in system2.lower()


def test_parse_failures_are_retried_a_bounded_number_of_times(ctx, tmp_path, test_model):
    test_model.queue(*["I like it as it is."] * 7)  # one more than the budget allows
    stage = make_stage("reformat_response", ctx, "rf", n=2, retries=2)
    out = run_stage(stage, rows({"instruction": "Q?", "response": "A.", "category": "open_qa"}))
    assert out.rewrite_status[0] == "failed" and out.rewrite[0] is None and len(out) == 1
    assert requests(ctx, "rf") == 6  # 2 samples × (1 + 2 retries), then it stops
    assert len(test_model.requests) == 6 and test_model.pending() == 1
    # each retry is a new sample index (sample + 1000·attempt)
    assert sorted(r.sample for r in test_model.requests) == [0, 1, 1000, 1001, 2000, 2001]
    rejected = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [r["attempts"] for r in rejected] == [3, 3]
    assert {r["reason"] for r in rejected} == {"parse: no_revised_response"}
    assert sorted(r.get("sample", 0) for r in rejected) == [0, 1]  # the engine notes the sample


def test_reads_and_writes(ctx):
    stage = make_stage("reformat_response", ctx, "rf", keep_samples=False, output="rw")
    assert stage.reads() == {"instruction", "response", "category"}  # evidence is optional
    assert stage.writes() == {"rw", "rw_reasoning", "rw_status"}
    assert len(stage.prompt_hashes()) == 2 + 36


def test_recipes_are_partials_rendered_with_the_row(ctx, tmp_path):
    from selfalign.prompts import PromptLibrary

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "open_qa.j2").write_text("Answer {{ question }} for {{ audience }}.\n")
    ctx.prompts = PromptLibrary([tmp_path, resource_dir("prompts")])
    stage = make_stage("reformat_response", ctx, "rf", formats="mine")
    assert stage.reads() == {"instruction", "response", "category", "audience"}
    assert "mine/open_qa" in stage.prompt_hashes() and len(stage.prompt_hashes()) == 3
    row = {
        "row_id": "0",
        "instruction": "Q?",
        "response": "A.",
        "category": "open_qa",
        "audience": "children",
    }
    user = stage.render(row)[-1]["content"]
    assert "[Format recipe]\nAnswer Q? for children.\n[End of format recipe]" in user
    assert stage.status({**row, "category": "closed_qa"}) == "no_format"


def test_a_formats_folder_without_recipes_is_a_config_error(ctx):
    with pytest.raises(ConfigError, match=r"rf\.formats: no recipe templates 'realign/fromats/"):
        make_stage("reformat_response", ctx, "rf", formats="realign/fromats")


def test_generic_llm_params_come_from_the_mixin(ctx):
    stage = make_stage("reformat_response", ctx, "rf", retry_temperature=0.9, vars={"x": 1})
    assert stage.params.retry_temperature == 0.9 and stage.templates.vars == {"x": 1}
    with pytest.raises(ConfigError, match=r"rf\.temprature: unknown key\. Did you mean 'temperature'"):
        make_stage("reformat_response", ctx, "rf", temprature=0.1)
