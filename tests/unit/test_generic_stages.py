"""Each generic stage on a tiny frame with the deterministic test model."""

import json

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError, InputError, StageError


def frame(**cols):
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"row_id": [str(i) for i in range(n)], **cols})


def test_filter_rows_counts_each_rule(ctx):
    df = frame(text=["fine text here", "", "café au lait", "buy now cheap", "ok then", "x" * 40])
    stage = make_stage(
        "filter_rows",
        ctx,
        "f",
        rules=[
            {"column": "text", "op": "non_empty"},
            {"column": "text", "op": "ascii_only"},
            {
                "column": "text",
                "op": "not_contains_any",
                "value": ["BUY"],
                "case_sensitive": False,
                "name": "promo",
            },
            {"column": "text", "op": "max_chars", "value": 30},
            {"column": "text", "op": "min_words", "value": 2},
        ],
    )
    out = run_stage(stage, df)
    assert list(out.text) == ["fine text here", "ok then"]
    assert dict(ctx.stats.stage("f").drops) == {
        "non_empty:text": 1,
        "ascii_only:text": 1,
        "promo": 1,
        "max_chars:text": 1,
    }


def test_filter_quantile_range_regex_and_membership(ctx):
    df = frame(text=["a", "a b", "a b c", "a b c d", "a b c d e"], cat=list("xxyyz"))
    q = make_stage(
        "filter_rows",
        ctx,
        "q",
        rules=[{"column": "text", "op": "quantile_range", "measure": "words", "low": 0.25, "high": 0.5}],
    )
    assert list(run_stage(q, df).text) == ["a b", "a b c"]
    r = make_stage(
        "filter_rows",
        ctx,
        "r",
        rules=[
            {"column": "text", "op": "not_regex", "value": r"\bd\b"},
            {"column": "cat", "op": "in", "value": ["x", "y"]},
        ],
    )
    assert list(run_stage(r, df).text) == ["a", "a b", "a b c"]


def test_filter_rule_errors_name_path(ctx):
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.f\.rules\[0\].*unknown op 'longer'"):
        make_stage("filter_rows", ctx, "f", rules=[{"column": "t", "op": "longer"}])
    with pytest.raises(ConfigError, match=r"rules\[0\]: op 'max_chars' needs a `value`"):
        make_stage("filter_rows", ctx, "f", rules=[{"column": "t", "op": "max_chars"}])


def test_dedup_normalised_per_group_and_balanced(ctx):
    df = frame(
        topic=["Rivers", "rivers ", "Lakes", "Rivers", "Hills", "Peaks", "Dunes"],
        type=["a", "a", "a", "b", "b", "b", "b"],
    )
    out = run_stage(make_stage("dedup_exact", ctx, "d", column="topic", group_by="type", balance=True), df)
    assert sorted(out.groupby("type").size().tolist()) == [2, 2]
    assert ctx.stats.stage("d").drops == {"duplicate": 1, "balance": 2}


def test_sample_rows_seeded_and_head(ctx):
    df = frame(x=list(range(10)))
    a = run_stage(make_stage("sample_rows", ctx, "s", n=3, seed=1), df)
    b = run_stage(make_stage("sample_rows", ctx, "s", n=3, seed=1), df)
    assert list(a.x) == list(b.x) and list(a.x) == sorted(a.x)
    assert list(run_stage(make_stage("sample_rows", ctx, "h", n=2, mode="head"), df).x) == [0, 1]


def test_select_best_modes(ctx):
    df = pd.DataFrame(
        {
            "row_id": ["0.0", "0.1", "1.0", "1.1"],
            "parent_id": ["0", "0", "1", "1"],
            "sample": [0, 1, 0, 1],
            "s": [3, 5, 4, 4],
            "t": ["aa", "a b c", "x", "yy"],
        }
    )
    best = run_stage(make_stage("select_best", ctx, "b", mode="argmax", column="s"), df)
    assert list(best.row_id) == ["0", "1"] and list(best.s) == [5, 4]
    assert list(best.t) == ["a b c", "x"]  # tie on row 1: the first sample wins
    assert "parent_id" not in best.columns
    longest = run_stage(make_stage("select_best", ctx, "l", mode="longest", column="t", length="chars"), df)
    assert list(longest.t) == ["a b c", "yy"]
    kept = run_stage(make_stage("select_best", ctx, "k", mode="threshold", column="s", threshold=4), df)
    assert list(kept.s) == [5, 4, 4]
    with pytest.raises(ConfigError, match="needs `threshold`"):
        make_stage("select_best", ctx, "k", mode="threshold", column="s")


def test_generate_text_fans_out_with_parent_ids(ctx):
    df = frame(question=["What is rain?", "Why is snow white?"])
    stage = make_stage("generate_text", ctx, "g", prompt="tiny/answer", n=3, output="answer", max_tokens=32)
    assert stage.reads() == {"question"}
    out = run_stage(stage, df)
    assert len(out) == 6 and set(out.parent_id) == {"0", "1"}
    assert list(out.row_id[:3]) == ["0.0", "0.1", "0.2"] and list(out["sample"][:3]) == [0, 1, 2]
    again = run_stage(stage, df)
    assert list(again.answer) == list(out.answer)  # deterministic (and now cached)
    assert ctx.llm.accounting.for_stage("g")["test:unit@:"]["cache_hits"] == 6


def test_generate_parse_failures_retry_then_reject(ctx):
    df = frame(question=["What is rain?"])
    stage = make_stage(
        "generate_text", ctx, "g", prompt="tiny/answer", output="score", parser={"kind": "score"}, retries=2
    )
    out = run_stage(stage, df)
    assert out.empty
    assert ctx.stats.stage("g").drops == {"parse:no_score": 1}
    rec = json.loads((ctx.run_dir / "rejected.jsonl").read_text().splitlines()[0])
    assert rec["attempts"] == 3 and rec["reason"] == "parse: no_score" and rec["raw"]
    failing = make_stage(
        "generate_text", ctx, "g2", prompt="tiny/answer", parser="score", retries=0, on_failure="fail"
    )
    with pytest.raises(StageError, match="row 0 failed after 1 attempt"):
        run_stage(failing, df)


def test_generate_score_parser_adds_reasoning_column(ctx):
    df = frame(question=["What is rain?"], answer=["Water falling."])
    stage = make_stage(
        "generate_text",
        ctx,
        "j",
        prompt="tiny/judge",
        output="score",
        parser={"kind": "score", "min": 1, "max": 5},
    )
    assert stage.writes() == {"score", "score_reasoning"}
    out = run_stage(stage, df)
    assert 1 <= out.score[0] <= 5 and isinstance(out.score_reasoning[0], str)


def test_load_rename_required_and_missing_values(ctx, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("prompt,answer\nHello there,Hi\n,Empty prompt\nBye now,Ciao\n")
    stage = make_stage(
        "load", ctx, "load", path=str(path), rename={"prompt": "instruction"}, required=["instruction"]
    )
    out = run_stage(stage, pd.DataFrame())
    assert list(out.instruction) == ["Hello there", "Bye now"] and list(out.row_id) == ["0", "2"]
    assert ctx.stats.stage("load").drops == {"empty:instruction": 1}
    strict = make_stage(
        "load",
        ctx,
        "load",
        path=str(path),
        rename={"prompt": "instruction"},
        required=["instruction"],
        on_missing="fail",
    )
    with pytest.raises(InputError, match="column 'instruction' is empty in 1 row"):
        run_stage(strict, pd.DataFrame())
    wrong = make_stage("load", ctx, "load", path=str(path), required=["question"])
    with pytest.raises(InputError) as exc:
        wrong.check(set())
    assert "required column 'question' is missing. Columns found: prompt, answer" in str(exc.value)
    assert "pipeline.stages.load.rename={YOUR_COLUMN: question}" in str(exc.value)


def test_export_views_and_seeded_split(ctx):
    df = frame(
        instruction=[f"q{i}" for i in range(10)],
        response=[f"a{i}" for i in range(10)],
        bad=[f"b{i}" for i in range(10)],
    )
    stage = make_stage(
        "export",
        ctx,
        "e",
        views=[
            {"file": "sft", "kind": "sft", "system": "Be brief."},
            {
                "file": "pref",
                "kind": "preference",
                "prompt": "instruction",
                "chosen": "response",
                "rejected": "bad",
                "split": {"train": 0.8, "test": 0.2},
                "formats": ["jsonl", "parquet"],
            },
        ],
    )
    assert stage.reads() == {"instruction", "response", "bad"}
    assert run_stage(stage, df).equals(df)
    first = json.loads((ctx.run_dir / "sft.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    train = (ctx.run_dir / "pref.train.jsonl").read_text().splitlines()
    test = (ctx.run_dir / "pref.test.jsonl").read_text().splitlines()
    assert len(train) == 8 and len(test) == 2
    assert set(json.loads(train[0])) == {"prompt", "chosen", "rejected"}
    assert (ctx.run_dir / "pref.test.parquet").exists()


def test_filter_rows_on_an_empty_frame(ctx):
    stage = make_stage(
        "filter_rows",
        ctx,
        "f",
        rules=[{"column": "text", "op": "ascii_only"}, {"column": "text", "op": "min_words", "value": 2}],
    )
    out = run_stage(stage, pd.DataFrame({"row_id": [], "text": []}))
    assert out.empty and list(out.columns) == ["row_id", "text"]
