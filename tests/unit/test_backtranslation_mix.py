"""`mix_seed_pairs` (source marks, system tags, seed mixing) and the SFT views built from it."""

import json

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError
from selfalign.stages.export import View, render_view

TAGS = {"seed_tag": "Style: assistant.", "augmented_tag": "Style: web."}


def curated():
    return pd.DataFrame(
        {"row_id": ["7", "9"], "instruction": ["Q7", "Q9"], "response": ["A7", "A9"], "score": [5.0, 4.0]}
    )


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "seed.jsonl"
    rows = [{"prompt": "S1", "answer": "R1"}, {"prompt": "S2", "answer": "R2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_without_seed_rows_are_marked_augmented_and_untagged(ctx):
    out = run_stage(make_stage("mix_seed_pairs", ctx, "mix"), curated())
    assert list(out.source) == ["augmented"] * 2 and list(out.system) == ["", ""]
    sft = render_view(out, View(file="x", kind="sft", system_column="system"))
    assert [m["role"] for m in sft.messages.iloc[0]] == ["user", "assistant"]


def test_seed_mixed_in_with_tags(ctx, seed_file):
    stage = make_stage(
        "mix_seed_pairs",
        ctx,
        "mix",
        include_seed=True,
        seed_path=seed_file,
        instruction_column="prompt",
        response_column="answer",
        system_tags=True,
        **TAGS,
    )
    out = run_stage(stage, curated())
    assert list(out.row_id) == ["7", "9", "seed.0", "seed.1"]
    assert list(out.instruction) == ["Q7", "Q9", "S1", "S2"]
    assert list(out.source) == ["augmented", "augmented", "seed", "seed"]
    assert list(out.system) == ["Style: web.", "Style: web.", "Style: assistant.", "Style: assistant."]
    assert pd.isna(out.score.iloc[2])  # seed pairs were never scored
    sft = render_view(out, View(file="x", kind="sft", system_column="system", keep=["source"]))
    assert sft.messages.iloc[3][0] == {"role": "system", "content": "Style: assistant."}


def test_seed_rows_keep_all_columns_when_nothing_was_curated(ctx, seed_file):
    stage = make_stage(
        "mix_seed_pairs",
        ctx,
        "mix",
        include_seed=True,
        seed_path=seed_file,
        instruction_column="prompt",
        response_column="answer",
    )
    out = run_stage(stage, curated().iloc[0:0])
    assert list(out.instruction) == ["S1", "S2"] and "score" in out.columns


def test_bad_seed_settings_are_reported_before_running(ctx, seed_file):
    with pytest.raises(
        ConfigError,
        match=r"pipeline\.stages\.mix: `include_seed` needs "
        r"`seed_path`",
    ):
        make_stage("mix_seed_pairs", ctx, "mix", include_seed=True)
    with pytest.raises(ConfigError, match=r"`system_tags` needs non-empty `seed_tag`"):
        make_stage("mix_seed_pairs", ctx, "mix", system_tags=True)
    stage = make_stage("mix_seed_pairs", ctx, "mix", include_seed=True, seed_path=seed_file)
    _, problems = stage.check({"row_id", "instruction", "response"})
    assert len(problems) == 1
    assert (
        "seed column(s) ['instruction', 'response'] missing (found: prompt, answer)" in problems[0]
        and "pipeline.stages.mix.instruction_column" in problems[0]
    )


def test_backward_view_swaps_roles():
    seed = pd.DataFrame({"instruction": ["Name a prime."], "response": ["Seven is prime."]})
    view = View(file="backward_sft", kind="sft", instruction="response", response="instruction")
    assert render_view(seed, view).messages.iloc[0] == [
        {"role": "user", "content": "Seven is prime."},
        {"role": "assistant", "content": "Name a prime."},
    ]
