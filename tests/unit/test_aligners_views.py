"""Aligners training views: aligner text with separators and inspector rows split by pair."""

import json

import pandas as pd
from helpers import make_stage, run_stage

from selfalign.stages.methods.aligners.views import AlignerTextParams, aligner_text


def pairs(n):
    return pd.DataFrame(
        {
            "row_id": [f"p{i}" for i in range(n)],
            "question": [f"Q{i}?" for i in range(n)],
            "misaligned": [f"bad {i}" for i in range(n)],
            "aligned": [f"good {i}" for i in range(n)],
        }
    )


def test_aligner_text_format_and_loss_split():
    text, prompt, completion = aligner_text("Why?", "Because.", "Here is why.", AlignerTextParams())
    assert text == "Why? [INIT] Because. [ALIGNED] Here is why. [DONE]"
    assert prompt == "Why? [INIT] Because. [ALIGNED]" and text == prompt + completion
    assert completion == " Here is why. [DONE]"  # the only tokens the loss covers


def test_aligner_text_stage_adds_columns_and_domain(ctx):
    out = run_stage(make_stage("aligner_text", ctx, "a", domain="helpful"), pairs(2))
    assert out.aligner_text[1] == "Q1? [INIT] bad 1 [ALIGNED] good 1 [DONE]"
    assert set(out.domain) == {"helpful"}
    plain = make_stage("aligner_text", ctx, "b")
    assert "domain" not in plain.writes()


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_inspector_rows_labels_and_pair_level_split(ctx):
    stage = make_stage("export_inspector", ctx, "insp", keep=["question"])
    df = pairs(20)
    assert run_stage(stage, df).equals(df)  # passes rows through
    parts = {name: read(ctx.run_dir / f"inspector.{name}.jsonl") for name in ("train", "val", "test")}
    assert [len(v) for v in parts.values()] == [32, 4, 4]  # 16/2/2 pairs, two rows each
    seen = {}
    for name, rows in parts.items():
        for r in rows:
            assert seen.setdefault(r["pair_id"], name) == name  # a pair never straddles splits
            i = r["pair_id"][1:]
            want = f"Q{i}? [SEP] {'good' if r['label'] else 'bad'} {i}"
            assert r["text"] == want and r["question"] == f"Q{i}?"
    assert len(seen) == 20


def test_inspector_limit_without_split_and_parquet(ctx):
    stage = make_stage(
        "export_inspector", ctx, "insp", file="ins", limit=3, split={}, formats=["jsonl", "parquet"]
    )
    run_stage(stage, pairs(5))
    rows = read(ctx.run_dir / "ins.jsonl")
    assert [r["pair_id"] for r in rows] == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert [r["label"] for r in rows] == [0, 1] * 3
    assert len(pd.read_parquet(ctx.run_dir / "ins.parquet")) == 6
