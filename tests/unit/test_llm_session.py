"""LLMSession over the real litellm client and the mock server: cache hits/misses, refresh,
failures not cached, accounting, and an identity free of ports and secrets."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import make_stage, mock_config, run_stage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mockserver import MockServer  # noqa: E402

from selfalign.context import Rejected, RunContext  # noqa: E402
from selfalign.llm.base import ChatRequest  # noqa: E402
from selfalign.llm.cache import ResponseCache  # noqa: E402
from selfalign.llm.config import ModelConfig  # noqa: E402
from selfalign.llm.session import LLMSession, close_all  # noqa: E402
from selfalign.paths import resource_dir  # noqa: E402
from selfalign.prompts import PromptLibrary  # noqa: E402


@pytest.fixture
def mock(mock_server: MockServer):
    """The shared mock server; the clients the test's sessions opened are closed after it."""
    yield mock_server
    asyncio.run(close_all())


def session(mock: MockServer, tmp_path: Path, refresh: set[str] | None = None, **kw) -> LLMSession:
    base = dict(concurrency=8, max_retries=2, backoff_base_s=0.01, backoff_max_s=0.02)
    cfg = mock_config(mock, **{**base, **kw})
    return LLMSession({"default": cfg}, tmp_path, ResponseCache(tmp_path / "cache.sqlite"), refresh)


def reqs(n: int, stage: str = "gen") -> list[ChatRequest]:
    return [
        ChatRequest.make(
            [{"role": "user", "content": f"write item {i}"}], {"max_tokens": 16}, stage=stage, row_id=str(i)
        )
        for i in range(n)
    ]


def test_cache_hits_and_misses(mock, tmp_path):
    s1 = session(mock, tmp_path)
    seen = []
    first = asyncio.run(s1.complete("gen", None, reqs(10), seen.append))
    assert len(seen) == 10 and all(r.ok and not r.cached for r in first)
    assert mock.requests == 10

    s2 = session(mock, tmp_path)  # a later run, same cache file
    again = asyncio.run(s2.complete("gen", None, reqs(12)))
    assert mock.requests == 12  # only the 2 new rows were sent
    assert [r.cached for r in again] == [True] * 10 + [False] * 2
    assert [r.text for r in again[:10]] == [r.text for r in first]
    acc = s2.accounting.for_stage("gen")[s2.identity(None)]
    assert acc["requests"] == 12 and acc["cache_hits"] == 10 and acc["sent"] == 2
    assert acc["prompt_tokens"] == sum(r.prompt_tokens for r in again)


def test_sample_index_and_params_are_part_of_the_key(mock, tmp_path):
    s = session(mock, tmp_path)
    msg = [{"role": "user", "content": "same"}]
    rs = [
        ChatRequest.make(msg, {"temperature": 0.7}, sample=0),
        ChatRequest.make(msg, {"temperature": 0.7}, sample=1),
        ChatRequest.make(msg, {"temperature": 0.2}, sample=0),
    ]
    asyncio.run(s.complete("gen", None, rs))
    asyncio.run(s.complete("gen", None, rs))
    assert mock.requests == 3


def test_refresh_stage_skips_and_refills_the_cache(mock, tmp_path):
    asyncio.run(session(mock, tmp_path).complete("gen", None, reqs(5)))
    s = session(mock, tmp_path, refresh={"gen"})
    out = asyncio.run(s.complete("gen", None, reqs(5)))
    assert mock.requests == 10 and not any(r.cached for r in out)
    asyncio.run(session(mock, tmp_path).complete("gen", None, reqs(5)))
    assert mock.requests == 10  # refilled: a normal run hits again


def test_failures_are_not_cached_and_counted(mock, tmp_path):
    mock.configure(fail_when={"item 0": "500"}, script=["429"])  # row 0 always fails
    s = session(mock, tmp_path)
    out = asyncio.run(s.complete("gen", None, reqs(3)))
    assert [r.ok for r in out] == [False, True, True]
    acc = s.accounting.for_stage("gen")[s.identity(None)]
    assert acc["failures"] == 1 and acc["retries"] == 3 and acc["requests"] == 3
    assert acc["latency_p50_s"] is not None and acc["latency_p95_s"] is not None
    again = asyncio.run(session(mock, tmp_path).complete("gen", None, reqs(3)))
    assert [r.cached for r in again] == [False, True, True]  # the failed row is asked again
    assert "HTTP 500" in (out[0].error or "")


def test_identity_has_no_port_or_secret_and_tracks_extra_params(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFALIGN_TEST_KEY", "sk-never-in-identity-123456")
    cfgs = {
        "a": ModelConfig(provider="litellm", name="m", api_key_env="SELFALIGN_TEST_KEY"),
        "b": ModelConfig(provider="litellm", name="m", extra_params={"top_k": 5}),
        "local": ModelConfig(provider="local", name="q"),
        "local2": ModelConfig(provider="local", name="q", n_parallel=8),
    }
    s = LLMSession(cfgs, tmp_path, None)
    assert "sk-never" not in s.identity("a")
    assert s.identity("a") != s.identity("b")
    assert s.identity("local") == s.identity("local2")  # slots/ports don't change answers
    assert "sha256=" in s.identity("local")


def test_empty_replies_are_failures_and_never_cached(mock, tmp_path):
    mock.configure(replies="empty")  # HTTP 200, content ""
    out = asyncio.run(session(mock, tmp_path).complete("gen", None, reqs(2)))
    assert [(r.ok, r.error, r.text) for r in out] == [(False, "empty reply (no text)", "")] * 2
    mock.configure(replies="echo")  # the server is fixed: the same cache asks again
    again = asyncio.run(session(mock, tmp_path).complete("gen", None, reqs(2)))
    assert mock.requests == 4 and all(r.ok and not r.cached for r in again)


def test_an_empty_answer_cached_by_an_older_version_is_asked_again(mock, tmp_path):
    s = session(mock, tmp_path)
    (req,) = reqs(1)
    key = req.cache_key(s.identity(None))
    s.cache.put(key, s.identity(None), " \n", {})  # what versions before the check stored
    (out,) = asyncio.run(s.complete("gen", None, [req]))
    assert mock.requests == 1 and out.ok and not out.cached
    assert s.cache.get(key)[0] == out.text  # the usable answer replaced it


def test_empty_and_null_content_are_retried_as_new_samples_by_the_engine(mock, tmp_path):
    """Through a real stage: content null, then "", then an answer: one job, three requests, no
    failure; only the answer is cached."""
    s = session(mock, tmp_path)
    ctx = RunContext(
        run_dir=tmp_path, prompts=PromptLibrary([resource_dir("prompts")]), llm=s, show_progress=False
    )
    ctx.rejected = Rejected(tmp_path / "rejected.jsonl")
    stage = make_stage("classify_text", ctx, "c", prompt="realign/classify", labels="realign/tasks.yaml")
    mock.configure(script=["null", "empty"])  # then the echo reply
    out = run_stage(stage, pd.DataFrame({"row_id": ["0"], "instruction": ["What is BM25?"]}))
    assert mock.requests == 3 and ctx.stats.stage("c").failed == 0 and ctx.rejected.count == 0
    assert out.category_match[0] != "error" and len(s.cache) == 1
