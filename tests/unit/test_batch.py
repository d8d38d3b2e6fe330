"""Batch APIs (`batch: true`): round trips against a mock OpenAI / Anthropic batch server,
per-request errors, retries in a second batch, expired / cancelled / failed batches, re-attach
after a stop, the cache, the budget and batch prices.

Counts, not times: every assertion is on the mock's counters (uploads, creates, polls, lines per
batch, live chat requests) or on what the run wrote."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mock_batch import STEPS, MockBatchServer  # noqa: E402

from selfalign import api  # noqa: E402
from selfalign.errors import EXIT_CONFIG, EXIT_RUN_FAILED, LLMError, StageError, ValidationFailed  # noqa: E402
from selfalign.llm.base import ChatRequest  # noqa: E402
from selfalign.llm.batch import BatchEnded, BatchPending  # noqa: E402
from selfalign.llm.batch_api import BatchAPI, batch_api  # noqa: E402
from selfalign.llm.budget import BudgetExceeded  # noqa: E402
from selfalign.llm.config import ModelConfig  # noqa: E402

DIRS = [str(FIXTURES / "conf")]
KEY = "MOCK_BATCH_KEY"
NAMES = {"openai": "openai/gpt-4o-mini", "anthropic": "anthropic/claude-haiku-4-5"}
ROWS = 5  # tiny.jsonl: 5 rows → answer: 10 requests (n=2), judge: 10
STAGES = ("answer", "judge")


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockBatchServer]:
    monkeypatch.setenv(KEY, "sk-mock-batch")
    server = MockBatchServer().start()
    yield server
    server.stop()


def overrides(mock: MockBatchServer, provider: str = "openai", *extra: str) -> list[str]:
    args = [
        f"model={provider}",
        f"model.name={NAMES[provider]}",
        f"model.api_base={mock.url}",
        f"model.api_key_env={KEY}",
        "model.price={input_per_mtok: 1000, output_per_mtok: 1000}",  # $0.001 per token
        "pipeline=tiny",
        f"prompts.search_path=[{FIXTURES / 'prompts'}]",
    ]
    for stage in STAGES:
        args += [f"pipeline.stages.{stage}.batch=true", f"pipeline.stages.{stage}.batch_poll_s=0.001"]
    return [*args, *extra]


def run(mock: MockBatchServer, run_dir: Path, *extra: str, provider: str = "openai") -> dict[str, Any]:
    return api.run(overrides(mock, provider, *extra), run_dir, config_dirs=DIRS, show_progress=False)[1]


def sizes(mock: MockBatchServer) -> list[int]:
    return [len(b.lines) for b in mock.batches.values()]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_round_trip_fills_the_cache_at_batch_price(mock, tmp_path: Path, provider: str) -> None:
    manifest = run(mock, tmp_path / "a", provider=provider)
    assert manifest["status"] == "ok" and manifest["rows"] == ROWS
    assert sizes(mock) == [2 * ROWS, 2 * ROWS]  # one batch per stage, every request in it
    assert mock.calls["create"] == 2 and mock.requests == 0  # nothing was sent live
    assert mock.calls["upload"] == (2 if provider == "openai" else 0)
    assert [s for s in dict.fromkeys(mock.seen_statuses)] == STEPS  # every status was polled
    auth = mock.auth[0]
    if provider == "openai":
        assert auth == {"Authorization": "Bearer sk-mock-batch"}
    else:
        assert auth == {"x-api-key": "sk-mock-batch", "anthropic-version": "2023-06-01"}
    totals = manifest["llm_totals"]
    tokens = totals["prompt_tokens"] + totals["completion_tokens"]
    assert totals["sent"] == 4 * ROWS and tokens > 0
    assert totals["cost_usd"] == pytest.approx(tokens * 0.001 * 0.5)  # half the list price
    for stage in STAGES:
        (rec,) = json.loads((tmp_path / "a" / "batches" / f"{stage}.json").read_text())
        assert rec["collected"] and rec["status"] in ("completed", "ended") and len(rec["keys"]) == 2 * ROWS

    mock.reset()
    again = run(mock, tmp_path / "b", provider=provider)  # a new run dir, the same cache
    assert mock.batch_calls() == 0 and mock.requests == 0
    assert again["llm_totals"]["cache_hits"] == 4 * ROWS


@pytest.mark.parametrize(
    ("provider", "reason"),
    [
        ("openai", "batch: HTTP 400: mock error 400"),
        ("anthropic", "batch: invalid_request_error: mock says no"),
    ],
)
def test_failed_requests_go_to_the_rejected_table(mock, tmp_path: Path, provider: str, reason: str) -> None:
    mock.fail_when = {"plants": "400"}  # both samples of one question fail
    manifest = run(mock, tmp_path / "a", provider=provider)
    assert manifest["status"] == "ok" and manifest["rejected"] == 2
    rejected = [json.loads(x) for x in (tmp_path / "a" / "rejected.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rejected} == {"answer"}
    assert all(reason in r["reason"] for r in rejected)
    assert sizes(mock) == [10, 8]  # the judge gets only the 8 answers that came back

    mock.reset()
    with pytest.raises(StageError, match=f"answer: row .* failed .*{reason}") as err:
        fail = ("pipeline.stages.answer.on_failure=fail", "cache.enabled=false")
        run(mock, tmp_path / "b", *fail, provider=provider)
    assert err.value.exit_code == EXIT_RUN_FAILED


def test_unparsable_replies_are_retried_in_a_second_batch(mock, tmp_path: Path) -> None:
    mock.no_score_at = 0.0  # the judge's first tries (temperature 0) have no score
    manifest = run(mock, tmp_path / "a", "pipeline.stages.judge.retry_temperature=0.5")
    assert manifest["status"] == "ok" and manifest["rows"] == ROWS
    assert sizes(mock) == [10, 10, 10]  # answer; judge; the judge's retries, all batched
    assert mock.requests == 0


@pytest.mark.parametrize(("provider", "end"), [("openai", "expired"), ("anthropic", "cancelled")])
def test_an_ended_batch_stops_the_run_and_a_rerun_sends_only_the_rest(
    mock, tmp_path: Path, provider: str, end: str
) -> None:
    mock.statuses, mock.ran = ["validating", "in_progress", end], 4
    with pytest.raises(BatchEnded, match=r"answer: batch \S+ ended .* 6 of 10 requests not run") as err:
        run(mock, tmp_path / "a", provider=provider)
    assert err.value.exit_code == EXIT_RUN_FAILED
    mock.statuses = list(STEPS)
    manifest = run(mock, tmp_path / "a", provider=provider)  # the same run dir and cache
    assert manifest["status"] == "ok"
    assert sizes(mock) == [10, 6, 10]  # the 4 that ran came from the cache


def test_a_flaky_poll_is_retried_and_a_dead_one_stops_the_run(mock, tmp_path: Path) -> None:
    mock.poll_errors = 2
    assert run(mock, tmp_path / "a", "model.backoff_base_s=0.001")["status"] == "ok"
    assert mock.calls["create"] == 2 and mock.poll_errors == 0
    mock.reset()
    mock.poll_errors = 10**6
    with pytest.raises(LLMError, match=r"batch API GET .*/batches/\S+: HTTP 503: overloaded") as err:
        run(mock, tmp_path / "b", "model.backoff_base_s=0.001", "model.max_retries=2", "cache.enabled=false")
    assert mock.calls["poll"] == 3 and mock.calls["create"] == 1  # 1 try + 2 retries, then stop
    assert "sk-mock-batch" not in str(err.value)


def test_a_failed_batch_is_a_clear_error(mock, tmp_path: Path) -> None:
    mock.statuses = ["validating", "failed"]
    with pytest.raises(BatchEnded, match="answer: batch .* failed: invalid: mock says no"):
        run(mock, tmp_path / "a")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stopped_run_reattaches_instead_of_paying_twice(mock, tmp_path: Path, provider: str) -> None:
    mock.statuses = ["validating", *["in_progress"] * 3, "finalizing", "completed"]
    with pytest.raises(BatchPending, match="still .* re-run into the same run dir to re-attach"):
        run(mock, tmp_path / "a", "pipeline.stages.answer.batch_max_wait_s=0", provider=provider)
    (rec,) = json.loads((tmp_path / "a" / "batches" / "answer.json").read_text())
    assert not rec.get("collected") and mock.calls["create"] == 1  # written before waiting

    manifest = run(mock, tmp_path / "a", provider=provider)
    assert manifest["status"] == "ok"
    assert mock.calls["create"] == 2  # the answer batch re-attached; only the judge's is new
    assert rec["id"] in mock.batches and sizes(mock) == [10, 10]

    mock.reset()
    third = run(mock, tmp_path / "a", provider=provider)
    assert mock.batch_calls() == 0 and mock.requests == 0 and third["status"] == "ok"


def test_the_budget_refuses_a_batch_before_it_is_submitted(mock, tmp_path: Path) -> None:
    with pytest.raises(BudgetExceeded, match="budget reached"):
        run(mock, tmp_path / "a", "budget.max_usd=0.05")
    assert mock.batch_calls() == 0
    manifest = run(mock, tmp_path / "b", "budget.max_usd=100")
    spent = json.loads((tmp_path / "b" / "budget.json").read_text())["spent_usd"]
    assert spent == pytest.approx(manifest["llm_totals"]["cost_usd"]) and spent > 0


def test_batch_on_a_model_without_a_batch_api_fails_before_any_call(tmp_path: Path) -> None:
    args = ["model=test", "pipeline=tiny", f"prompts.search_path=[{FIXTURES / 'prompts'}]"]
    with pytest.raises(
        ValidationFailed, match=r"pipeline\.stages\.answer\.batch: model .* no batch API"
    ) as e:
        api.run([*args, "pipeline.stages.answer.batch=true"], tmp_path / "a", config_dirs=DIRS)
    assert e.value.exit_code == EXIT_CONFIG
    with pytest.raises(ValidationFailed, match="batch_poll_s. must be > 0"):
        api.run([*args, "pipeline.stages.answer.batch_poll_s=0"], tmp_path / "b", config_dirs=DIRS)


def test_a_reattached_batch_that_expired_resubmits_only_what_did_not_run(mock, tmp_path: Path) -> None:
    mock.statuses, mock.ran = ["validating", "in_progress", "expired"], 4
    with pytest.raises(BatchPending):
        run(mock, tmp_path / "a", "pipeline.stages.answer.batch_max_wait_s=0")
    # re-run: the first batch ends expired (4 ran); the 6 others go in a new batch, which
    # expires too with 4 of them run: now the run stops and says so
    with pytest.raises(BatchEnded, match="2 of 6 requests not run; the 4 results are cached"):
        run(mock, tmp_path / "a")
    assert sizes(mock) == [10, 6]
    mock.statuses = list(STEPS)
    assert run(mock, tmp_path / "a")["status"] == "ok"
    assert sizes(mock) == [10, 6, 2, 10]


def test_request_bodies_in_each_providers_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY, "k")
    req = ChatRequest.make(
        [("system", "Be brief."), ("user", "Hi")],
        {"max_tokens": 9, "stop": ["\n"], "seed": 1, "temperature": 0.2, "response_format": {"type": "json"}},
    )
    anthropic = BatchAPI(ModelConfig(provider="litellm", name=NAMES["anthropic"], api_key_env=KEY))
    assert anthropic.body(req) == {
        "model": "claude-haiku-4-5",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 9,
        "stop_sequences": ["\n"],
        "temperature": 0.2,
    }
    reasoning = BatchAPI(ModelConfig(provider="litellm", name="o4-mini", api_key_env=KEY))
    body = reasoning.body(req)
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body and body["seed"] == 1
    assert "response_format" not in body  # the model config does not claim JSON-schema support
    assert (
        batch_api(ModelConfig(provider="litellm", name="my-model", api_base="http://127.0.0.1:1/v1")) is None
    )
    assert batch_api(ModelConfig(provider="litellm", name="claude-sonnet-4-5")) == "anthropic"


def test_empty_batch_replies_are_retried_rejected_and_never_cached(mock, tmp_path: Path) -> None:
    mock.fail_when = {"plants": "empty"}  # both samples of one question come back as ""
    manifest = run(mock, tmp_path / "a")
    assert manifest["status"] == "ok" and manifest["rejected"] == 2
    assert sizes(mock) == [10, 2, 2, 8]  # answer, its two retries (new samples), the judge
    rejected = [json.loads(x) for x in (tmp_path / "a" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["raw"], r["reason"]) for r in rejected] == [
        ("answer", "", "llm_error: empty reply (no text)")
    ] * 2

    mock.reset()
    mock.fail_when = {}  # fixed: a re-run on the same cache sends exactly what was empty
    again = run(mock, tmp_path / "b")
    assert again["status"] == "ok" and again["rejected"] == 0
    assert sizes(mock) == [2, 2]


def test_the_engine_creates_and_closes_its_own_batcher(ctx) -> None:
    # a batched stage's calls go through its engine's batcher, which the session is handed per
    # call: no per-stage table on the session that stages fill and empty
    from selfalign.engine import CallParams, Engine
    from selfalign.llm.batch import Batcher

    with ctx.progress("s", 0) as prog:
        engine = Engine(ctx, "s", CallParams(batch=True), prog)
        assert isinstance(engine.batcher, Batcher) and engine.batcher.stage == "s"
        engine.batcher.state = "in_progress"
        assert "s: in_progress" in prog.info()  # the stage's own bar shows its batch
        engine.close()
        assert engine.batcher is None and "in_progress" not in prog.info()
        assert Engine(ctx, "t", CallParams(), prog).batcher is None
    assert not hasattr(ctx.llm, "batchers")
