"""The pipeline's deterministic rules as configured in pipelines/backtranslation.yaml and its
presets (the `preset` config group, conf/preset/): the length filter, the instruction parser and
checks — each on hand-made rows."""

import pandas as pd
import pytest
from helpers import run_stage

from selfalign import api
from selfalign.errors import ConfigError


def stage(name, *overrides):
    built = api.validate(["pipeline=backtranslation", "model=test", *overrides])
    return next(s for s in built.stages if s.name == name)


def texts(*lengths):
    """One row per length: a response of that many word tokens."""
    return pd.DataFrame(
        {"row_id": [str(i) for i in range(len(lengths))], "response": [" ".join(["w"] * n) for n in lengths]}
    )


def rules(st):
    return {r.label: r for r in st.rules}


def test_default_preset_has_absolute_bounds_and_no_quantile_cut():
    st = stage("length_filter")
    r = rules(st)
    assert (r["too_short"].value, r["too_long"].value) == (8, 600)
    assert (r["outside_quantiles"].low, r["outside_quantiles"].high) == (0.0, 1.0)
    out = run_stage(st, texts(3, 8, 50, 600, 601, 0))
    assert [len(t.split()) for t in out.response] == [8, 50, 600]
    assert st.ctx.stats.stage("length_filter").drops == {"too_short": 2, "too_long": 1}
    assert stage("sample").params.n == 8 and stage("sample").params.seed is None


def test_humpback_lima_preset_keeps_q1_to_median_then_samples_150_with_seed_42():
    st = stage("length_filter", "preset=humpback_lima")
    # 9 lengths: 'lower' quantiles -> 25th percentile = 3rd value (30), median = 5th (50)
    out = run_stage(st, texts(90, 10, 20, 30, 40, 50, 60, 70, 80))
    assert sorted(len(t.split()) for t in out.response) == [30, 40, 50]
    assert st.ctx.stats.stage("length_filter").drops == {"outside_quantiles": 6}
    sample = stage("sample", "preset=humpback_lima").params
    assert (sample.n, sample.seed) == (150, 42)


def test_quantile_cut_with_ties_keeps_every_tied_row():
    out = run_stage(stage("length_filter", "preset=humpback_lima"), texts(5, 5, 5, 5, 9, 9))
    assert sorted(len(t.split()) for t in out.response) == [5, 5, 5, 5]


def test_a_preset_leaf_can_be_overridden_alone():
    r = rules(stage("length_filter", "preset=humpback_lima", "length.high_quantile=0.75"))
    assert (r["outside_quantiles"].low, r["outside_quantiles"].high) == (0.25, 0.75)


def test_unknown_preset_lists_the_options():
    with pytest.raises(ConfigError) as e:
        api.validate(["pipeline=backtranslation", "model=test", "preset=lima"])
    assert "Could not find 'preset/lima'" in str(e.value)
    assert "Available options in 'preset':" in str(e.value)
    assert "default" in str(e.value) and "humpback_lima" in str(e.value)


def test_preset_is_a_group_of_this_pipeline_only():
    with pytest.raises(ConfigError, match="preset"):
        api.validate(["pipeline=almost", "model=test", "preset=humpback_lima"])


@pytest.mark.parametrize(
    "raw,instruction",
    [
        ("How do I peel eggs easily?", "How do I peel eggs easily?"),
        ("Request: How do I peel eggs easily?", "How do I peel eggs easily?"),
        ('"Write a haiku about autumn."', "Write a haiku about autumn."),
        ("Explain compound interest.\nText:\nCompound interest is...", "Explain compound interest."),
        ("Instruction: Summarise the text.\nResponse: The text says", "Summarise the text."),
    ],
)
def test_augment_parser_cleans_the_generated_instruction(raw, instruction):
    assert stage("augment").parse(raw)["value"] == instruction


def test_augment_parser_rejects_an_empty_instruction():
    from selfalign.errors import ParseError

    with pytest.raises(ParseError):
        stage("augment").parse("Request:  ")


def test_instruction_checks_drop_fragments_and_copied_text():
    st = stage("check_instruction")
    df = pd.DataFrame(
        {
            "row_id": ["0", "1", "2"],
            "instruction": ["Explain it.", "Explain photosynthesis to a child.", " ".join(["word"] * 81)],
        }
    )
    out = run_stage(st, df)
    assert list(out.row_id) == ["1"]
    assert st.ctx.stats.stage("check_instruction").drops == {
        "instruction_too_short": 1,
        "instruction_too_long": 1,
    }


def test_curation_defaults_follow_the_paper_a5():
    p = stage("curate").params
    assert (p.threshold, p.iterations, p.models, p.rescore) == (5.0, 1, [None], "all")
    p4 = stage("curate", "curation.threshold=4", "iterations=2", "curation.models=[null,null]").params
    assert (p4.threshold, p4.iterations) == (4.0, 2)
