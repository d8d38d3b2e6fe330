"""Parallel sweeps on Hydra's joblib launcher (docs/execution.md): the same datasets as the basic
launcher, a complete sweep summary, the exit code of a failed job, and one embedded model server
shared by the job processes (a stand-in server here; the real one in the slow test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from helpers import ROOT, TINY_CLI, cli

JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
SWEEP_2X2 = ["temperature=0.2,0.8", "pipeline.stages.answer.n=2,3"]


def _sweep(
    tmp_path, name: str, *args: str, cache: str = "cache"
) -> tuple[subprocess.CompletedProcess, object]:
    sweep = tmp_path / name
    env = {"SELFALIGN_CACHE": str(tmp_path / f"{cache}.sqlite")}
    res = cli("run", "-m", *TINY_CLI, *args, f"hydra.sweep.dir={sweep}", env=env, cwd=ROOT)
    return res, sweep


def test_joblib_sweep_same_datasets_as_basic(tmp_path):
    basic, b_dir = _sweep(tmp_path, "basic", "model=test", *SWEEP_2X2, cache="a")
    par, p_dir = _sweep(tmp_path, "joblib", "model=test", *SWEEP_2X2, *JOBLIB, cache="b")
    assert basic.returncode == 0, basic.stderr[-3000:]
    assert par.returncode == 0, par.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in par.stdout + par.stderr  # the jobs ran on the launcher
    assert "[job 3] " in par.stdout + par.stderr  # its log lines name their job
    assert "could not store" not in par.stdout + par.stderr  # 2 processes wrote one cache file
    summary = pd.read_csv(p_dir / "sweep_summary.csv")
    assert list(summary.job) == [0, 1, 2, 3] and set(summary.status) == {"ok"}
    assert (summary.rows_out == 5).all()
    same = pd.read_csv(b_dir / "sweep_summary.csv")
    assert list(summary.overrides) == list(same.overrides) and list(summary.tokens) == list(same.tokens)
    for job in "0123":
        assert (p_dir / job / "dataset.jsonl").read_bytes() == (b_dir / job / "dataset.jsonl").read_bytes()


def test_failed_job_exits_3_and_is_in_the_summary(tmp_path):
    # the second job's filter drops every row: a 0-row dataset fails that job (exit 3)
    res, sweep = _sweep(tmp_path, "s", "model=test", "pipeline.stages.clean.rules.0.value=2,1000", *JOBLIB)
    assert res.returncode == 3, res.stderr[-3000:]
    assert "1 sweep job(s) failed: 1" in res.stderr
    summary = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(summary.status) == ["ok", "failed"] and list(summary.rows_out) == [5, 0]


def _standin_cmd(tmp_path, *args: str) -> list[str]:
    """A parallel sweep on model=local whose shared server is tests/standin_server.py's mock."""
    fake = tmp_path / "no-model.gguf"
    fake.write_bytes(b"not a model")  # a job that started its own server would fail on this
    cmd = [sys.executable, str(ROOT / "tests" / "standin_server.py"), str(tmp_path / "servers.log")]
    # no cache: which job's identical requests hit it would depend on the jobs' timing
    cmd += ["run", "-m", *TINY_CLI, "model=local", f"model.path={fake}", "cache.enabled=false"]
    return [
        *cmd,
        "pipeline.order=[load,clean,answer,export]",
        *args,
        *JOBLIB,
        f"hydra.sweep.dir={tmp_path / 's'}",
    ]


def _standin_sweep(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    res = subprocess.run(_standin_cmd(tmp_path, *args), cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = tmp_path / "servers.log"
    return res, log.read_text().splitlines() if log.exists() else []


def test_jobs_share_one_model_server(tmp_path):
    res, events = _standin_sweep(tmp_path, *SWEEP_2X2)
    assert res.returncode == 0, res.stderr[-3000:]
    # one server for 4 jobs (each 5 rows × n answers: 2+3+2+3 samples, all sent to it), then stopped
    assert events == ["start n_ctx=8192 log=llama_server.log", "stop requests=50 ok=50"]
    assert not list((tmp_path / "s").glob("*/llama_server.log"))  # no job started its own


def test_jobs_with_different_server_settings_get_one_server_each(tmp_path):
    res, events = _standin_sweep(tmp_path, "model.n_ctx=2048,4096", "temperature=0.2,0.8")
    assert res.returncode == 0, res.stderr[-3000:]
    starts = sorted(e for e in events if e.startswith("start"))
    assert starts == ["start n_ctx=2048 log=llama_server.log", "start n_ctx=4096 log=llama_server_1.log"]
    assert sorted(e for e in events if e.startswith("stop")) == ["stop requests=20 ok=20"] * 2


def test_interrupted_sweep_stops_the_shared_server(tmp_path):
    log = tmp_path / "servers.log"
    env = {**os.environ, "STANDIN_LATENCY_S": "60"}  # the jobs would still be waiting
    proc = subprocess.Popen(
        _standin_cmd(tmp_path, "temperature=0.2,0.8"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            if log.exists() and proc.poll() is None:
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(120) == 130
    finally:
        proc.kill()
    start, stop = log.read_text().splitlines()
    assert start == "start n_ctx=8192 log=llama_server.log" and stop.startswith("stop ")


def test_missing_launcher_plugin_is_a_config_error(tmp_path):
    res, _ = _sweep(tmp_path, "s", "model=test", "temperature=0.2,0.8", "hydra/launcher=nonesuch")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "hydra/launcher=nonesuch" in res.stderr and "basic, joblib" in res.stderr


@pytest.mark.slow
def test_real_embedded_model_one_server_for_two_jobs(tmp_path):
    """The real llama.cpp server, started once by the sweep's parent, answers both job processes."""
    data = tmp_path / "one.jsonl"
    data.write_text('{"question": "What is the capital of France?"}\n')
    sweep = tmp_path / "s"
    args = ["model=local", "model.n_ctx=512", "model.n_parallel=1", "pipeline.order=[load,answer,export]"]
    args += ["pipeline.stages.answer.n=1", "pipeline.stages.answer.max_tokens=4", "temperature=0.2,0.8"]
    res = cli(
        "run", "-m", *TINY_CLI, *args, *JOBLIB, f"hydra.sweep.dir={sweep}", env={"TINY_DATA": str(data)}
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (sweep / "llama_server.log").is_file() and not list(sweep.glob("*/llama_server.log"))
    summary = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(summary.status) == ["ok", "ok"] and list(summary.rows_out) == [1, 1]
