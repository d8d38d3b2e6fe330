"""`Load.stream(k)`: the load stage's output in chunks of about k rows, read a chunk at a time;
the chunks concatenated equal `Load.run` (row ids, columns, dtypes, drop counts), for every
input format, and the same errors are raised (docs/inputs.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import InputError

N = 23


def rows() -> list[dict]:
    """Every fourth question is empty (dropped when required); `tag` only from row 9 on."""
    out = []
    for i in range(N):
        row = {"id": f"q{i}", "question": "" if i % 4 == 3 else f"question {i}?", "n": i}
        if i >= 9:
            row["tag"] = f"t{i % 3}"
        out.append(row)
    return out


def write(tmp_path: Path, fmt: str) -> Path:
    data = rows()
    if fmt == "jsonl":
        p = tmp_path / "d.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in data))
    elif fmt == "json":
        p = tmp_path / "d.json"
        p.write_text(json.dumps({"data": data}, indent=1))
    elif fmt == "csv":
        p = tmp_path / "d.csv"
        pd.DataFrame(data).to_csv(p, index=False)
    elif fmt == "parquet":
        p = tmp_path / "d.parquet"
        pd.DataFrame(data).to_parquet(p)
    elif fmt == "text":
        p = tmp_path / "d.txt"
        p.write_text("".join(f"{r['question'] or '   '}\n" for r in data))
    else:
        p = tmp_path / "docs"
        p.mkdir()
        for r in data:
            (p / f"{r['n']:02d}.txt").write_text(r["question"] or "empty")
    return p


def stage(ctx, path: Path, **params):
    return make_stage("load", ctx, "load", path=str(path), **params)


def both(ctx, path: Path, k: int, **params) -> tuple[pd.DataFrame, list[pd.DataFrame], dict, dict]:
    """run's output and drop counts, then stream(k)'s chunks and drop counts."""
    whole = run_stage(stage(ctx, path, **params), pd.DataFrame())
    drops = dict(ctx.stats.stage("load").drops)
    ctx.stats.stages.clear()
    chunks = list(stage(ctx, path, **params).stream(k))
    return whole, chunks, drops, dict(ctx.stats.stage("load").drops)


def assert_same(whole: pd.DataFrame, chunks: list[pd.DataFrame], k: int) -> None:
    assert all(len(c) <= k for c in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks), whole)


TEXT_PARAMS = [{}, {"limit": 7}, {"limit": 30}]
TABLE_PARAMS = [
    {},
    {"rename": {"question": "instruction"}, "required": ["instruction"]},
    {"required": ["question"], "columns": ["question", "n"], "limit": 11},
    {"required": ["question"], "id_column": "id"},
    {"columns": ["question", "tag"]},
    {"limit": 5},
]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
@pytest.mark.parametrize("params", TABLE_PARAMS)
@pytest.mark.parametrize("k", [1, 4, 100])
def test_stream_equals_run_for_tables(ctx, tmp_path, fmt, params, k):
    whole, chunks, drops, drops_streamed = both(ctx, write(tmp_path, fmt), k, **params)
    assert_same(whole, chunks, k)
    if params.get("limit"):  # run counts the drops in all it read (`limit` rows, then twice as many)
        assert all(drops_streamed[r] <= n for r, n in drops.items())
    else:
        assert drops == drops_streamed
    if k == 4 and not params.get("limit"):
        assert len(chunks) >= N // 4 - 1  # read in chunks, not at once


@pytest.mark.parametrize("fmt", ["text", "folder"])
@pytest.mark.parametrize("params", TEXT_PARAMS)
@pytest.mark.parametrize("k", [1, 5, 100])
def test_stream_equals_run_for_text(ctx, tmp_path, fmt, params, k):
    whole, chunks, _, _ = both(ctx, write(tmp_path, fmt), k, **params)
    assert_same(whole, chunks, k)
    assert list(pd.concat(chunks).row_id[:2]) == ["0", "1"]


def test_folder_row_ids_go_on_across_chunks_with_a_limit(ctx, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02d}.txt").write_text("" if i in (1, 3) else f"doc {i}")
    df = run_stage(stage(ctx, folder, limit=5, required=["text"]), pd.DataFrame())
    assert list(df.row_id) == ["0", "2", "4", "5", "6"]  # read 5 files (3 kept), then 10 more


def test_drops_are_counted_once_per_row(ctx, tmp_path):
    _, chunks, drops, drops_streamed = both(ctx, write(tmp_path, "jsonl"), 3, required=["question"])
    assert drops_streamed == drops == {"empty:question": 5}
    assert sum(map(len, chunks)) == N - 5


def test_non_text_coerce_and_drop_match_run(ctx, tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"question": i if i % 3 == 0 else f"q{i}"}) + "\n" for i in range(10)))
    for how in ("coerce", "drop"):
        whole, chunks, drops, drops_streamed = both(ctx, p, 4, required=["question"], non_text=how)
        assert_same(whole, chunks, 4)
        assert drops == drops_streamed
        ctx.stats.stages.clear()


def test_stream_stops_reading_at_the_limit(ctx, tmp_path):
    """A broken line after the rows the limit needs is never read."""
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"question": f"q{i}"}) + "\n" for i in range(6)) + "{broken\n")
    chunks = list(stage(ctx, p, limit=4).stream(2))
    assert [len(c) for c in chunks] == [2, 2]
    with pytest.raises(InputError, match="line 7 is not valid JSON"):
        list(stage(ctx, p, limit=7).stream(2))


def test_a_duplicate_id_raises_as_in_run(ctx, tmp_path):
    p = tmp_path / "d.jsonl"
    ids = ["a", "b", "c", "d", "e", "b", "f"]
    p.write_text("".join(json.dumps({"id": i, "question": "q"}) + "\n" for i in ids))
    with pytest.raises(InputError) as ran:
        run_stage(stage(ctx, p, id_column="id"), pd.DataFrame())
    for k in (2, 10):  # the duplicate in a later chunk, and within one chunk
        with pytest.raises(InputError) as streamed:
            list(stage(ctx, p, id_column="id").stream(k))
        assert str(streamed.value) == str(ran.value)
        assert "duplicate values (e.g. 'b')" in str(ran.value)


def test_a_duplicate_id_in_a_dropped_row_is_no_error(ctx, tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"id": 1, "question": "q"}) + "\n" + json.dumps({"id": 1, "question": ""}) + "\n")
    assert [list(c.row_id) for c in stage(ctx, p, id_column="id", required=["question"]).stream(1)] == [["1"]]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_missing_column_raises_as_in_run(ctx, tmp_path, fmt):
    p = write(tmp_path, fmt)
    params = {"required": ["answer"]}
    with pytest.raises(InputError) as ran:
        run_stage(stage(ctx, p, **params), pd.DataFrame())
    streamed = stage(ctx, p, **params).stream(4)
    with pytest.raises(InputError) as exc:
        list(streamed)
    assert str(exc.value) == str(ran.value)
    assert "required column 'answer' is missing" in str(ran.value)


def test_a_csv_missing_column_raises_before_the_first_chunk(ctx, tmp_path):
    with pytest.raises(InputError, match="required column 'answer'"):
        next(stage(ctx, write(tmp_path, "csv"), required=["answer"]).stream(4))


def test_sample_is_not_streamable(ctx, tmp_path):
    p = write(tmp_path, "jsonl")
    assert stage(ctx, p, limit=3).streamable()
    sampled = stage(ctx, p, sample=5)
    assert not sampled.streamable()
    with pytest.raises(ValueError, match="sample"):
        next(sampled.stream(4))


def test_a_hugging_face_dataset_streams(ctx, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))  # no network: a save_to_disk folder
    ds = datasets.Dataset.from_list(rows())
    ds.save_to_disk(str(tmp_path / "disk"))
    for params in ({"required": ["question"]}, {"required": ["question"], "limit": 8, "id_column": "id"}):
        whole, chunks, _, _ = both(ctx, tmp_path / "disk", 3, **params)
        assert_same(whole, chunks, 3)
        ctx.stats.stages.clear()


def test_a_non_text_value_fails_as_in_run(ctx, tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"question": 7 if i == 6 else f"q{i}"}) + "\n" for i in range(9)))
    with pytest.raises(InputError) as ran:
        run_stage(stage(ctx, p, required=["question"]), pd.DataFrame())
    with pytest.raises(InputError) as streamed:
        list(stage(ctx, p, required=["question"]).stream(4))
    assert str(streamed.value) == str(ran.value)  # the only such value: the same count and example
    assert "1 value(s) used as text are not text: row 6 'question': number 7" in str(ran.value)
