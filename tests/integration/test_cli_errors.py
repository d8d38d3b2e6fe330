"""Bad input and bad config: one clear paragraph, exit code 2, before any model call."""

from pathlib import Path

import pytest
from helpers import FIXTURES, TINY_CLI, cli

from selfalign.cli import main

TINY = [*TINY_CLI, "model=test"]


def err(capsys, *args: str, command: str = "validate") -> str:
    code = main([command, *TINY, *args])
    out = capsys.readouterr()
    assert code == 2, out.out + out.err
    assert "Traceback" not in out.err
    return " ".join(out.err.split())  # rich wraps long lines


def data(tmp_path: Path, name: str, content: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(content)
    return f"pipeline.stages.load.path={p}"


def test_missing_input_file(capsys, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"  # where Hydra would make outputs/tiny/<time>/
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    msg = err(capsys, f"pipeline.stages.load.path={tmp_path}/nope.jsonl", command="run")
    assert "input file not found" in msg and "nope.jsonl" in msg
    assert list(cwd.iterdir()) == []  # it failed before Hydra made a run dir


def test_empty_input(capsys, tmp_path):
    assert "the file has no rows" in err(capsys, data(tmp_path, "e.jsonl", b""))


def test_wrong_encoding(capsys, tmp_path):
    msg = err(capsys, data(tmp_path, "l.jsonl", '{"question": "caf\xe9 ok"}\n'.encode("latin-1")))
    assert "not valid utf-8 text" in msg and "Re-save the file as UTF-8" in msg


def test_missing_column_names_found_columns_and_key(capsys, tmp_path):
    msg = err(capsys, data(tmp_path, "c.jsonl", b'{"prompt": "What is rain?"}\n'))
    assert "required column 'question' is missing. Columns found: prompt" in msg
    assert "pipeline.stages.load.rename={YOUR_COLUMN: question}" in msg


def test_empty_required_values_fail_by_config(capsys, tmp_path):
    path = data(tmp_path, "n.jsonl", b'{"question": "What is rain?"}\n{"question": ""}\n')
    res = cli("run", *TINY, path, "pipeline.stages.load.on_missing=fail", f"hydra.run.dir={tmp_path / 'run'}")
    msg = " ".join(res.stderr.split())
    assert res.returncode == 2 and "column 'question' is empty in 1 row(s)" in msg
    assert "Traceback" not in res.stderr
    manifest = (tmp_path / "run" / "manifest.json").read_text()
    assert '"status": "failed"' in manifest
    assert "on_missing=drop" in msg


def test_yaml_typo_in_stage_param(capsys):
    msg = err(capsys, "pipeline.stages.answer.temprature=0.3")
    assert "pipeline.stages.answer.temprature: unknown key. Did you mean 'temperature'?" in msg


def test_wrong_type(capsys):
    msg = err(capsys, "pipeline.stages.answer.n=many")
    assert "pipeline.stages.answer.n: expected int, got 'many'" in msg


def test_unknown_stage_kind(capsys):
    msg = err(capsys, "pipeline.stages.clean.kind=filter_row")
    assert "unknown stage kind 'filter_row'. Did you mean 'filter_rows'?" in msg
    assert "Available:" in msg and "generate_text" in msg


def test_unknown_pipeline_lists_options(capsys):
    code = main(["validate", *TINY[:2], "pipeline=tiny2", "model=test"])
    msg = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "pipeline/tiny2" in msg and "Available options" in msg and "tiny" in msg


def test_unknown_model_lists_options(capsys):
    code = main(["validate", *TINY[:3], "model=gpt5"])
    msg = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "model/gpt5" in msg and "test" in msg


def test_unknown_prompt(capsys):
    msg = err(capsys, "pipeline.stages.answer.prompt=tiny/answr")
    assert "pipeline.stages.answer.prompt: unknown prompt 'tiny/answr'. Did you mean 'tiny/answer'?" in msg


def test_prompt_variable_nobody_produces(capsys):
    msg = err(capsys, "pipeline.order=[load,clean,judge]")
    assert "the input lacks column 'answer' (needed by judge), and no earlier stage produces it" in msg


def test_template_syntax_error_names_file_and_line(capsys, tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "answer.j2").write_text("Answer:\n{{ question }\n")
    msg = err(capsys, f"prompts.search_path=[{tmp_path},{FIXTURES / 'prompts'}]")
    assert "template syntax error in" in msg and "tiny/answer.j2 line 2" in msg


def test_all_problems_listed_at_once(capsys):
    msg = err(
        capsys,
        "pipeline.stages.export.kind=nope",
        "pipeline.stages.answer.prompt=tiny/x",
        "pipeline.stages.clean.rules=[{column: missing_col, op: non_empty}]",
        "pipeline.stages.judge.parser=scroe",
    )
    assert "4 problem(s) found before any model call" in msg
    assert "unknown stage kind 'nope'" in msg and "unknown prompt 'tiny/x'" in msg
    assert "unknown parser 'scroe'. Did you mean 'score'?" in msg
    assert "the input lacks column 'missing_col' (needed by clean)" in msg


def test_unknown_named_model(capsys):
    msg = err(capsys, "pipeline.stages.answer.model=judge")
    assert "pipeline.stages.answer.model: unknown model 'judge'" in msg and "models:" in msg


@pytest.mark.parametrize("what", ["pipelines", "stages", "prompts", "models"])
def test_list_commands(capsys, what):
    assert main(["list", what]) == 0
    out = capsys.readouterr().out
    expected = {"pipelines": "pipeline", "stages": "generate_text", "prompts": "prompt", "models": "test"}[
        what
    ]
    assert expected in out


def test_list_unknown(capsys):
    assert main(["list", "stage"]) == 2
    assert "Did you mean 'stages'?" in capsys.readouterr().err
