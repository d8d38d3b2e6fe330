"""Issue 20, items 3 and 5, as a hostile user meets them: `selfalign run pipeline=realign` in a
subprocess against the mock on 127.0.0.1 that answers empty completions or unreadable bodies,
then against the same mock fixed; and realign on a CSV with empty cells. Counts, not times."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import ROOT, cli

sys.path.insert(0, str(ROOT / "tests"))
from mockserver import MockServer  # noqa: E402

ROWS = 4
SAMPLES = 3  # classify: the first try and its 2 retries (LLMParams.retries)
REALIGN = [
    "pipeline=realign",
    f"n_rows={ROWS}",
    "retrieval.enabled=false",
    "model=openai_compatible",
    "model.name=mock",
    "model.max_retries=1",  # the client's own retries of an unreadable body
    "model.backoff_base_s=0.01",
    "model.backoff_max_s=0.02",
]
BROKEN_BODY = '{"id": "x", "choices": ['  # what tests/mockserver.py sends for "malformed"
pytestmark = pytest.mark.mock_faults(replies="empty")  # HTTP 200, content "" for every call


def run(run_dir: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    res = cli("run", *REALIGN, *args, f"hydra.run.dir={run_dir}")
    manifest = run_dir / "manifest.json"
    return res, (json.loads(manifest.read_text()) if manifest.exists() else {})


def stage(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in manifest["stages"] if s["name"] == name)


def rejected(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "rejected.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_empty_replies_fail_the_run_and_are_asked_again_once_the_server_is_fixed(
    tmp_path: Path, mock_server: MockServer
) -> None:
    res, manifest = run(tmp_path / "r", f"model.api_base={mock_server.url}")
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "failures 0" not in res.stdout and "empty reply (no text)" in " ".join(res.stderr.split())
    assert manifest["status"] == "failed" and manifest["exit_code"] == 3
    assert stage(manifest, "classify")["failed_calls"] == ROWS
    assert mock_server.requests == ROWS * SAMPLES  # every empty reply was retried with a new sample
    recs = rejected(tmp_path / "r")
    assert len(recs) == ROWS
    assert {(r["stage"], r["reason"], r["raw"], r["samples_tried"]) for r in recs} == {
        ("classify", "llm_error: empty reply (no text)", "", SAMPLES)
    }

    # The server is fixed: the same command on the same cache sends the calls again (nothing
    # empty was cached) and succeeds; a later run in a new dir is then answered by the cache.
    mock_server.configure(replies="test")
    mock_server.reset()
    res, manifest = run(tmp_path / "r", f"model.api_base={mock_server.url}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert mock_server.requests >= ROWS and manifest["llm_attempt"]["sent"] == mock_server.requests
    assert manifest["status"] == "ok" and stage(manifest, "classify")["failed_calls"] == 0
    data = pd.read_json(tmp_path / "r" / "dataset.jsonl", lines=True)
    assert len(data) == ROWS and "error" not in set(data.category_match)
    sent = mock_server.requests
    res, manifest = run(tmp_path / "again", f"model.api_base={mock_server.url}")
    assert res.returncode == 0 and manifest["llm_attempt"]["sent"] == 0 and mock_server.requests == sent


@pytest.mark.parametrize(
    ("malformed", "raws"),
    [
        (1.0, {BROKEN_BODY}),  # every body unreadable: kept as the raw text
        (0.5, {BROKEN_BODY, ""}),  # the bench mock's --malformed: half unreadable, half empty
    ],
)
def test_unreadable_bodies_are_failures_with_the_body_kept(
    tmp_path: Path, mock_server: MockServer, malformed: float, raws: set[str]
) -> None:
    mock_server.configure(rate_malformed=malformed, seed=3)
    res, manifest = run(tmp_path / "r", f"model.api_base={mock_server.url}")
    assert res.returncode == 3 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert stage(manifest, "classify")["failed_calls"] == ROWS
    recs = rejected(tmp_path / "r")
    assert len(recs) == ROWS and {r["raw"] for r in recs} <= raws
    assert all(r["reason"].startswith("llm_error: ") for r in recs)
    if malformed == 1.0:
        assert all("malformed response body" in r["reason"] for r in recs)


def test_a_csv_with_empty_cells_gives_no_empty_turn(tmp_path: Path) -> None:
    rows = [
        ("What is the capital of France?", "Paris is the capital of France."),
        ("", "An answer with no question."),
        ("A question with no answer?", ""),
        ("   ", "A whitespace-only question."),
        ("How do I boil an egg?", " \t "),
        ("Name a primary colour.", "Red is a primary colour."),
    ]
    src = tmp_path / "in.csv"
    pd.DataFrame(rows, columns=["instruction", "response"]).to_csv(src, index=False)
    run_dir = tmp_path / "r"
    res = cli("run", "pipeline=realign", "model=test", f"input_path={src}", f"hydra.run.dir={run_dir}")
    assert res.returncode == 0, res.stderr[-2000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["rows"] == 2
    assert stage(manifest, "unpack")["drops"] == {"empty:instruction": 2, "empty:response": 2}
    sft = [json.loads(x) for x in (run_dir / "realign_sft.jsonl").read_text().splitlines()]
    turns = [m["content"] for r in sft for m in r["messages"]]
    turns += [m["content"] for r in pd.read_parquet(run_dir / "realign_sft.parquet").messages for m in r]
    records = json.loads((run_dir / "realign_sharegpt.json").read_text())
    turns += [item["value"] for r in records for item in r["items"]]
    assert len(turns) == 3 * 2 * 2 and all(t.strip() for t in turns)
