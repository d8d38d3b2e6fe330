"""Hostile-user errors (issue 20, items 6 and 7): every mistake below ends in one clear message and
the documented exit code, never a traceback; output that is piped is never cut."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import FIXTURES, cli

TINY = ["pipeline=tiny", f"prompts.search_path=[{FIXTURES / 'prompts'}]"]
DIRS = [str(FIXTURES / "conf")]


def flat(text: str) -> str:
    """The message as one line (the console may wrap at its width)."""
    return " ".join(text.split())


@pytest.fixture
def run_dir(run_pipeline) -> Path:
    """A finished run of the tiny pipeline on the test model."""
    return run_pipeline(*TINY, config_dirs=DIRS)[2]


# --- selfalign report: -o and what a sweep dir is ----------------------------------------------


@pytest.mark.parametrize("where", ["missing_folder", "a_folder"])
def test_report_output_that_cannot_be_written(run_dir: Path, tmp_path: Path, where: str) -> None:
    out = tmp_path / "nope" / "x.html" if where == "missing_folder" else tmp_path
    res = cli("report", str(run_dir), "-o", str(out))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and str(out) in flat(res.stderr)
    assert not list(tmp_path.rglob("*.tmp"))  # no stray x.html.tmp / .html.tmp


def test_report_on_a_folder_of_unrelated_runs_is_not_a_sweep(run_dir: Path, tmp_path: Path) -> None:
    shared = tmp_path  # holds run/ (a run dir) and whatever else: a shared temp folder
    res = cli("report", str(shared))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "neither a run dir (no manifest.json) nor a sweep dir" in flat(res.stderr)
    assert not (shared / "report.html").exists()
    (shared / "multirun.yaml").write_text("hydra: {}\n")  # what Hydra writes into a sweep dir
    assert cli("report", str(shared)).returncode == 0 and (shared / "report.html").is_file()


# --- selfalign push with no network ------------------------------------------------------------


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_push_with_the_hub_unreachable_is_one_line_and_exit_3(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("huggingface_hub")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env = {"HF_ENDPOINT": endpoint, "HF_TOKEN": "hf_test_token_x", "HF_HOME": str(tmp_path / "hf")}
    res = cli("push", str(run_dir), "me/data", env=env)
    assert res.returncode == 3, res.stderr  # as `selfalign push --help` says
    assert "Traceback" not in res.stderr
    msg = flat(res.stderr)
    assert "could not be reached" in msg and endpoint in msg and "hf_test_token_x" not in msg


# --- user files that are not UTF-8 -------------------------------------------------------------


def test_a_pipeline_yaml_that_is_not_utf8_names_the_file_and_byte(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    (conf / "pipeline").mkdir(parents=True)
    text = (FIXTURES / "conf" / "pipeline" / "tiny.yaml").read_bytes()
    (conf / "pipeline" / "mine.yaml").write_bytes(text + "# caf\xe9\n".encode("latin-1"))
    for command in ("validate", "run"):
        res = cli(command, "--config-dir", str(conf), "pipeline=mine", "model=test", *TINY[1:], cwd=tmp_path)
        msg = flat(res.stderr)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert f"{conf / 'pipeline' / 'mine.yaml'}:" in msg and f"byte {len(text) + 5} of the file" in msg
        assert "Re-save the file as UTF-8" in msg
    assert not (tmp_path / "outputs").exists()  # nothing was run


def test_a_prompt_or_a_plugin_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts" / "tiny"
    prompts.mkdir(parents=True)
    for f in (FIXTURES / "prompts" / "tiny").iterdir():
        (prompts / f.name).write_bytes(f.read_bytes())
    (prompts / "answer.j2").write_bytes(b"{# caf\xe9 #}\n" + (prompts / "answer.j2").read_bytes())
    (tmp_path / "latin_plugin.py").write_bytes(b'X = "caf\xe9"\n')
    res = cli(
        "validate",
        "--config-dir",
        str(FIXTURES / "conf"),
        "pipeline=tiny",
        "model=test",
        f"prompts.search_path=[{tmp_path / 'prompts'}]",
        "plugins=[latin_plugin]",
        env={"PYTHONPATH": f"{FIXTURES.parent.parent}:{tmp_path}"},
    )
    msg = flat(res.stderr)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"{prompts / 'answer.j2'}:1: not valid utf-8 text (line 1, byte 6 of the file: 0xE9)" in msg
    assert f"plugins[0]: cannot import 'latin_plugin': {tmp_path / 'latin_plugin.py'}:1:" in msg


# --- piped output is not cut (stdout is a pipe in a subprocess) --------------------------------

LONG_STAGE = "generate_answers_with_a_stage_name_long_enough_to_pass_eighty_columns_on_its_own"
LONG_TEXT = "a description that goes on and on, well past the eighty columns a pipe used to get " * 2


def long_names(tmp_path: Path) -> list[str]:
    """tiny, with its answer stage renamed to LONG_STAGE and a long description, as --config-dir."""
    spec = yaml.safe_load((FIXTURES / "conf" / "pipeline" / "tiny.yaml").read_text())
    stages = spec["pipeline"]["stages"]
    stages[LONG_STAGE] = stages.pop("answer")
    spec["pipeline"]["order"] = [LONG_STAGE if s == "answer" else s for s in spec["pipeline"]["order"]]
    spec["pipeline"].update(name="longnames", description=LONG_TEXT.strip())
    folder = tmp_path / "conf" / "pipeline"
    folder.mkdir(parents=True)
    (folder / "longnames.yaml").write_text("# @package _global_\n" + yaml.safe_dump(spec))
    data = f"pipeline.stages.load.path={FIXTURES / 'data' / 'tiny.jsonl'}"
    return ["--config-dir", str(tmp_path / "conf"), "pipeline=longnames", "model=test", *TINY[1:], data]


def uncut(text: str) -> None:
    assert "…" not in text and LONG_STAGE in text, text


def test_validate_piped_prints_yaml_that_parses_and_whole_names(tmp_path: Path) -> None:
    res = cli("validate", *long_names(tmp_path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    title = next(i for i, line in enumerate(lines) if line.strip().startswith("pipeline longnames:"))
    cfg = yaml.safe_load("\n".join(lines[:title]))  # the printed config is valid YAML
    assert cfg["pipeline"]["description"] == LONG_TEXT.strip()
    assert LONG_STAGE in cfg["pipeline"]["stages"]
    uncut("\n".join(lines[title:]))  # the stage table
    assert "\x1b[" not in res.stdout  # no colour codes in a pipe


def test_estimate_piped_is_whole_and_says_where_its_json_is(tmp_path: Path) -> None:
    out = tmp_path / "est.json"
    res = cli("estimate", *long_names(tmp_path), "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    uncut(res.stdout)
    assert "$0.0000" in res.stdout and "--pilot K to send K real calls per stage" in res.stdout
    assert res.stdout.splitlines()[-1] == f"this table as JSON: {out}"
    assert [s["stage"] for s in json.loads(out.read_text())["stages"]][0] == LONG_STAGE


def test_list_and_the_run_summary_piped_are_whole(tmp_path: Path) -> None:
    args = long_names(tmp_path)
    listed = cli("list", "pipelines", *args[:2])
    assert listed.returncode == 0 and LONG_TEXT.strip() in listed.stdout, listed.stdout
    shown = cli("preview", *args, "-k", "1")
    assert shown.returncode == 0 and f"{LONG_STAGE} (generate_text): first 1 request(s)" in shown.stdout
    res = cli("run", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 0, res.stderr
    uncut(res.stderr)  # the run summary's stage table
    named = [line for line in res.stderr.splitlines() if "generate_answers" in line]
    assert named and all(LONG_STAGE in line for line in named)  # log lines are not folded either
    assert f"run dir: {tmp_path / 'run'}" in res.stderr


# --- executor=ray with a cluster address nothing answers at ------------------------------------


def test_ray_address_nothing_answers_at_is_exit_3_at_once(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{closed_port()}"
    args = ["--config-dir", *DIRS, *TINY, "model=test", "executor=ray", f"ray.address={address}"]
    # the timeout is a hang guard only: Ray itself retried such an address for minutes
    res = subprocess.run(
        [sys.executable, "-m", "selfalign", "run", *args, f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 3, res.stderr
    assert f"ray.address={address}: cannot reach the Ray cluster" in res.stderr
    assert "Traceback" not in res.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and address in manifest["error"]


def test_ray_address_that_does_not_resolve_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from selfalign.errors import ConfigError, RunFailed
    from selfalign.executors.ray_executor import check_address

    def no_such_host(*_: object, **__: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_such_host)
    with pytest.raises(RunFailed, match=r"ray.address=garbage:1234: cannot reach .*no such host"):
        check_address("garbage:1234")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        check_address("garbage")
    check_address("auto")  # a local Ray or `ray start`'s: nothing to check


def test_a_host_port_in_a_message_is_printed_as_it_is(tmp_path: Path) -> None:
    res = cli("report", str(tmp_path / "garbage:1234:"))  # rich made ":1234:" an emoji
    assert res.returncode == 2 and "garbage:1234:" in res.stderr, res.stderr


# --- load on a previous run's dataset (chaining pipelines) -------------------------------------


def test_load_reads_a_previous_runs_dataset_with_provenance(run_dir: Path, tmp_path: Path) -> None:
    first = [json.loads(line) for line in (run_dir / "dataset.jsonl").read_text().splitlines()]
    chained = [
        "--config-dir",
        *DIRS,
        *TINY,
        "model=test",
        f"pipeline.stages.load.path={run_dir / 'dataset.jsonl'}",
    ]
    checked = cli("validate", *chained)
    assert checked.returncode == 0, checked.stderr
    assert "source_row_id" in checked.stdout and "source_run" in checked.stdout
    res = cli("run", *chained, f"hydra.run.dir={tmp_path / 'second'}")
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    rows = [json.loads(line) for line in (tmp_path / "second" / "dataset.jsonl").read_text().splitlines()]
    assert rows and {r["source_run"] for r in rows} == {run_dir.name}
    by_question = {r["question"]: r["row_id"] for r in first}
    assert all(r["source_row_id"] == by_question[r["question"]] for r in rows)
    assert len({r["row_id"] for r in rows}) == len(rows)  # fresh ids, one per row


def test_a_chain_of_runs_keeps_the_latest_link(ctx, tmp_path: Path) -> None:
    from helpers import make_stage, run_stage

    path = tmp_path / "loose.jsonl"  # not in a run dir: no source_run
    path.write_text(
        '{"row_id": "7", "source_row_id": "3", "source_run": "old", "question": "What is rain?"}\n'
    )
    out = run_stage(make_stage("load", ctx, path=str(path)), pd.DataFrame())
    assert out.to_dict(orient="records") == [
        {"row_id": "0", "source_row_id": "7", "question": "What is rain?"}
    ]


# --- an input that lacks a column the pipeline needs -------------------------------------------


def test_realign_on_a_csv_without_instruction_is_one_message_naming_the_file(tmp_path: Path) -> None:
    data = tmp_path / "mine.csv"
    data.write_text("question,response\nWhat is rain?,Water falling from clouds.\n")
    for command in ("validate", "run"):
        res = cli(command, "pipeline=realign", "model=test", f"input_path={data}", cwd=tmp_path)
        msg = flat(res.stderr)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert "1 problem(s) found before any model call" in msg
        assert f"pipeline.stages.load: {data}: the input lacks column 'instruction'" in msg
        assert "Columns found: question, response." in msg
        assert "pipeline.stages.load.rename={YOUR_COLUMN: instruction}" in msg
    assert not (tmp_path / "outputs").exists()


def test_a_seed_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    from selfalign.errors import ConfigError
    from selfalign.stages.methods.almost.pool import read_seed_file

    seeds = tmp_path / "seeds.txt"
    seeds.write_bytes(b"Write a question.\nCaf\xe9 au lait?\n")
    with pytest.raises(ConfigError, match=r"seeds.txt:2: not valid utf-8 text \(line 2, byte 21"):
        read_seed_file(str(seeds), "pipeline.stages.expand.seed_path")


def test_the_sweep_summary_piped_keeps_each_override_on_one_line(capsys: pytest.CaptureFixture) -> None:
    from selfalign import terminal
    from selfalign.sweep_summary import render

    long = f"++pipeline.stages.{LONG_STAGE}.temperature="
    jobs = [
        {"job": str(i), "overrides": f"pipeline=tiny {long}{t}", "status": "ok"}
        for i, t in enumerate([0.2, 0.8])
    ]
    render(pd.DataFrame(jobs), terminal.console())  # stdout is captured here: not a terminal
    out = capsys.readouterr().out
    assert "…" not in out and f"{long}0.2" in out and f"{long}0.8" in out
