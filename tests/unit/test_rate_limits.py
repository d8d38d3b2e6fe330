"""Rate limits and adaptive concurrency (selfalign/llm/limits.py and the client using them).

Counts, not times: requests and 429s at the mock server, the client's in-flight maximum, the
AIMD limit's value after known signals, the token bucket's capacity after a refund. The one
timing check is a lower bound (the RPM bucket never lets a request out early), which a busy
machine cannot break: it only makes requests later."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import no_sleep  # noqa: E402
from mockserver import MockServer  # noqa: E402

from selfalign import aio  # noqa: E402
from selfalign.llm.base import ChatRequest  # noqa: E402
from selfalign.llm.client import EndpointClient  # noqa: E402
from selfalign.llm.config import ModelConfig  # noqa: E402
from selfalign.llm.limits import AdaptiveLimit, RateLimits  # noqa: E402


def client(mock_server: MockServer, sleep: Any = asyncio.sleep, **kw: Any) -> EndpointClient:
    cfg = dict(
        provider="litellm",
        name="mock-model",
        api_base=mock_server.url,
        max_retries=50,
        backoff_base_s=0.01,
        backoff_max_s=0.01,
        timeout_s=10.0,
    )
    return EndpointClient(ModelConfig(**{**cfg, **kw}), sleep=sleep)


def send(c: EndpointClient, n: int, tag: str = "") -> list:
    reqs = [ChatRequest.make([("user", f"hello {tag}{i}")], {"max_tokens": 8}) for i in range(n)]

    async def go() -> list:
        try:
            return list(await asyncio.gather(*(c.complete(r) for r in reqs)))
        finally:
            await c.aclose()

    return aio.run(go())


def test_fixed_limit_is_a_plain_semaphore() -> None:
    async def go() -> tuple[int, float]:
        lim = AdaptiveLimit(4, 4)
        tasks = [asyncio.ensure_future(lim.acquire()) for _ in range(6)]
        for _ in range(5):
            await asyncio.sleep(0)
        held = lim.in_flight
        lim.release(0, "overload")  # a fixed limit never moves
        for _ in range(5):
            await asyncio.sleep(0)
        for t in tasks:
            t.cancel()
        return held, lim.limit

    held, limit = aio.run(go())
    assert (held, limit) == (4, 4.0)


def test_aimd_cuts_once_per_epoch_and_grows_between_floor_and_ceiling() -> None:
    lim = AdaptiveLimit(2, 16)
    lim.in_flight = 2
    lim.release(0, "overload")
    assert lim.limit == pytest.approx(14.4) and lim.epoch == 1
    lim.release(0, "overload")  # sent before the cut: the same burst, no second cut
    assert lim.limit == pytest.approx(14.4) and lim.cuts == 1
    for _ in range(100):
        lim.in_flight = 1
        lim.release(lim.epoch, "overload")
    assert lim.limit == 2.0  # the floor
    for _ in range(10_000):
        lim.in_flight = 1
        lim.release(lim.epoch, "ok")
    assert lim.limit == 16.0  # the ceiling
    lim.in_flight = 1
    lim.release(lim.epoch, "other")  # a 500 says nothing about load
    assert lim.limit == 16.0 and lim.status() == "conc 16/16"
    assert AdaptiveLimit(8, 8).status() == ""


def test_a_cancelled_waiter_passes_its_slot_on() -> None:
    async def go() -> int:
        lim = AdaptiveLimit(1, 1)
        await lim.acquire()
        a = asyncio.ensure_future(lim.acquire())
        b = asyncio.ensure_future(lim.acquire())
        await asyncio.sleep(0)
        lim.release(0, "ok")  # wakes a …
        a.cancel()  # … which is cancelled before it runs: b must get the slot
        for _ in range(5):
            await asyncio.sleep(0)
        got = int(b.done())
        b.cancel()
        return got

    assert aio.run(go()) == 1


def test_token_bucket_refund_and_debt() -> None:
    async def go() -> tuple[bool, bool, bool]:
        r = RateLimits(None, 6000)  # a bucket of 600 tokens (6 s of 100 tokens/s)
        charged = await r.acquire(10_000)  # larger than the bucket: charged the whole bucket
        full = r.tokens.has_capacity(100)  # type: ignore[union-attr]
        r.correct(charged, 10)  # it used 10: the rest comes back at once
        refunded = r.tokens.has_capacity(500)  # type: ignore[union-attr]
        r.correct(10, 2000)  # it used far more than charged: later calls wait
        return full, refunded, r.tokens.has_capacity(1)  # type: ignore[union-attr]

    assert aio.run(go()) == (False, True, False)


def test_adaptive_client_converges_to_the_server_cap(mock_server) -> None:
    mock_server.configure(max_concurrency=8, latency_s=0.02, retry_after="0")
    c = client(mock_server, concurrency=32, min_concurrency=1, sleep=no_sleep)
    assert all(r.ok for r in send(c, 200, "warm"))  # converging from 32 down to the cap
    mock_server.reset()
    c.max_in_flight = 0
    assert all(r.ok for r in send(c, 300))
    assert c.max_in_flight <= 9  # at most one slot above the cap, while probing
    assert mock_server.over_cap <= 0.1 * 300
    assert 7 <= c.limit.limit < 10 and c.concurrency_status().startswith("conc ")


def test_fixed_client_keeps_hitting_the_cap(mock_server) -> None:
    """The contrast that makes the test above mean something: without min_concurrency the
    client keeps 32 in flight and most of what it sends above the cap is refused."""
    mock_server.configure(max_concurrency=8, latency_s=0.02, retry_after="0")
    # Retry-After: 0 and an instant 429 let a refused request spin: within one 20 ms window it
    # can be refused 50 times, so the retries must not run out (that was this test's flakiness)
    c = client(mock_server, concurrency=32, max_retries=100_000, sleep=no_sleep)
    assert all(r.ok for r in send(c, 100))
    # > 0.3 refusals per request (the adaptive client: ≤ 0.1); how many more depends on the
    # machine's load, since the mock runs in this process
    assert c.max_in_flight == 32 and mock_server.over_cap > 30
    assert c.concurrency_status() == ""


def test_rpm_bucket_never_sends_early(mock_server) -> None:
    c = client(mock_server, concurrency=64, rpm=600)  # 10 per second, a burst of 5
    sent: list[float] = []
    transport = c.pool.endpoints[0].send
    real = transport.send

    async def record(*args: Any) -> Any:
        sent.append(asyncio.get_running_loop().time())
        return await real(*args)

    transport.send = record  # type: ignore[method-assign]
    assert all(r.ok for r in send(c, 15))
    assert mock_server.requests == 15
    sent.sort()
    for i, t in enumerate(sent):
        assert t - sent[0] >= (i + 1 - 5) / 10 - 0.02, (i, t - sent[0])


def test_config_checks_the_new_keys() -> None:
    with pytest.raises(ValueError, match="min_concurrency must be between 1 and concurrency"):
        ModelConfig(provider="litellm", concurrency=4, min_concurrency=8)
    with pytest.raises(ValueError, match="rpm must be > 0"):
        ModelConfig(provider="litellm", rpm=0)
