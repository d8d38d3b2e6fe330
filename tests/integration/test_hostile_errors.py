"""Hostile-user errors (issue 20, items 6 and 7): every mistake below ends in one clear message and
the documented exit code, never a traceback; output that is piped is never cut."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
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
