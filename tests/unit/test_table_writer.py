"""`io.TableWriter` writes a table chunk by chunk into the file `write_jsonl` / `write_parquet`
write for the whole frame (Parquet: the same table read back, whatever the types of each chunk);
`append_jsonl` / `read_jsonl_parts`: a checkpoint that a torn last line leaves readable."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers import GOLDEN

from selfalign import io

OUTPUTS = sorted((GOLDEN / "outputs").rglob("*.jsonl"))


def frame() -> pd.DataFrame:
    n = 12
    return pd.DataFrame(
        {
            "row_id": [str(i) for i in range(n)],
            "late_text": [None] * 5 + [f"t{i}" for i in range(5, n)],  # all null in the first chunks
            "num": [1, 2, 3, 4, 5, 6.5, 7, 8, 9, 10, 11, 12],  # object: ints, then a float
            "mixed": [1, 2, 3, 4, 5, 6, "seven", 8, 9, 10, 11, 12],  # ints, then a string: JSON text
            "messages": [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
            + [[{"role": "user", "content": f"q{i}", "name": "x"}] for i in range(6, n)],  # a key later
            "tags": [[] for _ in range(4)] + [["a", "b"] for _ in range(4, n)],
            "flag": [None, True, False, None, True, True, False, None, True, False, True, False],
            "score": [math.nan] * 4 + [0.5] * (n - 4),
            "meta": [{"k": 1}] * 3 + [{"k": 2, "extra": "e"}] * (n - 3),
        }
    )


def chunks(df: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [df.iloc[i : i + size] for i in range(0, len(df), size)]


def written(tmp_path: Path, fmt: str, parts: list[pd.DataFrame], name: str = "chunked") -> Path:
    path = tmp_path / f"{name}.{fmt}"
    with io.TableWriter(path, fmt) as w:
        for part in parts:
            w.write(part)
    assert w.rows == sum(map(len, parts))
    return path


def assert_parquet_equal(chunked: Path, whole: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_parquet(chunked), pd.read_parquet(whole))


@pytest.mark.parametrize("size", [1, 3, 5, 12, 100])
def test_jsonl_in_chunks_is_byte_identical(tmp_path, size):
    df = frame()
    io.write_jsonl(df, tmp_path / "whole.jsonl")
    path = written(tmp_path, "jsonl", chunks(df, size))
    assert path.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 12, 100])
def test_parquet_in_chunks_reads_back_as_the_whole_frame(tmp_path, size):
    df = frame()
    io.write_parquet(df, tmp_path / "whole.parquet")
    path = written(tmp_path, "parquet", chunks(df, size))
    assert_parquet_equal(path, tmp_path / "whole.parquet")
    assert pq.read_schema(path) == pq.read_schema(tmp_path / "whole.parquet")
    assert not list(tmp_path.glob("*.parts")) and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("golden", OUTPUTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_pipelines_outputs_in_chunks(tmp_path, golden):
    """The datasets and views of every shipped pipeline (nested messages, scores, lists)."""
    df = io.read_jsonl(golden)
    for fmt, write in (("jsonl", io.write_jsonl), ("parquet", io.write_parquet)):
        write(df, tmp_path / f"whole.{fmt}")
        path = written(tmp_path, fmt, chunks(df, 3))
        if fmt == "jsonl":
            assert path.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
        else:
            assert_parquet_equal(path, tmp_path / "whole.parquet")
            assert pq.read_schema(path) == pq.read_schema(tmp_path / "whole.parquet")


def test_the_mixed_column_is_json_text_in_every_chunk(tmp_path):
    path = written(tmp_path, "parquet", chunks(frame(), 4))
    assert pd.read_parquet(path).mixed.tolist()[5:8] == ["6", '"seven"', "8"]


def test_chunks_of_separate_frames_with_drifting_dtypes(tmp_path):
    """What a streaming runner hands over: each chunk with its own pandas dtypes and columns."""
    parts = [
        pd.DataFrame({"a": [1, 2], "s": ["x", "y"], "b": [True, False]}),  # int64, str, bool
        pd.DataFrame({"a": [3.5, math.nan], "s": [None, None], "c": ["new", None]}),  # float, object
        pd.DataFrame({"a": [4, 5], "s": [1, 2], "b": [None, True], "c": [None, None]}),  # s: ints now
    ]
    io.write_parquet(pd.concat(parts), tmp_path / "whole.parquet")
    assert_parquet_equal(written(tmp_path, "parquet", parts), tmp_path / "whole.parquet")


def test_an_int_column_with_a_nan_chunk_reads_back_as_floats(tmp_path):
    parts = [pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [math.nan]}), pd.DataFrame({"a": [3]})]
    io.write_parquet(pd.concat(parts), tmp_path / "whole.parquet")
    path = written(tmp_path, "parquet", parts)
    assert_parquet_equal(path, tmp_path / "whole.parquet")
    assert str(pq.read_schema(path).field("a").type) == "double"  # as the whole frame's float64


def test_only_empty_chunks_give_the_columns(tmp_path):
    empty = frame().iloc[:0]
    io.write_parquet(empty, tmp_path / "whole.parquet")
    assert_parquet_equal(written(tmp_path, "parquet", [empty]), tmp_path / "whole.parquet")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_an_error_inside_the_with_leaves_no_file(tmp_path, fmt):
    path = tmp_path / f"out.{fmt}"
    with pytest.raises(RuntimeError), io.TableWriter(path, fmt) as w:
        w.write(frame())
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="jsonl or parquet"):
        io.TableWriter(tmp_path / "x.csv", "csv")


def test_append_jsonl_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    df = frame()[["row_id", "late_text", "messages"]]
    io.append_jsonl(df.iloc[:5], path)
    io.append_jsonl(df.iloc[5:8], path)
    with path.open("ab") as fh:  # a kill -9 in the middle of a line
        fh.write(b'{"row_id": "8", "late_te')
    got = io.read_jsonl_parts(path)
    assert list(got.row_id) == [str(i) for i in range(8)]
    io.append_jsonl(df.iloc[8:], path)  # the re-run appends the rest
    assert path.read_bytes() == _whole_jsonl(tmp_path, df)
    pd.testing.assert_frame_equal(io.read_jsonl_parts(path), io.read_jsonl(path))


def test_a_torn_line_that_is_the_whole_file_is_cut(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"row_id": "0", "a"')
    assert io.read_jsonl_parts(path).empty
    io.append_jsonl(pd.DataFrame({"row_id": ["1"]}), path)
    assert path.read_text() == '{"row_id": "1"}\n'


def _whole_jsonl(tmp_path: Path, df: pd.DataFrame) -> bytes:
    io.write_jsonl(df, tmp_path / "whole.jsonl")
    return (tmp_path / "whole.jsonl").read_bytes()
