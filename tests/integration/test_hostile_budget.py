"""The budget as a hostile user meets it (issue 20, item 2): `selfalign run` in a subprocess
against the mock on 127.0.0.1, with a price, so what the mock answered is what was paid.

Counts, not times: every assertion is on requests the mock saw, $ worked out from the usage it
reported, exit codes and the files of the run dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, TINY_CLI, cli, tiny_questions
from mockserver import MockServer, _completion

# $1 per 1,000 tokens; the mock counts words as tokens, so a call costs a few cents
PER_MTOK = 1000.0
PRICE = f"model.price={{input_per_mtok: {PER_MTOK:g}, output_per_mtok: {PER_MTOK:g}}}"
BASE = [
    *TINY_CLI,
    "pipeline.order=[load,clean,answer,export]",  # n=2 answers per row
    "model=openai_compatible",
    "model.name=mock",
]
pytestmark = pytest.mark.mock_faults(latency_s=0.05)


@pytest.fixture
def rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """60 questions (120 answer calls) in TINY_DATA, which the subprocesses inherit."""
    data = tiny_questions(tmp_path / "questions.jsonl", 60, "what is question number {i}?")
    monkeypatch.setenv("TINY_DATA", str(data))
    return 60


def paid(mock_server: MockServer) -> float:
    """$ for every request the mock received: its reported usage at PRICE (a request that was
    in flight when its client died was still answered, and a provider bills it)."""
    assert mock_server.requests == len(mock_server.bodies), "more requests than the mock keeps bodies of"
    tokens = sum(_completion(b)["usage"]["total_tokens"] for b in mock_server.bodies)
    return tokens * PER_MTOK / 1e6


def args(mock_server: MockServer, run_dir: Path, *extra: str) -> list[str]:
    return ["run", *BASE, f"model.api_base={mock_server.url}", PRICE, *extra, f"hydra.run.dir={run_dir}"]


def test_kill_9_then_the_same_cap_never_pays_past_it(
    tmp_path: Path, mock_server: MockServer, rows: int
) -> None:
    """Killed mid-run with calls in flight, re-run with the same cap: the two attempts together
    paid no more than the cap (the ledger counted every call the killed one sent)."""
    cap, run_dir = 2.0, tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "selfalign",
        *args(mock_server, run_dir, f"budget.max_usd={cap}", "model.concurrency=8"),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while mock_server.requests < 24 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    first = mock_server.requests
    assert 24 <= first < 2 * rows

    again = cli(*args(mock_server, run_dir, f"budget.max_usd={cap}", "model.concurrency=1"))
    assert again.returncode == 4, again.stderr[-2000:]  # the cap is reached before the 120 calls
    assert mock_server.requests > first  # what was left under the cap was used
    assert paid(mock_server) <= cap
    record = json.loads((run_dir / "budget.json").read_text())
    assert paid(mock_server) <= record["spent_usd"] <= cap  # never less than was paid


def test_an_unreadable_budget_record_exits_2_naming_it(tmp_path: Path, mock_server: MockServer) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "budget.json").write_text('{"spent_usd": 0.4, "spent_tok')  # cut short
    got = cli(*args(mock_server, run_dir, "budget.max_usd=1"))
    assert got.returncode == 2, got.stderr[-2000:]
    msg = " ".join(got.stderr.split())
    assert f"{run_dir / 'budget.json'}: unreadable budget record" in msg
    assert "to start this run dir's budget from 0 knowingly" in msg and "Traceback" not in got.stderr
    assert mock_server.requests == 0


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("budget.max_usd=nan", "budget.max_usd"),
        ("budget.max_usd=inf", "budget.max_usd"),
        ("model.price={input_per_mtok: nan, output_per_mtok: 0.6}", "model.price.input_per_mtok"),
        ("model.price={input_per_mtok: 0.15, output_per_mtok: -inf}", "model.price.output_per_mtok"),
        ("pipeline.stages.answer.temperature=inf", "pipeline.stages.answer.temperature"),
    ],
)
def test_nan_or_inf_exits_2_naming_the_key(
    tmp_path: Path, mock_server: MockServer, override: str, key: str
) -> None:
    got = cli("run", *BASE, f"model.api_base={mock_server.url}", "budget.max_usd=0.001", override,
              f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert got.returncode == 2, got.stderr[-2000:]
    assert f"{key}: " in got.stderr and "not a finite number" in got.stderr
    assert "Traceback" not in got.stderr
    assert mock_server.requests == 0


def test_the_stop_message_and_summary_show_what_was_paid(
    tmp_path: Path, mock_server: MockServer, rows: int
) -> None:
    """At concurrency 8 the refusal comes while calls are in flight: the message gives the spend
    after they settled (= budget.json), and a second capped attempt's cache hits do not hide
    what the first one paid from '$ for the dataset'."""
    run_dir = tmp_path / "run"
    got = cli(*args(mock_server, run_dir, "budget.max_usd=1", "model.concurrency=8"))
    assert got.returncode == 4, got.stderr[-2000:]
    record = json.loads((run_dir / "budget.json").read_text())
    msg = " ".join(got.stderr.split())
    assert f"budget reached at ${record['spent_usd']:.4f} of $1.0000" in msg
    assert record["spent_usd"] == pytest.approx(paid(mock_server), abs=1e-6)

    more = cli(*args(mock_server, run_dir, "budget.max_usd=1.5", "model.concurrency=8"))
    assert more.returncode == 4, more.stderr[-2000:]
    record = json.loads((run_dir / "budget.json").read_text())
    assert record["spent_usd"] == pytest.approx(paid(mock_server), abs=1e-6)
    assert f"${record['spent_usd']:.4f} for the dataset" in " ".join(more.stderr.split())


def test_the_same_cap_again_sends_nothing(tmp_path: Path, mock_server: MockServer, rows: int) -> None:
    """docs/cost.md: a re-run with the same budget stops at its first call (exit 4, 0 sent)."""
    run_dir = tmp_path / "run"
    first = cli(*args(mock_server, run_dir, "budget.max_usd=1", "model.concurrency=8"))
    assert first.returncode == 4, first.stderr[-2000:]
    sent = mock_server.requests
    again = cli(*args(mock_server, run_dir, "budget.max_usd=1", "model.concurrency=8"))
    assert again.returncode == 4 and mock_server.requests == sent, again.stderr[-2000:]


@pytest.mark.slow
def test_ray_budget_stop_counts_every_workers_calls(
    tmp_path: Path, mock_server: MockServer, rows: int
) -> None:
    """executor=ray stopped by the budget: the manifest and budget.json count every request the
    mock answered, and the re-run with a higher cap pays for none of them again."""
    pytest.importorskip("ray")
    run_dir = tmp_path / "run"
    ray = ["executor=ray", "ray.num_cpus=2", "ray.block_rows=4", "model.concurrency=8"]
    got = cli(*args(mock_server, run_dir, "budget.max_usd=1", *ray))
    assert got.returncode == 4, got.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    first = mock_server.requests
    assert 0 < first < 2 * rows
    assert manifest["llm_attempt"]["sent"] == first
    assert manifest["budget"]["spent_usd"] == pytest.approx(paid(mock_server), abs=1e-6)
    assert f"requests {first} (sent {first}," in " ".join(got.stderr.split())

    done = cli(*args(mock_server, run_dir, "budget.max_usd=100", *ray))
    assert done.returncode == 0, done.stderr[-3000:]
    assert mock_server.requests == 2 * rows  # every answer the stopped workers got was kept
