"""`export` views in TRL's shapes: kind × format, nested Parquet, invalid rows dropped or failing."""

from __future__ import annotations

import json
import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError, StageError
from selfalign.stages.export import View, render_view

MESSAGE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def rows(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_id": [str(i) for i in range(n)],
            "instruction": [f"q{i}" for i in range(n)],
            "response": [f"a{i}" for i in range(n)],
            "worse": [f"w{i}" for i in range(n)],
            "score": [float(i) for i in range(n)],
        }
    )


def lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_sft_conversational_and_standard() -> None:
    df = rows(1)
    conv = render_view(df, View(file="x", kind="sft", system="Be brief.", keep=["score"]))
    assert list(conv.columns) == ["messages", "score"]
    assert conv.messages[0] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "q0"},
        {"role": "assistant", "content": "a0"},
    ]
    std = render_view(df, View(file="x", kind="sft", format="standard", system="Be brief."))
    assert std.to_dict(orient="records") == [{"prompt": "Be brief.\n\nq0", "completion": "a0"}]


def test_preference_conversational_has_message_lists() -> None:
    v = View(file="p", kind="preference", prompt="instruction", chosen="response", rejected="worse")
    row = render_view(rows(1), v).iloc[0].to_dict()
    assert row == {
        "prompt": [{"role": "user", "content": "q0"}],
        "chosen": [{"role": "assistant", "content": "a0"}],
        "rejected": [{"role": "assistant", "content": "w0"}],
    }
    v.format = "standard"
    assert render_view(rows(1), v).iloc[0].to_dict() == {"prompt": "q0", "chosen": "a0", "rejected": "w0"}


def test_completion_view_uses_trl_column_names() -> None:
    v = View(file="c", kind="completion", prompt="instruction", completion="response", format="standard")
    assert render_view(rows(1), v).iloc[0].to_dict() == {"prompt": "q0", "completion": "a0"}
    v.format = "conversational"
    assert render_view(rows(1), v).iloc[0].to_dict() == {
        "prompt": [{"role": "user", "content": "q0"}],
        "completion": [{"role": "assistant", "content": "a0"}],
    }


def test_parquet_keeps_messages_nested_and_splits_share_a_schema(ctx) -> None:
    stage = make_stage(
        "export",
        ctx,
        "e",
        views=[
            {
                "file": "sft",
                "kind": "sft",
                "keep": ["score"],
                "formats": ["jsonl", "parquet"],
                "split": {"train": 1.0, "test": 0.0},
            }
        ],
    )
    run_stage(stage, rows(3))
    train, test = (
        pq.read_schema(ctx.run_dir / "sft.train.parquet"),
        pq.read_schema(ctx.run_dir / "sft.test.parquet"),
    )
    assert train.field("messages").type == MESSAGE
    assert test.equals(train)  # an empty split still has the view's types, not null
    back = pd.read_parquet(ctx.run_dir / "sft.train.parquet")
    assert [dict(m) for m in back.messages[0]] == lines(ctx.run_dir / "sft.train.jsonl")[0]["messages"]


def test_rows_that_trl_cannot_take_are_dropped_and_counted(ctx) -> None:
    df = rows(5)
    df["response"] = ["a0", None, 3, "a3", "a4"]
    df.loc[3, "score"] = math.inf
    stage = make_stage(
        "export",
        ctx,
        "e",
        views=[{"file": "sft", "kind": "sft", "keep": ["score"], "formats": ["jsonl", "parquet"]}],
    )
    out = run_stage(stage, df)
    assert len(out) == 5  # the stage's rows pass through; only the view drops
    written = lines(ctx.run_dir / "sft.jsonl")
    assert [r["messages"][1]["content"] for r in written] == ["a0", "a4"]
    assert ctx.stats.stage("e").counts == {
        "sft:dropped:non_string:response": 2,
        "sft:dropped:non_finite:score": 1,
    }
    assert len(pd.read_parquet(ctx.run_dir / "sft.parquet")) == 2


def test_nan_in_a_kept_number_is_null_not_a_drop(ctx) -> None:
    df = rows(2)
    df.loc[0, "score"] = math.nan
    run_stage(make_stage("export", ctx, "e", views=[{"file": "s", "kind": "sft", "keep": ["score"]}]), df)
    assert [r["score"] for r in lines(ctx.run_dir / "s.jsonl")] == [None, 1.0]
    assert "Infinity" not in (ctx.run_dir / "s.jsonl").read_text()


def test_on_invalid_fail_names_the_view_the_reason_and_a_row(ctx) -> None:
    df = rows(3)
    df["worse"] = ["w0", None, "w2"]
    stage = make_stage(
        "export",
        ctx,
        "e",
        views=[
            {
                "file": "p",
                "kind": "preference",
                "prompt": "instruction",
                "chosen": "response",
                "rejected": "worse",
                "on_invalid": "fail",
            }
        ],
    )
    with pytest.raises(StageError) as exc:
        run_stage(stage, df)
    assert "pipeline.stages.e.views[0] (p): 1 row(s) non_string:worse (e.g. row_id 1)" in str(exc.value)
    assert "pipeline.stages.e.views[0].on_invalid=drop" in str(exc.value)


def test_rows_view_checks_every_column_for_infinity(ctx) -> None:
    df = rows(2)
    df.loc[1, "score"] = -math.inf
    run_stage(make_stage("export", ctx, "e", views=[{"file": "r", "kind": "rows"}]), df)
    assert [r["row_id"] for r in lines(ctx.run_dir / "r.jsonl")] == ["0"]


def test_keep_may_not_overwrite_a_view_column(ctx) -> None:
    with pytest.raises(ConfigError, match=r"views\[0\]\.keep: 'prompt' is one of the view's own columns"):
        make_stage("export", ctx, "e", views=[{"file": "p", "kind": "preference", "keep": ["prompt"]}])


def test_outputs_name_every_file(ctx) -> None:
    stage = make_stage(
        "export",
        ctx,
        "e",
        views=[
            {"file": "p", "kind": "preference", "split": {"train": 0.5, "val": 0.5}},
            {"file": "s", "kind": "sft", "format": "standard", "formats": ["parquet"]},
        ],
    )
    p, s = stage.outputs()
    assert (p.name, p.kind, p.format, p.splits) == (
        "p",
        "preference",
        "conversational",
        {"train": "p.train", "val": "p.val"},
    )
    assert (s.splits, s.formats, s.format) == ({"": "s"}, ["parquet"], "standard")


@pytest.mark.parametrize("fmt", ["conversational", "standard"])
def test_a_view_never_holds_an_empty_turn(ctx, fmt: str) -> None:
    df = rows(5)
    df["instruction"] = ["q0", "", "q2", "q3", "q4"]
    df["response"] = ["a0", "a1", " \n\t", "a3", "a4"]
    df["worse"] = ["w0", "w1", "w2", "", "w4"]
    views = [
        {"file": "sft", "kind": "sft", "format": fmt},
        {"file": "p", "kind": "preference", "prompt": "instruction", "chosen": "response"},
    ]
    views[1]["rejected"] = "worse"
    run_stage(make_stage("export", ctx, "e", views=views), df)
    sft, pref = lines(ctx.run_dir / "sft.jsonl"), lines(ctx.run_dir / "p.jsonl")
    assert len(sft) == 3 and len(pref) == 2  # rows 1 and 2 (and, for the pairs, 3) are dropped
    texts = json.dumps(sft + pref)
    assert '"content": ""' not in texts and '""' not in texts and "\\n\\t" not in texts
    assert ctx.stats.stage("e").counts == {
        "sft:dropped:empty:instruction": 1,
        "sft:dropped:empty:response": 1,
        "p:dropped:empty:instruction": 1,
        "p:dropped:empty:response": 1,
        "p:dropped:empty:worse": 1,
    }


def test_on_invalid_fail_names_an_empty_turn(ctx) -> None:
    df = rows(2)
    df.loc[1, "response"] = "   "
    stage = make_stage("export", ctx, "e", views=[{"file": "s", "kind": "sft", "on_invalid": "fail"}])
    with pytest.raises(StageError, match=r"views\[0\] \(s\): 1 row\(s\) empty:response \(e.g. row_id 1\)"):
        run_stage(stage, df)
