"""The `almost` pipeline end to end with the offline test model."""

import json

import pandas as pd


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_default_run_writes_trl_comparisons(run_pipeline):
    df, manifest, run_dir = run_pipeline("pipeline=almost")
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["expand_pool"]["rows_out"] == 6
    assert stages["respond"]["rows_out"] == 6 * 4  # prompts x configs
    assert 0 < stages["compare"]["rows_out"] <= 6 * 3  # at most k-1 pairs per prompt
    assert any(k.startswith("bad:") for k in stages["compare"]["drops"])
    bad_marked = sum(stages["respond"]["counts"].values())
    assert bad_marked == sum(n for k, n in stages["compare"]["drops"].items() if k.startswith("bad:"))
    pairs = read(run_dir / "comparisons.jsonl")
    assert len(pairs) == len(df) == manifest["rows"]
    assert set(pairs[0]) == {"prompt", "chosen", "rejected", "meta"}
    rubric = ["faithful-3shot", "faithful-1shot", "hhh-1shot", "hhh-1shot-hot"]
    for row in pairs:
        better, worse = row["meta"].split("-vs-")
        assert rubric.index(better) < rubric.index(worse)
        assert row["chosen"] != row["rejected"]
    # each config is chosen at most once per prompt
    assert not df.duplicated(subset=["parent_id", "chosen_config"]).any()
    prompts = pd.read_json(run_dir / "stages" / "00_expand_pool.jsonl", lines=True)
    assert set(df.prompt) <= set(prompts.prompt)


def test_rerun_reuses_every_stage(run_pipeline, tmp_path):
    first, _, _ = run_pipeline("pipeline=almost", run_dir=tmp_path / "r")
    again, manifest, _ = run_pipeline("pipeline=almost", run_dir=tmp_path / "r")
    assert all(s["reused"] for s in manifest["stages"])
    assert first.equals(again)


def test_original_settings_and_paper_like_grid(run_pipeline):
    """The original's max tokens, its skip_first parse, a tie group and an extra model."""
    df, manifest, run_dir = run_pipeline(
        "pipeline=almost",
        "num_generation=3",
        "pool.parse=skip_first",
        "max_tokens.faithful=768",
        "max_tokens.plain=384",
        "+models.small={name: small}",
        "pipeline.stages.respond.configs.3.model=small",
        "rubric=[faithful-3shot,[faithful-1shot,hhh-1shot],hhh-1shot-hot]",
    )
    cfg = (run_dir / "config.yaml").read_text()
    assert "max_tokens: 768" in cfg and "max_tokens: 384" in cfg
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["expand_pool"]["rows_out"] == 3
    assert not (df.meta == "faithful-1shot-vs-hhh-1shot").any()  # a tie is never a pair
    respond_llm = stages["respond"]["llm"]
    assert respond_llm["test:small@:"]["requests"] == 3  # one config x 3 prompts
