"""The `backtranslation` pipeline end to end with the offline test model."""

import json

import pandas as pd


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_default_run_filters_for_real_and_writes_all_views(run_pipeline):
    df, manifest, run_dir = run_pipeline("pipeline=backtranslation")
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["length_filter"]["drops"] == {"too_short": 1}  # "Thanks!"
    assert stages["sample"]["rows_out"] == 8
    curate = stages["curate"]
    assert curate["rows_in"] == 8 and 0 < curate["rows_out"] < 8  # the filter is applied
    assert set(df.score) == {5.0} and len(df) == manifest["rows"]
    assert set(df.source) == {"augmented"}
    sft = read(run_dir / "sft.jsonl")
    assert len(sft) == len(df) and sft[0]["messages"][0]["role"] == "user"
    assert set(sft[0]) == {"messages", "score", "reasoning", "source"}
    pairs = read(run_dir / "pairs.jsonl")
    assert set(pairs[0]) == {"instruction", "response", "score", "reasoning", "source"}
    backward = read(run_dir / "backward_sft.jsonl")
    assert len(backward) == 6 and backward[0]["messages"][1]["content"].startswith("How can I")


def test_promotional_and_forum_texts_are_curated_out(run_pipeline):
    df, manifest, run_dir = run_pipeline(
        "pipeline=backtranslation", "sample.size=100", "curation.threshold=4"
    )
    sampled = pd.read_json(run_dir / "stages" / "04_sample.jsonl", lines=True)
    assert {"promo", "forum", "navigation", "review", "blog"} <= set(sampled.origin)
    assert len(df) and set(df.origin) <= {"assistant", "document", "news"}


def test_a4_threshold_keeps_more(run_pipeline, tmp_path):
    a5, _, _ = run_pipeline("pipeline=backtranslation", run_dir=tmp_path / "a5")
    a4, _, _ = run_pipeline("pipeline=backtranslation", "curation.threshold=4", run_dir=tmp_path / "a4")
    assert len(a4) > len(a5) and set(a4.score) <= {4.0, 4.5, 5.0}


def test_humpback_lima_preset(run_pipeline):
    df, manifest, _ = run_pipeline("pipeline=backtranslation", "preset=humpback_lima", "curation.threshold=1")
    lf = {s["name"]: s for s in manifest["stages"]}["length_filter"]
    assert lf["rows_in"] == 21 and set(lf["drops"]) == {"outside_quantiles"}
    assert 0 < lf["rows_out"] < 21 and len(df) <= lf["rows_out"]


def test_segmentation_splits_the_long_document(run_pipeline):
    df, manifest, run_dir = run_pipeline(
        "pipeline=backtranslation", "segment.max_tokens=80", "sample.size=100", "curation.threshold=1"
    )
    seg = pd.read_json(run_dir / "stages" / "02_segment.jsonl", lines=True, dtype=False)
    doc = seg[seg.origin == "document"]
    assert len(doc) >= 3 and set(doc.doc_id) == {"20"}
    assert list(doc.row_id) == [f"20.s{k}" for k in range(len(doc))]


def test_two_iterations_with_a_second_curation_model(run_pipeline):
    m1 = (
        '+models.m1={name: m1, rules: [{match: "Rate the candidate answer", '
        'reply: "Round two agrees. Score: 5"}]}'
    )
    df, manifest, _ = run_pipeline(
        "pipeline=backtranslation", "iterations=2", "curation.models=[null,m1]", m1
    )
    curate = {s["name"]: s for s in manifest["stages"]}["curate"]
    assert len(curate["llm"]) == 2  # two model identities were called
    assert set(df.score_iter2) == {5.0} and df.score_iter1.notna().all()
    assert len(df) == curate["rows_in"]  # m1 accepts every pair that the first round scored


def test_seed_mix_with_system_tags_and_n_candidates(run_pipeline):
    df, _, run_dir = run_pipeline(
        "pipeline=backtranslation", "mix_seed=true", "system_tags.enabled=true", "augment.n=2"
    )
    seed = df[df.source == "seed"]
    assert len(seed) == 6 and set(seed.system) == {"Answer in the style of an AI Assistant."}
    aug = df[df.source == "augmented"]
    assert set(aug.system) == {"Answer with knowledge from web search."}
    assert aug.parent_id.is_unique  # at most one candidate per text
    sft = read(run_dir / "sft.jsonl")
    assert all(r["messages"][0]["role"] == "system" for r in sft)


def test_a_rerun_reuses_every_stage(run_pipeline, tmp_path):
    run_pipeline("pipeline=backtranslation", run_dir=tmp_path / "r")
    _, manifest, _ = run_pipeline("pipeline=backtranslation", run_dir=tmp_path / "r")
    assert all(s["reused"] for s in manifest["stages"])
