"""LiteLLMClient against the mock server on 127.0.0.1, over both transports (direct aiohttp and
litellm): retries, Retry-After, timeouts, malformed bodies, fail-fast errors, the concurrency
limit, params, and keys that never leak."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import sys
import time
import traceback
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mockserver import MockServer  # noqa: E402

from selfalign.errors import LLMError  # noqa: E402
from selfalign.llm.base import ChatRequest  # noqa: E402
from selfalign.llm.config import ModelConfig  # noqa: E402
from selfalign.llm.litellm_client import (  # noqa: E402
    LiteLLMClient,
    model_string,
    parse_retry_after,
    transport_kind,
)

SECRET = "sk-test-SECRET-7d1f0a9c2b4e6f81"


@pytest.fixture
def mock():
    server = MockServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["direct", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def make(mock: MockServer, transport: str, **kw) -> LiteLLMClient:
    base = dict(provider="litellm", name="mock-model", api_base=mock.url, concurrency=4,
                timeout_s=5.0, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05)
    return LiteLLMClient(ModelConfig(**{**base, **kw}), transport=transport)


def call(client: LiteLLMClient, request: ChatRequest):
    """One request in a fresh event loop, closing the client's connections before it ends."""

    async def go():
        try:
            return await client.complete(request)
        finally:
            await client.aclose()

    return asyncio.run(go())


def req(text: str = "hello there", **params) -> ChatRequest:
    return ChatRequest.make([{"role": "user", "content": text}], params or None)


def test_success_fills_tokens_latency_and_sends_model(mock, transport):
    r = call(make(mock, transport), req("count these four words", max_tokens=8))
    assert r.ok and r.text == "mock reply to: count these four words"
    assert (r.prompt_tokens, r.completion_tokens) == (4, 7)  # word counts
    assert r.attempts == 1 and r.retries == 0 and r.latency_s > 0
    assert r.cost is None  # a custom endpoint has no known price
    assert mock.bodies[-1]["model"] == "mock-model" and mock.bodies[-1]["max_tokens"] == 8


def test_retries_on_429_500_503_then_succeeds(mock, transport):
    mock.configure(script=["429", "500", "503"])
    r = call(make(mock, transport), req())
    assert r.ok and r.attempts == 4 and r.retries == 3
    assert mock.requests == 4


def test_gives_up_after_budget_without_raising(mock, transport):
    mock.configure(script=["429"] * 3)
    r = call(make(mock, transport, max_retries=2), req())
    assert not r.ok and r.text is None
    assert "gave up after 3 attempts" in (r.error or "") and "429" in (r.error or "")
    assert r.retries == 2 and mock.requests == 3


def test_retry_after_seconds_is_honoured(mock, transport):
    mock.configure(script=["429"], retry_after="0.6")
    client = make(mock, transport, backoff_max_s=0.01)
    t0 = time.perf_counter()
    r = call(client, req())
    assert r.ok and r.retries == 1
    assert time.perf_counter() - t0 >= 0.6  # the backoff alone would be ≤ 0.01 s


def test_retry_after_http_date_is_honoured(mock, transport):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    mock.configure(script=["503"], retry_after=when)
    client = make(mock, transport, backoff_max_s=0.01)
    t0 = time.perf_counter()
    r = call(client, req())
    assert r.ok and time.perf_counter() - t0 >= 0.9  # whole-second dates: at least ~1 s left


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    soon = parse_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert soon is not None and 28 <= soon <= 30
    assert parse_retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert parse_retry_after("soon-ish") is None


def test_timeout_is_retried(mock, transport):
    mock.configure(script=["timeout"], hang_s=5)
    client = make(mock, transport, timeout_s=0.4)
    t0 = time.perf_counter()
    r = call(client, req())
    assert r.ok and r.attempts == 2
    assert time.perf_counter() - t0 < 3


def test_timeouts_exhaust_budget_into_error(mock, transport):
    mock.configure(script=["timeout"] * 2, hang_s=5)
    r = call(make(mock, transport, timeout_s=0.3, max_retries=1), req())
    assert not r.ok and "timeout" in (r.error or "").lower()


def test_malformed_bodies_are_retried(mock, transport):
    mock.configure(script=["malformed", "nochoices"])
    r = call(make(mock, transport), req())
    assert r.ok and r.attempts == 3


def test_connection_refused_is_retried_then_reported(mock, transport):
    port = mock.port
    mock.stop()  # nothing listens there any more
    cfg = dict(provider="litellm", name="m", api_base=f"http://127.0.0.1:{port}/v1",
               max_retries=1, backoff_base_s=0.01, backoff_max_s=0.01, timeout_s=2)
    r = call(LiteLLMClient(ModelConfig(**cfg), transport=transport), req())
    assert not r.ok and r.attempts == 2 and "gave up" in (r.error or "")


@pytest.mark.parametrize("status,words", [("400", "rejected the request"), ("404", "not found")])
def test_bad_request_and_not_found_fail_fast(mock, transport, status, words):
    mock.configure(script=[status])
    with pytest.raises(LLMError, match=words):
        call(make(mock, transport), req())
    assert mock.requests == 1


def test_concurrency_limit_is_respected_and_saturated(mock, transport):
    mock.configure(latency_s=0.1)
    client = make(mock, transport, concurrency=5)

    async def main():
        try:
            return await asyncio.gather(*(client.complete(req(f"row {i}")) for i in range(40)))
        finally:
            await client.aclose()

    t0 = time.perf_counter()
    results = asyncio.run(main())
    wall = time.perf_counter() - t0
    assert all(r.ok for r in results)
    assert mock.max_in_flight == 5 and client.max_in_flight == 5
    assert wall < 8 * 0.1 * 2.5  # 40 calls / 5 slots × 0.1 s, kept full (no lock-step batches)


def test_extra_params_sent_and_request_params_win(mock, transport):
    client = make(mock, transport, extra_params={"top_k": 7, "temperature": 0.1})
    call(client, req(temperature=0.9))
    body = mock.bodies[-1]
    assert body["top_k"] == 7 and body["temperature"] == 0.9


@pytest.mark.parametrize("supported", [True, False])
def test_response_format_dropped_unless_supported(mock, transport, supported):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    client = make(mock, transport, supports_json_schema=supported)
    call(client, req(response_format=fmt))
    assert ("response_format" in mock.bodies[-1]) is supported


def test_works_across_event_loops(mock, transport):
    client = make(mock, transport, concurrency=2)

    async def main():
        return await asyncio.gather(*(client.complete(req(str(i))) for i in range(4)))

    for _ in range(2):  # a multirun job may run in a fresh loop; the semaphore must follow it
        assert all(r.ok for r in asyncio.run(main()))


def test_transport_choice():
    def kind(name: str, base: str | None = "http://127.0.0.1:1/v1") -> str:
        return transport_kind(ModelConfig(provider="litellm", name=name, api_base=base))

    assert kind("Qwen/Qwen2.5-7B-Instruct") == "direct"  # a Hugging Face id, not a provider
    assert kind("openai/llama3") == "direct"
    assert kind("ollama/llama3") == "litellm"  # litellm's native ollama route
    assert kind("gpt-4o-mini", None) == "litellm"  # hosted


def test_model_string():
    def ms(name: str, base: str | None = "http://127.0.0.1:1/v1") -> str:
        return model_string(ModelConfig(provider="litellm", name=name, api_base=base))

    assert ms("Qwen/Qwen2.5-7B-Instruct") == "openai/Qwen/Qwen2.5-7B-Instruct"
    assert ms("llama3") == "openai/llama3"
    assert ms("ollama/llama3") == "ollama/llama3"
    assert ms("gpt-4o-mini", None) == "gpt-4o-mini"


# ---- keys ---------------------------------------------------------------------------------
def test_missing_key_env_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SELFALIGN_TEST_NOKEY", raising=False)
    with pytest.raises(LLMError, match="SELFALIGN_TEST_NOKEY"):
        LiteLLMClient(ModelConfig(provider="litellm", name="x", api_key_env="SELFALIGN_TEST_NOKEY"))


def test_key_is_sent_but_never_stored(mock, transport, monkeypatch):
    monkeypatch.setenv("SELFALIGN_TEST_KEY", SECRET)
    mock.configure(require_key=SECRET)
    client = make(mock, transport, api_key_env="SELFALIGN_TEST_KEY")
    assert call(client, req()).ok
    assert mock.headers[-1]["Authorization"] == f"Bearer {SECRET}"
    for text in (repr(client), client.identity, repr(vars(client)), repr(client.cfg)):
        assert SECRET not in text


def test_wrong_key_fails_fast_and_never_leaks(mock, transport, monkeypatch, caplog, capsys):
    monkeypatch.setenv("SELFALIGN_TEST_KEY", SECRET)
    mock.configure(require_key="the-right-key")  # the 401 body echoes the key we sent
    caplog.set_level(logging.DEBUG)
    client = make(mock, transport, api_key_env="SELFALIGN_TEST_KEY")
    with pytest.raises(LLMError) as info:
        call(client, req())
    assert mock.requests == 1  # no retry on 401
    msg = str(info.value)
    assert "authentication failed" in msg and "SELFALIGN_TEST_KEY" in msg
    shown = "".join(traceback.format_exception(info.value))
    out = capsys.readouterr()
    for text in (msg, shown, caplog.text, out.out, out.err):
        assert SECRET not in text
        assert SECRET[8:] not in text  # not even the tail of it
