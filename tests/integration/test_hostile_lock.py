"""Hostile-user cases of issue 20, items 1 and 6 (Ctrl-C), end to end: `selfalign run` in a
subprocess against the mock on 127.0.0.1. Two runs into one run dir (the second exits 2 naming
the first's pid and writes nothing; the first's dataset has each row once), kill -9 then a
re-run into the same dir (no stale lock), SIGINT and SIGTERM mid-run (one line, no traceback,
exit 130 / 143, manifest "interrupted", and the re-run ends with the rows of an uninterrupted
run). Counts and file contents, no timings."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, TINY_CLI, cli, tiny_questions

sys.path.insert(0, str(ROOT / "tests"))
from mockserver import MockServer  # noqa: E402

N = 24  # input questions; answer.n=1, so the dataset has one row per question
pytestmark = pytest.mark.mock_faults(latency_s=0.3)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tiny_questions(tmp_path / "questions.jsonl", N, "Question number {i} about things?")


def command(mock_server: MockServer, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "selfalign",
        "run",
        *TINY_CLI,
        "pipeline.order=[load,clean,answer,export]",
        "pipeline.stages.answer.n=1",
        "model=openai_compatible",
        "model.name=mock",
        f"model.api_base={mock_server.url}",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]


def start(mock_server: MockServer, run_dir: Path, data: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TINY_DATA": str(data)}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command(mock_server, run_dir, *extra), cwd=ROOT, env=env, **pipes)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def wait_for_calls(mock_server: MockServer, proc: subprocess.Popen, n: int) -> None:
    """Until the run has sent `n` model calls (it holds its run dir by then)."""
    for _ in range(1200):
        if mock_server.requests >= n:
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    raise AssertionError(f"the run sent {mock_server.requests} calls, not {n}")


def questions(run_dir: Path) -> list[str]:
    rows = (run_dir / "dataset.jsonl").read_text().splitlines()
    return sorted(json.loads(r)["question"] for r in rows)


def rows(run_dir: Path) -> list[str]:
    return sorted((run_dir / "dataset.jsonl").read_text().splitlines())


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


EXPECTED = sorted(f"Question number {i} about things?" for i in range(N))


def test_second_run_into_a_live_dir_exits_2_and_writes_nothing(
    tmp_path: Path, mock_server: MockServer, data: Path
) -> None:
    run_dir = tmp_path / "same"
    first = start(mock_server, run_dir, data)
    try:
        wait_for_calls(mock_server, first, 1)
        # The first run stands still while the second one tries: nothing in the dir may change.
        first.send_signal(signal.SIGSTOP)
        before = snapshot(run_dir)
        second = start(mock_server, run_dir, data, "seed=7")  # an override the first run does not have
        rc, err = finish(second)
        after = snapshot(run_dir)
        # reading a live dir needs no lock: its report, written elsewhere
        report = cli("report", str(run_dir), "-o", str(tmp_path / "live.html"))
        first.send_signal(signal.SIGCONT)
        assert report.returncode == 0 and (tmp_path / "live.html").is_file(), report.stderr[-2000:]
        assert rc == 2, err[-3000:]
        msg = " ".join(err.split())
        assert f"run dir {run_dir} is in use by another selfalign run (pid {first.pid} " in msg
        assert "hydra.run.dir=DIR" in msg and "Traceback" not in err
        assert after == before  # not even .hydra/ (Hydra's own config files) was touched
        rc, err = finish(first)
    finally:
        first.kill()
    assert rc == 0, err[-3000:]
    assert questions(run_dir) == EXPECTED  # each input row once
    assert "seed=7" not in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert manifest(run_dir)["status"] == "ok" and manifest(run_dir)["attempt"] == 1
    assert (run_dir / ".selfalign.lock").read_text() == ""  # released: no pid left behind


def test_kill_9_leaves_no_stale_lock(tmp_path: Path, mock_server: MockServer, data: Path) -> None:
    run_dir = tmp_path / "killed"
    proc = start(mock_server, run_dir, data)
    try:
        wait_for_calls(mock_server, proc, 4)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        proc.kill()
    assert json.loads((run_dir / ".selfalign.lock").read_text())["pid"] == proc.pid  # a dead pid
    rc, err = finish(start(mock_server, run_dir, data))
    assert rc == 0, err[-3000:]
    assert questions(run_dir) == EXPECTED
    assert manifest(run_dir)["status"] == "ok"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_is_one_line_and_the_rerun_resumes(
    tmp_path: Path, mock_server: MockServer, data: Path, sig: signal.Signals, code: int
) -> None:
    run_dir = tmp_path / "interrupted"
    proc = start(mock_server, run_dir, data)
    try:
        wait_for_calls(mock_server, proc, 8)  # calls in flight (concurrency 16, 0.3 s each)
        proc.send_signal(sig)
        rc, err = finish(proc)
    finally:
        proc.kill()
    assert rc == code, err[-3000:]
    # the run's own progress lines (logged before the signal) aside, the interrupt is one line
    said = [line for line in err.strip().splitlines() if not re.match(r"\[\d\d:\d\d:\d\d\] INFO ", line)]
    assert "Traceback" not in err and len(said) == 1, err[-3000:]
    assert f"interrupted; re-run the same command to resume (run dir {run_dir})" in err
    assert manifest(run_dir)["status"] == "interrupted"
    assert not (run_dir / "dataset.jsonl").exists()

    sent = mock_server.requests
    rc, err = finish(start(mock_server, run_dir, data))
    assert rc == 0, err[-3000:]
    assert questions(run_dir) == EXPECTED  # what an uninterrupted run ends with
    assert manifest(run_dir)["status"] == "ok" and manifest(run_dir)["attempt"] == 2
    # the calls answered before the signal came from the cache, not from the server again
    assert mock_server.requests - sent == N - manifest(run_dir)["llm_attempt"]["cache_hits"]
    rc, err = finish(start(mock_server, tmp_path / "uninterrupted", data))
    assert rc == 0, err[-3000:]
    assert rows(run_dir) == rows(tmp_path / "uninterrupted")


HOLD = (
    "import sys, time; from pathlib import Path; from selfalign.rundir_lock import acquire; "
    "acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)"
)


def test_a_sweep_into_a_live_sweep_dir_exits_2_before_any_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(sweep)], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        args = ["run", "-m", *TINY_CLI, "model=test", "temperature=0.2,0.8"]
        res = cli(*args, f"hydra.sweep.dir={sweep}")
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 2, res.stderr[-3000:]
    msg = " ".join(res.stderr.split())
    assert f"run dir {sweep} is in use by another selfalign run (pid {holder.pid} " in msg
    assert [p.name for p in sweep.iterdir()] == [".selfalign.lock"]  # no job started


@pytest.mark.slow
def test_sigterm_under_ray_is_the_same_clean_stop(
    tmp_path: Path, mock_server: MockServer, data: Path
) -> None:
    pytest.importorskip("ray")
    run_dir = tmp_path / "ray"
    # ray.init sets a SIGTERM handler that aborts the driver with a C++ stack dump (exit -6)
    ray = ["executor=ray", "ray.num_cpus=2", "ray.num_workers=1", "ray.block_rows=2"]
    proc = start(mock_server, run_dir, data, *ray)
    try:
        wait_for_calls(mock_server, proc, 4)
        proc.send_signal(signal.SIGTERM)
        rc, err = finish(proc)
    finally:
        proc.kill()
    assert rc == 143, err[-3000:]
    assert "Traceback" not in err and "SIGTERM received" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]  # after Ray's own start-up lines
    assert last == f"interrupted; re-run the same command to resume (run dir {run_dir})"
    assert manifest(run_dir)["status"] == "interrupted"
