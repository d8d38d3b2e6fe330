"""ALMoST comparison rules: demonstration sets, turn cutting, bad responses, the pair walk."""

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign import api
from selfalign.errors import ConfigError, StageError, ValidationFailed
from selfalign.stages.base import StageSpec
from selfalign.stages.methods.almost.compare import BuildPreferences, chain_pairs, rubric_ranks
from selfalign.stages.methods.almost.responses import (
    GenerateResponsesParams,
    ResponseConfig,
    bad_reason,
    cut_turn,
    join_demos,
    split_demos,
)

DEMOS = "Preamble line.\n-----\nHuman: one\n\nAssistant: 1.\n-----\nHuman: two\n\nAssistant: 2.\n"
GOOD = "This is a perfectly ordinary answer that is long enough to pass the rules."


# --- demonstrations ------------------------------------------------------------------------


def test_split_demos_into_preamble_and_dialogues():
    assert split_demos(DEMOS) == [
        "Preamble line.",
        "Human: one\n\nAssistant: 1.",
        "Human: two\n\nAssistant: 2.",
    ]
    assert split_demos("A\n  -----  \nB\n-----\n\n-----\n") == ["A", "B"]  # empties dropped


def test_n_shot_zero_means_no_dialogues():
    segs = split_demos(DEMOS)
    assert join_demos(segs, 0) == "Preamble line.\n\n-----"
    assert "Human:" not in join_demos(segs, 0)


def test_n_shot_takes_the_first_dialogues_each_followed_by_the_separator():
    segs = split_demos(DEMOS)
    assert join_demos(segs, 1) == "Preamble line.\n\n-----\n\nHuman: one\n\nAssistant: 1.\n\n-----"
    assert join_demos(segs, 2).count("-----") == 3


def test_n_shot_out_of_range():
    with pytest.raises(ValueError, match="has 2 dialogue"):
        join_demos(split_demos(DEMOS), 3)
    with pytest.raises(ValueError):
        join_demos(split_demos(DEMOS), -1)


# --- cutting the assistant turn --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, cut",
    [
        (" The answer is 4.\n\nHuman: and 5?", "The answer is 4."),
        ("The answer.\n\n-----\n\nHuman: next", "The answer."),
        ("The answer.\n-----", "The answer."),
        ("Assistant: I repeat the label.", "I repeat the label."),  # chat models do this
        ("First.\nAssistant: second turn", "First."),
        ("\n\n  plain  \n", "plain"),
        ("", ""),
    ],
)
def test_cut_turn(raw, cut):
    assert cut_turn(raw) == cut


# --- bad responses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("Too short.", "too_short"),
        ("x" * 48 + ".", "too_short"),  # 49 chars
        ("x" * 48 + "!", "too_short"),
        (GOOD[:-1] + "?", "ends_with_question_or_colon"),
        (GOOD[:-1] + ":", "ends_with_question_or_colon"),
        ("Well, " + GOOD, "starts_with_well"),
        ("WELL " + GOOD, "starts_with_well"),
        (GOOD[:-1], "no_final_period"),
        (GOOD[:-1] + ")", "no_final_period"),
        ("I don't know the answer to that, sorry. " + GOOD, "says_dont_know"),
        ("I don’t  know. " + GOOD, "says_dont_know"),
        ("We do not know yet. " + GOOD, "says_dont_know"),
        ("Sure. human: hi " + GOOD, "contains_human_turn"),
        ("Look at this <Image> " + GOOD, "contains_image_tag"),
        (GOOD, None),
        ("x" * 49 + "!", None),  # 50 chars ending with "!"
    ],
)
def test_bad_reason(text, reason):
    assert bad_reason(text) == reason


# --- the pair walk ------------------------------------------------------------------------------

RANKS = rubric_ranks(["A", "B", "C", "D"])


def resp(**lengths):
    """Texts of the given lengths, all different (so none is skipped as identical)."""
    return {c: c.lower() * n for c, n in lengths.items()}


def test_rubric_ranks_with_tie_groups():
    assert rubric_ranks(["A", ["B", "C"], "D"]) == {"A": 0, "B": 1, "C": 1, "D": 2}
    with pytest.raises(ValueError, match="more than once"):
        rubric_ranks(["A", ["B", "A"]])


def test_chain_of_k_minus_1_pairs():
    pairs, skipped = chain_pairs(resp(A=100, B=99, C=98, D=97), RANKS)
    assert pairs == [("A", "B"), ("B", "C"), ("C", "D")] and not skipped


def test_input_order_does_not_matter():
    assert chain_pairs(resp(D=90, B=100, A=110, C=95), RANKS)[0] == [("A", "B"), ("B", "C"), ("C", "D")]


def test_equal_lengths_are_not_a_reason_to_skip():
    assert chain_pairs({"A": "a" * 60, "B": "b" * 60}, RANKS) == ([("A", "B")], {})


def test_identical_texts_are_not_paired_unless_asked():
    same = {"A": "The same answer.", "B": " The same answer. ", "C": "Another one."}
    pairs, skipped = chain_pairs(same, RANKS)
    assert pairs == [("A", "C"), ("B", "C")] and skipped == {"identical": 1}
    assert chain_pairs(same, RANKS, skip_identical=False)[0] == [("A", "B"), ("B", "C")]


def test_shorter_better_response_skipped_unless_long_enough():
    # lengths 10, 100, 100: mean 70, pstdev 42.4 → floor 48.8. A (10) is shorter than B and
    # below the floor: A-vs-B and A-vs-C are skipped; B pairs with C.
    pairs, skipped = chain_pairs({"A": "a" * 10, "B": "b" * 100, "C": "c" * 100}, RANKS)
    assert pairs == [("B", "C")] and skipped == {"length_rule": 2}


def test_shorter_better_response_kept_when_above_mean_minus_half_std():
    # lengths 20, 100, 110: mean 76.7, pstdev 40.3 → floor 56.5. B (100) is shorter than C (110)
    # but above the floor, so B-vs-C is kept; A (20) is below it and shorter than both.
    assert chain_pairs(resp(A=20, B=100, C=110), RANKS) == ([("B", "C")], {"length_rule": 2})
    # lengths 100, 100, 110: floor 101.0, so B (100) < C (110) is skipped
    assert chain_pairs({"A": "a" * 100, "B": "b" * 100, "C": "c" * 110}, RANKS) == (
        [("A", "B")],
        {"length_rule": 1},
    )


def test_better_config_pairs_with_the_next_passing_worse_one():
    # floor 47.2: A (40) is shorter than B and below it, but longer than C: A-vs-C.
    pairs, skipped = chain_pairs(resp(A=40, B=400, C=35, D=30), RANKS)
    assert pairs == [("A", "C"), ("B", "C"), ("C", "D")] and skipped == {"length_rule": 1}


def test_length_filter_off():
    texts = {"A": "a" * 10, "B": "b" * 100, "C": "c" * 100}
    pairs, skipped = chain_pairs(texts, RANKS, length_filter=False)
    assert pairs == [("A", "B"), ("B", "C")] and not skipped


def test_ties_are_never_paired_and_a_tie_group_is_chosen_once():
    ranks = rubric_ranks(["A", ["B", "C"], "D"])
    texts = {c: c * 100 for c in "ABCD"}
    pairs, _ = chain_pairs(texts, ranks)
    assert pairs == [("A", "B"), ("B", "D")]  # C shares B's rank, which is used
    pairs, _ = chain_pairs({"B": "b" * 100, "C": "c" * 100}, ranks)
    assert pairs == []  # only a tie: nothing to compare


def test_fewer_than_two_good_responses_give_no_pairs():
    assert chain_pairs({}, RANKS) == ([], {})
    assert chain_pairs(resp(C=100), RANKS) == ([], {})


# --- the build_preferences stage ---------------------------------------------------------------


def grid(*prompts):
    """Rows as generate_responses writes them: one per (prompt, config)."""
    rows = []
    for pid, (prompt, answers) in enumerate(prompts):
        for config, text in answers.items():
            why = bad_reason(text)
            rows.append(
                {
                    "row_id": f"{pid}.{config}",
                    "parent_id": str(pid),
                    "prompt": prompt,
                    "config": config,
                    "response": text,
                    "bad": why is not None,
                    "bad_reason": why,
                }
            )
    return pd.DataFrame(rows)


def long(n, tag=""):
    return (tag + " " + "word " * 200)[: n - 1].rstrip() + "."


def test_stage_emits_trl_rows_with_meta_and_counts_drops(ctx):
    stage = make_stage("build_preferences", ctx, "cs", rubric=["A", ["B", "C"], "D"])
    df = grid(
        ("p0", {"A": long(120, "a"), "B": long(110, "b"), "C": long(115, "c"), "D": long(100, "d")}),
        (
            "p1",
            {
                "A": "I don't know. " + long(90),
                "B": "Well. " + long(90),
                "C": long(90, "c"),
                "D": long(80, "d"),
            },
        ),
        ("p2", {"A": "", "B": "short", "C": "?", "D": long(80)}),  # one good only
        ("p3", {"A": long(80), "E": long(90)}),
    )  # E not in the rubric
    out = run_stage(stage, df)
    assert list(out.meta) == ["A-vs-B", "B-vs-D", "C-vs-D"]
    assert list(out.parent_id) == ["0", "0", "1"] and list(out.row_id) == ["0.0", "0.1", "1.0"]
    first = out.iloc[0]
    assert first.prompt == "p0" and first.chosen.startswith("a") and first.rejected.startswith("b")
    assert {"chosen_config", "rejected_config"} <= set(out.columns)
    assert not {"response", "config", "bad", "bad_reason"} & set(out.columns)
    drops = ctx.stats.stage("cs").drops
    assert drops["not_in_rubric"] == 1 and drops["bad:says_dont_know"] == 1
    assert drops["bad:starts_with_well"] == 1 and drops["bad:empty"] == 1
    assert drops["prompt_fewer_than_2_good"] == 2  # p2 (D) and p3 (A)
    assert "pair_skipped:length_rule" not in drops  # pairs are counted, not dropped rows


def test_stage_all_bad_and_empty_input(ctx):
    stage = make_stage("build_preferences", ctx, "cs", rubric=["A", "B"])
    out = run_stage(stage, grid(("p", {"A": "no", "B": "I do not know."})))
    assert out.empty and {"prompt", "chosen", "rejected", "meta"} <= set(out.columns)
    assert run_stage(stage, grid()).empty


def test_stage_can_apply_the_rules_itself(ctx):
    stage = make_stage("build_preferences", ctx, "cs", rubric=["A", "B"], bad_column=None)
    df = grid(("p", {"A": long(80), "B": long(80)})).drop(columns=["bad", "bad_reason"])
    df.loc[0, "response"] = "Well, " + long(80)
    assert run_stage(stage, df).empty
    assert ctx.stats.stage("cs").drops["bad:starts_with_well"] == 1


def test_stage_refuses_two_responses_for_one_config(ctx):
    stage = make_stage("build_preferences", ctx, "cs", rubric=["A", "B"])
    df = pd.concat([grid(("p", {"A": long(80)})), grid(("p", {"A": long(90)}))])
    with pytest.raises(StageError, match="two responses for config 'A'"):
        run_stage(stage, df)


@pytest.mark.parametrize(
    "rubric, message",
    [
        ([], "rubric` is empty"),
        (["A", ["B", 3]], r"rubric\[1\]: expected str \| list\[str\]"),
        (["A", {"B": 1}], r"rubric\[1\]: expected str \| list\[str\]"),
        (["A", []], r"rubric\[1\]"),
        (["A", "A"], "'A' appears more than once"),
    ],
)
def test_rubric_validation(ctx, rubric, message):
    with pytest.raises(ConfigError, match=message):
        make_stage("build_preferences", ctx, "cs", rubric=rubric)


# --- the rubric against the grid (a cross-stage reference) --------------------------------------


def grid_peer(name, *configs):
    params = GenerateResponsesParams(configs=[ResponseConfig(name=c) for c in configs])
    return {name: StageSpec(name, "generate_responses", params)}


def test_rubric_is_checked_against_the_referenced_grid(ctx):
    from selfalign.config import parse_params

    params = parse_params(
        BuildPreferences.Params, {"rubric": ["A", ["Bb", "C"]], "grid": ["rg"]}, "pipeline.stages.cs"
    )
    stage = BuildPreferences("cs", params, ctx, peers=grid_peer("rg", "A", "B", "C"))
    columns = {"row_id", "parent_id", "prompt", "config", "response", "bad", "bad_reason"}
    _, problems = stage.check(columns)
    assert problems == [
        "pipeline.stages.cs.rubric: 'Bb' is not a configuration of the grid (rg). "
        "Did you mean 'B'? Configurations: A, B, C."
    ]
    ok = BuildPreferences("cs", params, ctx, peers=grid_peer("rg", "A", "Bb", "C"))
    assert ok.check(columns)[1] == []


def test_an_empty_grid_is_not_checked(ctx):
    stage = make_stage("build_preferences", ctx, "cs", rubric=["anything"])
    assert stage.check({"parent_id", "prompt", "config", "response", "bad"})[1] == []


def test_rubric_names_are_checked_against_the_grid_before_any_call():
    with pytest.raises(ValidationFailed) as exc:
        api.validate(["pipeline=almost", "model=test", "rubric=[faithful-3shot,[faithful-1shots,hhh-1shot]]"])
    assert (
        "pipeline.stages.compare.rubric: 'faithful-1shots' is not a configuration of the "
        "grid (respond). Did you mean 'faithful-1shot'?" in str(exc.value)
    )


@pytest.mark.parametrize(
    "grid, message",
    [
        (
            "[respnd]",
            "pipeline.stages.compare.grid: no stage 'respnd' in this pipeline. Did you mean "
            "'respond'? generate_responses stages here: respond.",
        ),
        (
            "[expand_pool]",
            "pipeline.stages.compare.grid: 'expand_pool' is a expand_pool stage, not generate_responses.",
        ),
    ],
)
def test_a_wrong_grid_stage_is_a_config_error(grid, message):
    with pytest.raises(ValidationFailed) as exc:
        api.validate(["pipeline=almost", "model=test", f"pipeline.stages.compare.grid={grid}"])
    assert message in str(exc.value)


def test_a_grid_without_its_peer_is_refused(ctx):
    with pytest.raises(ConfigError, match=r"cs\.grid: stage\(s\) rg not resolved"):
        make_stage("build_preferences", ctx, "cs", rubric=["A"], grid=["rg"])
