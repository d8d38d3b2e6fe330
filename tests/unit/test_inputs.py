"""Bad input gets a clear error before any LLM call: limits, encodings, whole-file streaming
checks with FILE:LINE, early-stopping reads, text columns that hold text (docs/inputs.md)."""

import codecs
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from helpers import TINY_CLI, make_stage, run_stage

from selfalign import io
from selfalign.cli import main
from selfalign.errors import ConfigError, InputError

TINY = [*TINY_CLI, "model=test"]


def jsonl(tmp_path: Path, name: str, lines: list[str]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def questions(n: int) -> list[str]:
    return [json.dumps({"question": f"question number {i}?"}) for i in range(n)]


def load(ctx, path: Path, **params):
    return make_stage("load", ctx, "load", path=str(path), **params)


def problems(stage) -> list[str]:
    _, found = stage.check(set())
    return found


def cli_error(capsys, *args: str, command: str = "validate") -> str:
    code = main([command, *TINY, *args])
    out = capsys.readouterr()
    assert code == 2, out.out + out.err
    assert "Traceback" not in out.err
    return " ".join(out.err.split())


# -- 1. limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [("limit", -1), ("limit", 0), ("sample", -3), ("sample", 0)])
def test_non_positive_limit_or_sample_is_an_error_naming_the_key(ctx, tmp_path, key, value):
    p = jsonl(tmp_path, "d.jsonl", questions(3))
    with pytest.raises(ConfigError) as exc:
        load(ctx, p, **{key: value})
    msg = str(exc.value)
    assert f"pipeline.stages.load.{key}: {value} is not a number of rows" in msg
    assert f"pipeline.stages.load.{key}=10" in msg and "null" in msg


def test_n_rows_minus_one_fails_validation_instead_of_dropping_the_last_row(capsys):
    code = main(["validate", "pipeline=wizardlm_aaa", "model=test", "n_rows=-1"])
    msg = " ".join(capsys.readouterr().err.split())
    assert code == 2, msg
    assert "pipeline.stages.load.limit: -1 is not a number of rows" in msg
    assert "n_rows=10 or n_rows=null" in msg


# -- 2. encoding names, JSON shapes --------------------------------------------------------------


def test_unknown_encoding_is_a_config_error_with_a_suggestion(ctx, tmp_path):
    p = jsonl(tmp_path, "d.jsonl", questions(2))
    with pytest.raises(
        ConfigError,
        match=r"pipeline\.stages\.load\.encoding: 'utf9' is not a text "
        r"encoding Python knows\. Did you mean 'utf-8'\?",
    ):
        load(ctx, p, encoding="utf9")
    with pytest.raises(ConfigError, match="bytes-to-bytes codec"):
        load(ctx, p, encoding="base64")
    with pytest.raises(InputError, match="'klingon' is not a text encoding"):
        io.read_table(p, encoding="klingon")
    assert "'klingon' is not a text encoding" in io.check_file(p, encoding="klingon")[0]


@pytest.mark.parametrize(
    "content,what",
    [
        ("42", "the file holds a JSON number (42), not a list of objects"),
        ('"x"', 'the file holds a JSON string ("x"), not a list of objects'),
        ("[1, 2]", "element 0 of the list is a JSON number (1), not an object"),
        ('[{"question": "a"},\n ["b"]]', "d.json:2: element 1 of the list is a JSON array"),
        (
            '{"meta": 1, "data": [{"question": "a"}, "b"]}',
            "element 1 of the list under the key 'data' is a JSON string",
        ),
    ],
)
def test_json_that_is_not_a_list_of_objects(ctx, tmp_path, content, what):
    p = tmp_path / "d.json"
    p.write_text(content)
    with pytest.raises(InputError, match="not a") as exc:
        io.read_table(p)
    assert what in str(exc.value)
    assert what in io.check_file(p)[0]
    try:  # no object at all: the columns are unknown, so check raises; else it lists the problem
        found = problems(load(ctx, p))
    except InputError as exc:
        found = [str(exc)]
    assert len(found) == 1 and what in found[0]


def test_json_list_and_wrapped_list_read(tmp_path):
    (tmp_path / "a.json").write_text('[{"q": "x"}, {"q": "y"}]')
    (tmp_path / "b.json").write_text('{"version": 2, "rows": [{"q": "x"}, {"q": "y"}], "n": 2}')
    (tmp_path / "c.json").write_text('{"q": "only one row"}')
    assert list(io.read_table(tmp_path / "a.json").q) == ["x", "y"]
    assert list(io.read_table(tmp_path / "b.json").q) == ["x", "y"]
    assert list(io.read_table(tmp_path / "c.json").q) == ["only one row"]
    (tmp_path / "e.json").write_text("[]")
    with pytest.raises(InputError, match="has no rows"):
        io.read_table(tmp_path / "e.json")
    (tmp_path / "s.json").write_text('[{"q": "x"},\n {"q": "y",,}\n]')
    assert "s.json:2: not valid JSON" in io.check_file(tmp_path / "s.json")[0]


# -- 3. the whole file is checked, streaming, with FILE:LINE --------------------------------------


def test_check_finds_a_bad_json_line_past_the_first_rows(ctx, tmp_path):
    lines = questions(20)
    lines[6] = '{"question": oops}'
    p = jsonl(tmp_path, "d.jsonl", lines)
    found = problems(load(ctx, p, required=["question"]))
    assert len(found) == 1
    assert found[0].startswith(f"pipeline.stages.load: {p}:7: line 7 is not valid JSON")


def test_check_reports_first_of_each_kind_with_a_count(tmp_path):
    lines = questions(30)
    lines[6], lines[9], lines[12] = "{oops", "[1]", "{also bad"
    p = jsonl(tmp_path, "d.jsonl", lines)
    found = io.check_file(p)
    assert len(found) == 2
    assert f"{p}:7: line 7 is not valid JSON" in found[0] and "(1 more like it further on.)" in found[0]
    assert f"{p}:10: line 10 is a JSON array, not an object" in found[1]


def test_check_finds_a_bad_byte_on_line_8_with_its_offset(ctx, tmp_path):
    raw = [line.encode() for line in questions(12)]
    raw[7] = '{"question": "caf\xe9"}'.encode("latin-1")
    p = tmp_path / "d.jsonl"
    p.write_bytes(b"\n".join(raw) + b"\n")
    offset = sum(len(r) + 1 for r in raw[:7]) + raw[7].index(b"\xe9")
    (msg,) = problems(load(ctx, p))
    assert f"{p}:8: not valid utf-8 text (line 8, byte {offset} of the file: 0xE9" in msg
    assert "Re-save the file as UTF-8" in msg
    with pytest.raises(InputError, match=f"d.jsonl:8: not valid utf-8 text .*byte {offset}"):
        io.read_table(p)


def test_check_finds_ragged_csv_rows_with_line_numbers(ctx, tmp_path):
    p = tmp_path / "d.csv"
    p.write_text(
        'question,answer\nWhat is rain?,Water\n"A question\nover two lines",yes\n'
        "one,two,three\nonly one\n\nlast,row\n"
    )
    (msg,) = problems(load(ctx, p, required=["question"]))
    assert f"{p}:5: line 5 has 3 field(s), the header (its first line) has 2" in msg
    assert "(1 more like it further on.)" in msg  # line 6 has 1 field
    p.write_text('question,answer\nok,fine\n"never closed,x\nmore,rows\n')
    assert f"{p}:3: a quoted field that starts on line 3 is never closed" in io.check_file(p)[0]


def test_csv_bad_byte_is_located_by_line_and_byte(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes(b"question\nfine\nalso fine\nna\xefve\n")
    msg = io.check_file(p)[0]
    assert f"{p}:4: not valid utf-8 text (line 4, byte 26 of the file" in msg
    with pytest.raises(InputError, match=r"d\.csv:4: not valid utf-8 text \(line 4, byte 26"):
        io.read_table(p)


def test_check_streams_and_never_builds_a_dataframe(ctx, tmp_path, monkeypatch):
    lines = questions(2000)
    lines[1500] = "{broken"
    paths = [jsonl(tmp_path, "d.jsonl", lines), tmp_path / "d.csv", tmp_path / "d.json", tmp_path / "d.txt"]
    paths[1].write_text("question\n" + "\n".join(f"q{i}" for i in range(2000)) + "\n")
    paths[2].write_text("[" + ",\n".join(questions(2000)) + "]")
    paths[3].write_text("\n".join(f"line {i}" for i in range(2000)) + "\n")

    def refuse(*a, **k):
        raise AssertionError("check built a DataFrame")

    monkeypatch.setattr(pd, "DataFrame", refuse)
    monkeypatch.setattr(pd, "read_csv", refuse)
    assert "d.jsonl:1501: line 1501 is not valid JSON" in problems(load(ctx, paths[0]))[0]
    for p in paths[1:]:
        assert problems(load(ctx, p)) == []
    assert io.scan_file(paths[2]).rows == 2000
    assert io.scan_file(paths[3]).rows == 2000


def test_json_stream_handles_values_longer_than_its_window(tmp_path):
    big = "x" * 300_000
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"question": big, "n": 12345678901234567890}, {"question": "y"}]))
    assert io.check_file(p) == []
    df = io.read_table(p)
    assert df.question[0] == big and df.n[0] == 12345678901234567890 and len(df) == 2


def test_parquet_check_reads_metadata_only(ctx, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    p = tmp_path / "d.parquet"
    pd.DataFrame({"question": ["a", "b"], "n": [1, 2]}).to_parquet(p, index=False)

    def refuse(*a, **k):
        raise AssertionError("check read the data")

    monkeypatch.setattr(pd, "read_parquet", refuse)
    monkeypatch.setattr(pq.ParquetFile, "read", refuse)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", refuse)
    stage = load(ctx, p, required=["question"])
    cols, found = stage.check(set())
    assert found == [] and {"question", "n", "row_id"} <= cols
    (msg,) = problems(load(ctx, p, required=["n"]))
    assert "column 'n' is used as text but its Parquet type is int64" in msg


# -- 4. a limit stops the read --------------------------------------------------------------------


def test_limit_reads_no_further_than_needed(ctx, tmp_path):
    lines = questions(50)
    lines[1] = json.dumps({"question": ""})  # dropped as empty: one more row is read
    lines[20] = "{this line is never read"
    p = jsonl(tmp_path, "d.jsonl", lines)
    out = run_stage(load(ctx, p, required=["question"], limit=3), pd.DataFrame())
    assert list(out.row_id) == ["0", "2", "3"]
    assert ctx.stats.stage("load").drops == {"empty:question": 1}
    with pytest.raises(InputError, match="line 21 is not valid JSON"):
        run_stage(load(ctx, p, required=["question"]), pd.DataFrame())  # no limit: all of it


@pytest.mark.parametrize(
    "name,content",
    [
        ("d.csv", "question\n" + "\n".join(f"q{i}" for i in range(30)) + "\nbad,row,here\n"),
        ("d.json", "[" + ",".join(questions(30)) + ", {oops]"),
        ("d.txt", "\n".join(f"line {i}" for i in range(30)) + "\n\xff\xfe never decoded\n"),
    ],
)
def test_limit_stops_early_in_every_text_format(ctx, tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content.encode("latin-1"))
    out = run_stage(load(ctx, p, limit=5), pd.DataFrame())
    assert len(out) == 5 and list(out.row_id) == ["0", "1", "2", "3", "4"]
    assert len(io.read_table(p, nrows=2)) == 2


def test_limit_over_many_chunks_and_parquet(ctx, tmp_path):
    lines = [json.dumps({"question": "" if i % 3 else f"q{i}"}) for i in range(100)]
    p = jsonl(tmp_path, "d.jsonl", lines)
    out = run_stage(load(ctx, p, required=["question"], limit=10), pd.DataFrame())
    assert list(out.question) == [f"q{i}" for i in range(0, 30, 3)]
    assert list(out.row_id) == [str(i) for i in range(0, 30, 3)]
    pq = tmp_path / "d.parquet"
    pd.DataFrame({"question": [f"q{i}" for i in range(40)]}).to_parquet(pq, index=False)
    out = run_stage(load(ctx, pq, limit=7), pd.DataFrame())
    assert list(out.row_id) == [str(i) for i in range(7)]
    sampled = run_stage(load(ctx, p, required=["question"], sample=4, seed=1, limit=2), pd.DataFrame())
    assert len(sampled) == 2  # a sample reads everything, then the limit applies


def test_a_column_first_seen_after_the_first_chunk(ctx, tmp_path):
    lines = [json.dumps({"other": "x"})] * 3 + [json.dumps({"question": "late"})]
    p = jsonl(tmp_path, "d.jsonl", lines)
    out = run_stage(load(ctx, p, required=["question"], limit=1), pd.DataFrame())
    assert list(out.question) == ["late"] and list(out.row_id) == ["3"]
    q = jsonl(tmp_path, "e.jsonl", [json.dumps({"other": "x"})] * 3)
    with pytest.raises(InputError, match="required column 'question' is missing"):
        run_stage(load(ctx, q, required=["question"], limit=1), pd.DataFrame())


# -- 5. UTF-16 and byte-order marks ---------------------------------------------------------------


@pytest.mark.parametrize(
    "bom,codec", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]
)
@pytest.mark.parametrize("name", ["d.jsonl", "d.csv", "d.txt"])
def test_utf16_is_named_and_loads_with_encoding_utf16(ctx, tmp_path, bom, codec, name):
    text = {
        "d.jsonl": '{"question": "héllo"}\n{"question": "wörld"}\n',
        "d.csv": "question\nhéllo\nwörld\n",
        "d.txt": "héllo\nwörld\n",
    }[name]
    p = tmp_path / name
    p.write_bytes(bom + text.encode(codec))
    with pytest.raises(InputError) as exc:
        load(ctx, p).check(set())
    assert "the file is UTF-16; re-save as UTF-8 or set encoding: utf-16" in str(exc.value)
    assert f"byte-order mark {' '.join(f'{b:02X}' for b in bom)}" in str(exc.value)
    stage = load(ctx, p, encoding="utf-16", text_column="question")
    assert problems(stage) == []
    assert list(run_stage(stage, pd.DataFrame()).question) == ["héllo", "wörld"]


def test_utf16_without_bom_and_binary_files_are_named(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes('{"question": "a"}\n'.encode("utf-16-le"))
    assert "NUL bytes near the start" in io.check_file(p)[0]
    assert "utf-16-le" in io.check_file(p)[0]
    assert list(io.read_table(p, encoding="utf-16-le").question) == ["a"]
    p.write_bytes(b"\x1f\x8b\x08\x00compressed")
    assert "gzip-compressed" in io.check_file(p)[0]


@pytest.mark.parametrize(
    "name,content,column",
    [
        ("d.jsonl", '{"question": "a"}\n{"question": "b"}\n', "question"),
        ("d.csv", "question,answer\na,1\nb,2\n", "question"),
        ("d.txt", "a\nb\n", "text"),
    ],
)
def test_utf8_bom_is_accepted(ctx, tmp_path, name, content, column):
    p = tmp_path / name
    p.write_bytes(codecs.BOM_UTF8 + content.encode())
    stage = load(ctx, p, required=[column])
    cols, found = stage.check(set())
    assert found == [] and column in cols
    assert list(run_stage(stage, pd.DataFrame())[column]) == ["a", "b"]
    p.write_bytes(codecs.BOM_UTF8 + content.encode())
    assert "it is UTF-8. Set encoding: utf-8" in io.check_file(p, encoding="latin-1")[0]


# -- 6. text columns hold text; no NaN/Infinity from JSON -----------------------------------------

MIXED = [
    '{"question": "fine"}',
    '{"question": 42}',
    '{"question": true}',
    '{"question": [1, 2]}',
    '{"question": {"a": 1}}',
    '{"question": null}',
    '{"question": 2.5}',
    '{"question": "ok"}',
]


def test_non_text_fails_by_default_listing_rows_columns_and_types(ctx, tmp_path):
    p = jsonl(tmp_path, "d.jsonl", MIXED)
    (msg,) = problems(load(ctx, p, required=["question"]))
    assert "5 value(s) used as text are not text" in msg
    assert "line 2 (row 1) 'question': number 42" in msg
    assert "line 3 (row 2) 'question': boolean true" in msg
    assert "line 4 (row 3) 'question': array [1, 2]" in msg
    assert "line 5 (row 4) 'question': object {\"a\": 1}" in msg
    assert "line 7 (row 6) 'question': number 2.5" in msg
    assert "pipeline.stages.load.non_text=coerce" in msg and "non_text=drop" in msg
    with pytest.raises(InputError, match="row 1 'question': number 42; row 2 'question': boolean"):
        run_stage(load(ctx, p, required=["question"]), pd.DataFrame())


def test_non_text_coerce_and_drop_are_counted(ctx, tmp_path):
    p = jsonl(tmp_path, "d.jsonl", MIXED)
    coerce = load(ctx, p, required=["question"], non_text="coerce")
    assert problems(coerce) == []
    out = run_stage(coerce, pd.DataFrame())
    assert list(out.question) == ["fine", "42", "true", "[1, 2]", '{"a": 1}', "2.5", "ok"]
    assert ctx.stats.stage("load").counts == {"coerced:question": 5}
    assert ctx.stats.stage("load").drops == {"empty:question": 1}  # null is missing, not text
    drop = make_stage("load", ctx, "d", path=str(p), required=["question"], non_text="drop")
    dropped = run_stage(drop, pd.DataFrame())
    assert list(dropped.question) == ["fine", "ok"] and list(dropped.row_id) == ["0", "7"]
    assert ctx.stats.stage("d").drops == {"non_text:question": 5, "empty:question": 1}


def test_text_column_is_checked_and_numbers_in_csv_are_text(ctx, tmp_path):
    p = jsonl(tmp_path, "d.jsonl", ['{"text": 7, "question": "q"}'])
    assert "'text': number 7" in problems(load(ctx, p))[0]
    assert problems(load(ctx, p, text_column="question")) == []
    c = tmp_path / "d.csv"
    c.write_text("question,score\n42,5\ntrue,NaN\n")
    out = run_stage(load(ctx, c, required=["question"]), pd.DataFrame())
    assert list(out.question) == ["42", "true"] and list(out.score) == ["5", "NaN"]


def test_renamed_text_column_is_checked_under_its_file_name(ctx, tmp_path):
    p = jsonl(tmp_path, "d.jsonl", ['{"prompt": "fine"}', '{"prompt": 3}'])
    (msg,) = problems(load(ctx, p, rename={"prompt": "question"}, required=["question"]))
    assert "line 2 (row 1) 'prompt': number 3" in msg


def test_parquet_non_text_values_at_run_time(ctx, tmp_path):
    p = tmp_path / "d.parquet"
    pd.DataFrame({"question": [1, 2, 3]}).to_parquet(p, index=False)
    with pytest.raises(InputError, match="row 0 'question': number 1"):
        run_stage(load(ctx, p, required=["question"]), pd.DataFrame())
    out = run_stage(load(ctx, p, required=["question"], non_text="coerce"), pd.DataFrame())
    assert list(out.question) == ["1", "2", "3"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_json_are_rejected_with_their_line(ctx, tmp_path, token):
    p = jsonl(tmp_path, "d.jsonl", ['{"question": "a", "s": 1}', f'{{"question": "b", "s": {token}}}'])
    (msg,) = problems(load(ctx, p))
    assert f"{p}:2: line 2 holds {token}" in msg and "JSON has no NaN or Infinity" in msg
    with pytest.raises(InputError, match="line 2 holds"):
        io.read_table(p)
    j = tmp_path / "d.json"
    j.write_text(f'[{{"question": "a"}},\n {{"question": "b", "s": [1, {token}]}}]')
    assert f"{j}:2: the value starting on line 2 holds {token}" in io.check_file(j)[0]
    with pytest.raises(InputError, match="JSON has no NaN or Infinity"):
        io.read_table(j)


def test_nothing_downstream_is_nan_or_infinite(ctx, tmp_path):
    p = jsonl(tmp_path, "d.jsonl", ['{"question": "a", "s": 1.5}', '{"question": "b"}'])
    recs = io.records(run_stage(load(ctx, p), pd.DataFrame()))
    assert recs[1]["s"] is None
    assert not any(isinstance(v, float) and not math.isfinite(v) for r in recs for v in r.values())


# -- the whole path: validate/run stop with exit 2 before anything is called ----------------------


def test_cli_validate_reports_file_and_line(capsys, tmp_path):
    lines = questions(10)
    lines[6] = '{"question": "unterminated}'
    p = jsonl(tmp_path, "d.jsonl", lines)
    msg = cli_error(capsys, f"pipeline.stages.load.path={p}")
    assert "1 problem(s) found before any model call" in msg
    assert f"pipeline.stages.load: {p}:7: line 7 is not valid JSON" in msg


def test_cli_run_stops_before_a_run_dir_or_a_model_call(capsys, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    p = jsonl(tmp_path, "d.jsonl", ['{"question": "What is rain?"}', '{"question": 42}'])
    msg = cli_error(capsys, f"pipeline.stages.load.path={p}", command="run")
    assert "line 2 (row 1) 'question': number 42" in msg
    assert list(cwd.iterdir()) == []
    msg = cli_error(capsys, f"pipeline.stages.load.path={p}", "pipeline.stages.load.encoding=utf9")
    assert "pipeline.stages.load.encoding: 'utf9' is not a text encoding" in msg
