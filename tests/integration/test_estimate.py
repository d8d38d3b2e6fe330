"""`selfalign estimate`: its call counts equal the calls a `model=test` run really makes, stage
by stage; tokens and $ follow the model named; a pilot measures completion tokens at a mock."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import ROOT, TINY, TINY_DIRS, cli

from selfalign.commands.estimate import estimate

sys.path.insert(0, str(ROOT / "tests"))
from mockserver import MockServer  # noqa: E402


def calls(result: dict) -> dict[str, int]:
    return {s["stage"]: s["calls"] for s in result["stages"]}


def test_counts_equal_a_real_test_model_run(run_pipeline, test_model, tmp_path: Path) -> None:
    out = tmp_path / "est" / "estimate.json"
    result = estimate(["pipeline=wizardlm_aaa", "model=openai"], None, 0, out)
    assert not test_model.requests  # the dry run is private: nothing leaks into this script
    run_pipeline("pipeline=wizardlm_aaa")
    real = Counter(r.stage for r in test_model.requests)
    assert calls(result) == dict(real) and result["totals"]["calls"] == len(test_model.requests)
    assert len(real) >= 5  # generation, judging and AAA stages were all counted
    t = result["totals"]
    assert 0 < t["usd_low"] < t["usd_high"]  # gpt-4o-mini has a price in litellm's map
    assert t["completion_expected"] is None and t["usd_expected"] is None  # no pilot
    assert t["completion_worst"] == sum(r.params["max_tokens"] for r in test_model.requests)
    assert json.loads(out.read_text())["totals"] == t


def test_pilot_measures_completions_at_the_real_model(tmp_path: Path, mock_server: MockServer) -> None:
    result = estimate(
        [
            *TINY,
            "model=openai_compatible",
            f"model.api_base={mock_server.url}",
            "model.name=mock",
            "model.price={input_per_mtok: 1, output_per_mtok: 2}",
        ],
        TINY_DIRS,
        pilot=2,
    )
    assert mock_server.requests == 4  # 2 per LLM stage, no more
    assert calls(result) == {"answer": 10, "judge": 10}
    for s in result["stages"]:
        assert s["pilot_calls"] == 2 and s["completion_expected"] is not None
        assert s["usd_low"] < s["usd_expected"] < s["usd_high"]
    assert result["totals"]["usd_expected"] == pytest.approx(
        sum(s["usd_expected"] for s in result["stages"]), abs=1e-6
    )


def test_unpriced_model_is_said_and_rpm_bounds_the_time() -> None:
    result = estimate([*TINY, "model=test", "+model.rpm=60"], TINY_DIRS)
    assert result["unpriced_models"] == [] and result["totals"]["usd_high"] == 0.0  # free
    assert result["totals"]["wall_s"] == pytest.approx(20.0, abs=0.2)  # 20 calls at 1/s


def test_cli_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "e.json"
    got = cli(
        "estimate",
        "--config-dir",
        TINY_DIRS[0],
        *TINY,
        "model=test",
        "--out",
        str(out),
        env={"SELFALIGN_CACHE": str(tmp_path / "c"), "COLUMNS": "200"},
    )
    assert got.returncode == 0, got.stderr[-2000:]
    assert "estimate: tiny" in got.stdout and "total" in got.stdout
    assert json.loads(out.read_text())["totals"]["calls"] == 20
    bad = cli("estimate", *TINY, "--pilot", "x")
    assert bad.returncode == 2 and "--pilot takes a number" in bad.stderr
