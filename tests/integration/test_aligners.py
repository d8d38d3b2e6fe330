"""The aligners pipeline end to end with the offline test model (and the real MiniLM)."""

import json

import pandas as pd
import pytest

BIGGER = ["num_topics=24", "topics_per_prompt=4", "num_questions=24"]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("domain", ["ethical", "factuality", "helpful"])
def test_every_domain_runs_end_to_end(run_pipeline, domain):
    df, manifest, run_dir = run_pipeline("pipeline=aligners", f"domain={domain}", *BIGGER)
    assert len(df) > 0 and set(df.domain) == {domain}
    assert (df.similarity < 0.9).all()
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["respond"]["rows_in"] == 24
    assert stages["respond"]["rows_out"] == 24  # every domain's markers parse
    drops = stages["clean"]["drops"]
    assert {"r1_aligned_says_nothing", "r6_code_question", "r7_non_ascii_misaligned"} <= set(drops)
    assert stages["similarity"]["drops"]["similarity>=0.9"] > 0
    assert {"topic:too_many_words", "topic:not_capitalised"} <= set(stages["topics"]["drops"])
    assert stages["clean_topics"]["drops"]["bad_characters"] > 0
    assert stages["questions"]["drops"]["line:unknown_hint"] > 0
    assert manifest["rejected"] == 0
    check_views(df, run_dir)


def check_views(df, run_dir):
    n = len(df)
    aligner = {p: read(run_dir / f"aligner.{p}.jsonl") for p in ("train", "val", "test")}
    assert sum(map(len, aligner.values())) == n
    assert len(aligner["train"]) == round(n * 0.7)
    row = aligner["train"][0]  # TRL's standard prompt/completion (docs/train.md)
    assert row["prompt"] + row["completion"] == (
        f"{row['question']} [INIT] {row['misaligned']} [ALIGNED] {row['aligned']} [DONE]"
    )
    inspector = [r for p in ("train", "val", "test") for r in read(run_dir / f"inspector.{p}.jsonl")]
    assert len(inspector) == 2 * n and sorted({r["label"] for r in inspector}) == [0, 1]
    assert len(read(run_dir / "inspector.train.jsonl")) == 2 * round(n * 0.8)
    prefs = read(run_dir / "preference.train.jsonl")
    by_id = df.set_index("row_id")
    for p in prefs:
        assert p["chosen"] == [{"role": "assistant", "content": by_id.loc[p["row_id"], "aligned"]}]
        assert p["rejected"] == [{"role": "assistant", "content": by_id.loc[p["row_id"], "misaligned"]}]
    # the same seed puts a question in the same split of the aligner and preference views
    assert [r["row_id"] for r in aligner["train"]] == [p["row_id"] for p in prefs]


def test_runs_are_deterministic(run_pipeline, tmp_path):
    a, _, _ = run_pipeline("pipeline=aligners", run_dir=tmp_path / "a")
    b, _, _ = run_pipeline("pipeline=aligners", run_dir=tmp_path / "b")
    pd.testing.assert_frame_equal(a, b)
