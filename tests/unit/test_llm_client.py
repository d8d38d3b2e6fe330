"""EndpointClient against the mock server on 127.0.0.1, over both transports (direct aiohttp and
litellm): retries, Retry-After, timeouts, malformed bodies, fail-fast errors, the concurrency
limit, params, and keys that never leak.

No test measures elapsed time: they count requests and outcomes at the mock_server, the in-flight
maximum on both sides, and the backoff delays the client asked for (the `sleeps` fixture records
them and sleeps 0 instead), so a busy machine cannot fail them.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mockserver import MockServer  # noqa: E402

from selfalign.errors import LLMError  # noqa: E402
from selfalign.llm import client as endpoint_client  # noqa: E402
from selfalign.llm.base import ChatRequest  # noqa: E402
from selfalign.llm.client import EndpointClient  # noqa: E402
from selfalign.llm.config import ModelConfig  # noqa: E402
from selfalign.llm.litellm_adapter import model_string, transport_kind  # noqa: E402
from selfalign.llm.transport import parse_retry_after  # noqa: E402

SECRET = "sk-test-SECRET-7d1f0a9c2b4e6f81"


class SleepRecorder(list):
    """The client's injected `sleep`: every backoff delay it asks for is recorded (the list
    itself) and sleeps 0 instead."""

    @property
    def asked(self) -> list[float]:
        return self

    async def sleep(self, delay: float) -> None:
        self.append(delay)
        await asyncio.sleep(0)

    async def __call__(self, delay: float) -> None:
        await self.sleep(delay)


@pytest.fixture
def sleeps() -> SleepRecorder:
    """The backoff delays the client asked for, in order (nothing really sleeps); pass it to
    `make(..., sleep=sleeps)`."""
    return SleepRecorder()


@pytest.fixture(params=["direct", "litellm"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def make(mock_server: MockServer, transport: str, sleep: Any = asyncio.sleep, **kw) -> EndpointClient:
    base = dict(
        provider="litellm",
        name="mock-model",
        api_base=mock_server.url,
        concurrency=4,
        timeout_s=5.0,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    return EndpointClient(ModelConfig(**{**base, **kw}), transport=transport, sleep=sleep)


def call(client: EndpointClient, request: ChatRequest):
    """One request in a fresh event loop, closing the client's connections before it ends."""

    async def go():
        try:
            return await client.complete(request)
        finally:
            await client.aclose()

    return asyncio.run(go())


def req(text: str = "hello there", **params) -> ChatRequest:
    return ChatRequest.make([{"role": "user", "content": text}], params or None)


def test_success_fills_tokens_latency_and_sends_model(mock_server, transport):
    r = call(make(mock_server, transport), req("count these four words", max_tokens=8))
    assert r.ok and r.text == "mock reply to: count these four words"
    assert (r.prompt_tokens, r.completion_tokens) == (4, 7)  # word counts
    assert r.attempts == 1 and r.retries == 0 and r.latency_s > 0
    assert r.cost is None  # a custom endpoint has no known price
    assert mock_server.bodies[-1]["model"] == "mock-model" and mock_server.bodies[-1]["max_tokens"] == 8


def test_retries_on_429_500_503_then_succeeds(mock_server, transport, sleeps):
    mock_server.configure(script=["429", "500", "503"])
    r = call(make(mock_server, transport, sleep=sleeps), req())
    assert r.ok and r.attempts == 4 and r.retries == 3
    assert mock_server.requests == 4 and mock_server.outcomes == {"429": 1, "500": 1, "503": 1, "ok": 1}
    assert len(sleeps) == 3  # one backoff before each retry


def test_backoff_without_retry_after_is_capped_jitter(mock_server, transport, sleeps):
    mock_server.configure(script=["500", "500", "500"], retry_after=None)
    r = call(make(mock_server, transport, sleep=sleeps, backoff_base_s=0.01, backoff_max_s=0.025), req())
    assert r.ok and r.retries == 3
    # the first failure follows a success (none yet: streak 1), so it is retried at once; then
    # full jitter under min(backoff_max_s, backoff_base_s · 2^k), k = streak − 2: ≤ 0.01, 0.02
    assert len(sleeps) == 2
    for delay, cap in zip(sleeps, (0.01, 0.02), strict=True):
        assert 0 <= delay <= cap


def test_backoff_doubles_with_the_endpoints_or_the_requests_failures_in_a_row():
    """A request's first two failures among successes (streak 1) are retried at once; from its
    third failure, or two failed answers of the endpoint in a row, full jitter under base · 2^k
    with k the larger of (the request's failures − 3) and (streak − 2), at most its own retries."""
    cfg = ModelConfig(
        provider="litellm", name="m", api_base="http://127.0.0.1:9/v1", backoff_base_s=1.0, backoff_max_s=60.0
    )
    client = EndpointClient(cfg)
    cases = ((0, 1, 0.0), (1, 1, 0.0), (0, 2, 1.0), (2, 1, 1.0), (3, 1, 2.0), (3, 3, 2.0), (3, 9, 8.0))
    cases += ((4, 1, 4.0), (9, 9, 60.0))
    for retry, streak, cap in cases:
        asked = [client._backoff(retry, None, streak) for _ in range(300)]
        if cap == 0:
            assert set(asked) == {0.0}
        else:
            assert cap * 0.8 < max(asked) <= cap  # full jitter under the cap (300 draws near it)
    assert client._backoff(0, 5.0, 1) >= 5.0  # a Retry-After is waited out, streak or not


class BurstSender:
    """Stands in for an endpoint's transport, on a virtual clock: this request's attempts fail
    with HTTP 500 until `burst_s` (a flaky replica, a deploy), each taking `latency_s`, while the
    endpoint answers the other requests in flight: at concurrency 64 and 90% success the ~60
    answers between two of its attempts leave the endpoint's streak at 0."""

    def __init__(self, clock: list[float], ep: Any, burst_s: float, latency_s: float = 0.1) -> None:
        self.clock, self.ep, self.burst_s, self.latency_s = clock, ep, burst_s, latency_s
        self.sent: list[float] = []

    async def send(self, messages: Any, params: Any, key: Any, timeout_s: float) -> Any:
        from selfalign.llm.transport import Reply, TransportError

        at = self.clock[0]
        self.sent.append(at)
        self.clock[0] += self.latency_s
        self.ep.streak = 0  # the others' answers meanwhile were successes
        if at < self.burst_s:
            raise TransportError("retry", "mock error 500", 500)
        return Reply(text="ok", prompt_tokens=1, completion_tokens=1)

    async def aclose(self) -> None:
        return None


def test_a_request_failing_among_successes_backs_off_and_outlives_a_burst(monkeypatch):
    """Issue 20, item 8: with the endpoint's streak reset by the others' successes, every retry
    of an unlucky request went at once, so its 6 attempts (max_retries=5) were spent in 0.6 s
    and a 1.5 s burst of errors lost the row ("gave up after 6 attempts: HTTP 500"). Now, after
    two retries at once, its own failures back it off: waits of 0.5 then 1 s (jitter fixed at
    the middle), and the 5th attempt lands after the burst."""
    clock = [0.0]

    class VirtualSleep(SleepRecorder):
        async def sleep(self, delay: float) -> None:
            clock[0] += delay
            await super().sleep(delay)

    recorder = VirtualSleep()
    monkeypatch.setattr(endpoint_client.random, "uniform", lambda lo, hi: (lo + hi) / 2)
    cfg = ModelConfig(
        provider="litellm",
        name="m",
        api_base="http://127.0.0.1:9/v1",
        max_retries=5,
        backoff_base_s=1.0,
        backoff_max_s=60.0,
    )
    client = EndpointClient(cfg, transport="direct", sleep=recorder)
    ep = client.pool.endpoints[0]
    ep.send = sender = BurstSender(clock, ep, burst_s=1.5)
    r = call(client, req())
    assert r.ok, r.error
    assert r.attempts == 5 and len(sender.sent) == 5
    assert sender.sent[:3] == pytest.approx([0.0, 0.1, 0.2])  # two failures among successes: at once
    assert recorder.asked == pytest.approx([0.5, 1.0])  # then its own failures back it off


def test_a_wait_for_the_requests_own_failures_is_not_ended_by_the_others_successes(monkeypatch):
    """The early end of a backoff (another request succeeds with slots idle) says the endpoint
    answers again: it ends a wait the endpoint's streak asked for, not the wait of a request
    that failed three times while the others succeeded (that would send it back into the burst
    at once, in the run's tail where slots are idle)."""
    clock = [0.0]
    gate = asyncio.Event()

    class GatedSleep(SleepRecorder):
        async def sleep(self, delay: float) -> None:
            self.asked.append(delay)
            await gate.wait()  # the backoff lasts until the test opens the gate
            clock[0] += delay

    recorder = GatedSleep()
    cfg = ModelConfig(provider="litellm", name="m", api_base="http://127.0.0.1:9/v1", max_retries=5)
    client = EndpointClient(cfg, transport="direct", sleep=recorder)
    ep = client.pool.endpoints[0]
    ep.send = sender = BurstSender(clock, ep, burst_s=0.25)

    async def main() -> Any:
        task = asyncio.ensure_future(client.complete(req()))
        while not (recorder.asked or task.done()):  # three failures at once, then its own backoff
            await asyncio.sleep(0)
        room = client._room_event()
        room.set()  # the pulse another request's success with slots idle sends
        room.clear()
        for _ in range(20):
            await asyncio.sleep(0)
        waited = len(sender.sent), task.done()
        gate.set()
        return waited, await task

    (sent, done), r = asyncio.run(main())
    assert (sent, done) == (3, False)  # still waiting out its backoff after the pulse
    assert r.ok and r.attempts == 4


def test_the_endpoint_streak_counts_failed_answers_in_a_row(mock_server, transport, sleeps):
    client = make(mock_server, transport, sleep=sleeps)
    ep = client.pool.endpoints[0]
    mock_server.configure(script=["500", "500"])
    assert call(client, req()).ok
    assert ep.streak == 0  # the third attempt succeeded
    mock_server.configure(script=["500"] * 4, retry_after=None)
    assert not call(client, req()).ok  # max_retries=3: four failed answers
    assert ep.streak == 4


def test_a_backoff_ends_when_another_request_succeeds_with_slots_idle(mock_server, transport, monkeypatch):
    """Our own backoff (no Retry-After) yields to idle capacity: once a later request succeeds
    while slots are idle, the one waiting retries at once instead of after its delay (here
    forced to 1000 s: without the early end the guard below would fire)."""
    monkeypatch.setattr(endpoint_client.random, "uniform", lambda lo, hi: hi)
    client = make(mock_server, transport, backoff_base_s=1000.0, backoff_max_s=1000.0)
    mock_server.configure(script=["500", "500"], retry_after=None)  # the second one (streak 2) waits

    async def main():
        try:
            first = asyncio.ensure_future(client.complete(req("unlucky")))
            while not (client.active == 1 and client.wanting == 0):  # in its backoff
                await asyncio.sleep(0.01)
            second = await client.complete(req("lucky"))
            return await asyncio.wait_for(first, 30), second
        finally:
            await client.aclose()

    first, second = asyncio.run(asyncio.wait_for(main(), 60))
    assert first.ok and first.attempts == 3 and second.ok and second.attempts == 1
    assert mock_server.requests == 4


def test_a_retry_after_is_waited_out_even_with_slots_idle(mock_server, transport, sleeps):
    mock_server.configure(script=["429"], retry_after="2")
    r = call(make(mock_server, transport, sleep=sleeps), req())
    assert r.ok and len(sleeps) == 1 and 2.0 <= sleeps[0] <= 2.2  # asyncio.sleep, not the pulse


def test_gives_up_after_budget_without_raising(mock_server, transport, sleeps):
    mock_server.configure(script=["429"] * 3)
    r = call(make(mock_server, transport, sleep=sleeps, max_retries=2), req())
    assert not r.ok and r.text is None
    assert "gave up after 3 attempts" in (r.error or "") and "429" in (r.error or "")
    assert r.retries == 2 and mock_server.requests == 3
    assert len(sleeps) == 2  # no backoff after the last attempt


def test_retry_after_seconds_is_honoured(mock_server, transport, sleeps):
    mock_server.configure(script=["429"], retry_after="600")
    r = call(make(mock_server, transport, sleep=sleeps, backoff_max_s=0.01), req())
    assert r.ok and r.retries == 1
    # the server's 600 s (plus up to 10 % jitter), not the backoff's ≤ 0.01 s
    assert len(sleeps) == 1 and 600 <= sleeps[0] <= 660


def test_retry_after_beyond_the_cap_is_capped(mock_server, transport, sleeps):
    mock_server.configure(script=["503"], retry_after="86400")
    r = call(make(mock_server, transport, sleep=sleeps), req())
    assert r.ok and len(sleeps) == 1
    cap = endpoint_client.MAX_RETRY_AFTER_S
    assert cap <= sleeps[0] <= cap * 1.1


def test_retry_after_http_date_is_honoured(mock_server, transport, sleeps):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    mock_server.configure(script=["503"], retry_after=when)
    r = call(make(mock_server, transport, sleep=sleeps, backoff_max_s=0.01), req())
    assert r.ok and r.retries == 1
    # whole-second dates: 119–120 s from when it was written, + ≤ 10 % jitter; the lower bound
    # leaves a minute for a slow machine between writing the date and reading it
    assert len(sleeps) == 1 and 60 <= sleeps[0] <= 132


def test_parse_retry_after(monkeypatch):
    now = 1_700_000_000.0
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.25") == 0.25
    monkeypatch.setattr(time, "time", lambda: now)  # parse_retry_after's "now", frozen
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True)) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True)) == 0.0
    assert parse_retry_after("soon-ish") is None


def test_timeout_is_retried(mock_server, transport):
    # The mock answers "ok" once its hang is over: a second attempt (and a "timeout" outcome
    # followed by an "ok" one) happens only because the client's own timeout cut the first.
    mock_server.configure(script=["timeout"], hang_s=60)
    r = call(make(mock_server, transport, timeout_s=1.0), req())
    assert r.ok and r.attempts == 2
    assert mock_server.requests == 2 and mock_server.outcomes == {"timeout": 1, "ok": 1}


def test_timeouts_exhaust_budget_into_error(mock_server, transport):
    mock_server.configure(script=["timeout"] * 2, hang_s=5)
    r = call(make(mock_server, transport, timeout_s=0.3, max_retries=1), req())
    assert not r.ok and "timeout" in (r.error or "").lower()


def test_malformed_bodies_are_retried(mock_server, transport):
    mock_server.configure(script=["malformed", "nochoices"])
    r = call(make(mock_server, transport), req())
    assert r.ok and r.attempts == 3


def test_connection_refused_is_retried_then_reported(mock_server, transport):
    port = mock_server.port
    mock_server.stop()  # nothing listens there any more
    cfg = dict(
        provider="litellm",
        name="m",
        api_base=f"http://127.0.0.1:{port}/v1",
        max_retries=1,
        backoff_base_s=0.01,
        backoff_max_s=0.01,
        timeout_s=2,
    )
    r = call(EndpointClient(ModelConfig(**cfg), transport=transport), req())
    assert not r.ok and r.attempts == 2 and "gave up" in (r.error or "")


@pytest.mark.parametrize("status,words", [("400", "rejected the request"), ("404", "not found")])
def test_bad_request_and_not_found_fail_fast(mock_server, transport, status, words):
    mock_server.configure(script=[status])
    with pytest.raises(LLMError, match=words):
        call(make(mock_server, transport), req())
    assert mock_server.requests == 1


class GatedMock(MockServer):
    """A mock that holds requests to make the client's scheduling visible in counts.

    The request whose text is `hold` is held until `total` requests have arrived; every other
    request is held until `limit` are in flight (or the last one has arrived). A client that
    keeps `limit` slots busy passes both gates: the others flow through the free slots while
    `hold` waits. One that sends lock-step batches (or fewer than `limit` at once) stalls until
    `cap_s` and leaves the counts short. `seen_by_hold` is how many requests had arrived when
    the held one was let go.
    """

    def __init__(self, hold: str, total: int, limit: int, cap_s: float = 30.0) -> None:
        super().__init__()
        self.hold, self.total, self.limit, self.cap_s = hold, total, limit, cap_s
        self.seen_by_hold: int | None = None

    async def _wait(self, done: Any) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cap_s  # a safety cap, only reached by a broken client
        while not done() and loop.time() < deadline:
            await asyncio.sleep(0.002)

    async def _respond(self, outcome: str, body: dict[str, Any], req: Any) -> Any:
        texts = [m.get("content") for m in body.get("messages", [])]
        if self.hold in texts:
            await self._wait(lambda: self.requests >= self.total)
            self.seen_by_hold = self.requests
        else:
            await self._wait(lambda: self.in_flight >= self.limit or self.requests >= self.total)
        return await super()._respond(outcome, body, req)


def test_concurrency_limit_is_respected_and_saturated(transport):
    mock_server = GatedMock(hold="row 0", total=40, limit=5).start()
    client = make(mock_server, transport, concurrency=5, timeout_s=120)

    async def main():
        try:
            return await asyncio.gather(*(client.complete(req(f"row {i}")) for i in range(40)))
        finally:
            await client.aclose()

    try:
        results = asyncio.run(main())
    finally:
        mock_server.stop()
    assert all(r.ok and r.attempts == 1 for r in results)
    assert mock_server.requests == 40
    assert mock_server.max_in_flight == 5 and client.max_in_flight == 5  # the limit, reached, never passed
    # the other 39 went through the 4 free slots while row 0 was still in flight (no lock-step)
    assert mock_server.seen_by_hold == 40


def test_extra_params_sent_and_request_params_win(mock_server, transport):
    client = make(mock_server, transport, extra_params={"top_k": 7, "temperature": 0.1})
    call(client, req(temperature=0.9))
    body = mock_server.bodies[-1]
    assert body["top_k"] == 7 and body["temperature"] == 0.9


@pytest.mark.parametrize("supported", [True, False])
def test_response_format_dropped_unless_supported(mock_server, transport, supported):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    client = make(mock_server, transport, supports_json_schema=supported)
    call(client, req(response_format=fmt))
    assert ("response_format" in mock_server.bodies[-1]) is supported


def test_works_across_event_loops(mock_server, transport):
    client = make(mock_server, transport, concurrency=2)

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
        EndpointClient(ModelConfig(provider="litellm", name="x", api_key_env="SELFALIGN_TEST_NOKEY"))


def test_key_is_sent_but_never_stored(mock_server, transport, monkeypatch):
    monkeypatch.setenv("SELFALIGN_TEST_KEY", SECRET)
    mock_server.configure(require_key=SECRET)
    client = make(mock_server, transport, api_key_env="SELFALIGN_TEST_KEY")
    assert call(client, req()).ok
    assert mock_server.headers[-1]["Authorization"] == f"Bearer {SECRET}"
    for text in (repr(client), client.identity, repr(vars(client)), repr(client.cfg)):
        assert SECRET not in text


def test_wrong_key_fails_fast_and_never_leaks(mock_server, transport, monkeypatch, caplog, capsys):
    monkeypatch.setenv("SELFALIGN_TEST_KEY", SECRET)
    mock_server.configure(require_key="the-right-key")  # the 401 body echoes the key we sent
    caplog.set_level(logging.DEBUG)
    client = make(mock_server, transport, api_key_env="SELFALIGN_TEST_KEY")
    with pytest.raises(LLMError) as info:
        call(client, req())
    assert mock_server.requests == 1  # no retry on 401
    msg = str(info.value)
    assert "authentication failed" in msg and "SELFALIGN_TEST_KEY" in msg
    shown = "".join(traceback.format_exception(info.value))
    out = capsys.readouterr()
    for text in (msg, shown, caplog.text, out.out, out.err):
        assert SECRET not in text
        assert SECRET[8:] not in text  # not even the tail of it
