"""PromptLibrary (strict Jinja, variables, hashes, errors) and dataset I/O errors."""

from pathlib import Path

import pandas as pd
import pytest

from selfalign import io
from selfalign.errors import InputError, PromptError
from selfalign.prompts import PromptLibrary


def lib(tmp_path: Path, files: dict[str, str]) -> PromptLibrary:
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return PromptLibrary([tmp_path])


def test_variables_include_partials_and_hash_changes(tmp_path):
    lb = lib(
        tmp_path,
        {
            "f/a.j2": "Q: {{ question }} {% include 'f/part.j2' %}",
            "f/part.j2": "{{ context }}{% for x in items %}{{ x }}{% endfor %}",
        },
    )
    p = lb.get("f/a")
    assert p.variables == {"question", "context", "items"}
    assert p.render(question="q", context="c", items=[1, 2]) == "Q: q c12"
    (tmp_path / "f/part.j2").write_text("changed {{ context }}")
    assert PromptLibrary([tmp_path]).get("f/a").sha256 != p.sha256


def test_strict_undefined_names_template(tmp_path):
    p = lib(tmp_path, {"a.j2": "{{ missing_var }}"}).get("a")
    with pytest.raises(PromptError, match="'missing_var' is undefined"):
        p.render()


def test_syntax_error_names_file_and_line(tmp_path):
    lb = lib(tmp_path, {"bad.j2": "line one\n{% if x %}\nno end"})
    with pytest.raises(PromptError, match=r"bad\.j2 line 3"):
        lb.get("bad")


def test_unknown_prompt_suggests(tmp_path):
    lb = lib(tmp_path, {"fam/judge.j2": "x"})
    with pytest.raises(PromptError, match="Did you mean 'fam/judge'"):
        lb.get("fam/judg", "pipeline.stages.j.prompt")


@pytest.mark.parametrize(
    "name,content",
    [
        ("d.jsonl", '{"a": 1}\n{"a": 2}\n'),
        ("d.json", '[{"a": 1}, {"a": 2}]'),
        ("d.csv", "a\n1\n2\n"),
        ("d.txt", "first line\n\nsecond line\n"),
    ],
)
def test_read_formats(tmp_path, name, content):
    (tmp_path / name).write_text(content)
    df = io.read_table(tmp_path / name)
    assert len(df) == 2


def test_parquet_roundtrip_with_mixed_columns(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "m": [[{"role": "user", "content": "x"}], None]})
    io.write_parquet(df, tmp_path / "x.parquet")
    assert len(io.read_table(tmp_path / "x.parquet")) == 2


def test_input_errors(tmp_path):
    with pytest.raises(InputError, match="input file not found"):
        io.read_table(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="has no rows"):
        io.read_table(tmp_path / "empty.jsonl")
    (tmp_path / "latin.csv").write_bytes("a\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not valid utf-8 text"):
        io.read_table(tmp_path / "latin.csv")
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        io.read_table(tmp_path / "broken.jsonl")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(InputError, match="Set the load stage's `format`"):
        io.read_table(tmp_path / "x.xlsx")
