"""Ordinary faults, end to end as a user meets them (issue 20, item 8): `selfalign run` in a
subprocess against the mock on 127.0.0.1 failing 5% of requests with 429 and 5% with 500. With
retries to spare no row may be lost and the run exits 0. Counts only, no timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import ROOT, cli

BENCH = ROOT / "benchmarks" / "llm_client"  # its 2-stage pipeline: an instruction, then a response
N = 120


@pytest.mark.mock_faults(latency_s=0.005, rate_429=0.05, rate_500=0.05, retry_after="0", seed=20)
def test_ten_percent_faults_lose_no_row(tmp_path: Path, mock_server) -> None:
    faulty_mock = mock_server
    data = tmp_path / "topics.jsonl"
    data.write_text("".join(json.dumps({"topic": f"subject number {i}"}) + "\n" for i in range(N)))
    run_dir = tmp_path / "run"
    res = cli(
        "run",
        "--config-dir",
        str(BENCH / "conf"),
        "pipeline=bench_2stage",
        f"prompts.search_path=[{BENCH / 'prompts'}]",
        "model=openai_compatible",
        "model.name=mock",
        f"model.api_base={faulty_mock.url}",
        "model.concurrency=16",
        "model.max_retries=10",  # generous: 11 failures in a row at 10% would be 1e-11 per call
        "model.backoff_base_s=0.01",
        "model.backoff_max_s=0.05",
        f"hydra.run.dir={run_dir}",
        env={"BENCH_DATA": str(data)},
    )
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["rows"] == N
    rows = (run_dir / "dataset.jsonl").read_text().splitlines()
    assert len(rows) == N and all(json.loads(r)["response"] for r in rows)
    rejected = run_dir / "rejected.jsonl"
    assert not rejected.exists() or not rejected.read_text().strip()
    out = faulty_mock.outcomes
    assert out["429"] > 0 and out["500"] > 0  # the faults did happen …
    assert out["ok"] == 2 * N  # … and every call was answered once: none lost, none sent twice
    assert faulty_mock.requests == 2 * N + out["429"] + out["500"]
