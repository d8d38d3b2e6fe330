"""Several endpoints (`model.api_base` as a list) against 2–3 mock servers on 127.0.0.1: requests
spread by free capacity, each endpoint's in-flight cap, a dead endpoint taken out, probed after its
cool-down and back once it answers, and the circuit breaker once all are down.

No test measures time: the pool's clock is a fake advanced by hand, backoff sleeps take none, and
the assertions count requests at the servers and in the pool's own counters.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import no_sleep  # noqa: E402
from mockserver import MockServer  # noqa: E402

from selfalign.errors import LLMError  # noqa: E402
from selfalign.llm import endpoints  # noqa: E402
from selfalign.llm.base import ChatRequest  # noqa: E402
from selfalign.llm.client import EndpointClient  # noqa: E402
from selfalign.llm.config import ModelConfig  # noqa: E402

DEAD = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(endpoints, "time", fake)
    return fake


@pytest.fixture
def servers():
    started: list[MockServer] = []

    def start(n: int, port: int = 0, **faults: Any) -> list[MockServer]:
        new = [MockServer(**faults).start(port) for _ in range(n)]
        started.extend(new)
        return new

    yield start
    for s in started:
        s.stop()


def client(
    urls: list[str], transport: str = "direct", sleep: Any = asyncio.sleep, **kw: Any
) -> EndpointClient:
    cfg = dict(
        provider="litellm",
        name="mock-model",
        api_base=urls,
        concurrency=4,
        timeout_s=5.0,
        max_retries=3,
        backoff_base_s=0.01,
        backoff_max_s=0.01,
        endpoint_failures=3,
        endpoint_retry_s=10.0,
    )
    return EndpointClient(ModelConfig(**{**cfg, **kw}), transport=transport, sleep=sleep)


def send(c: EndpointClient, n: int, tag: str = "", on_done: Any = None) -> list:
    reqs = [ChatRequest.make([("user", f"hello {tag}{i}")], {"max_tokens": 8}) for i in range(n)]

    async def one(r: ChatRequest) -> Any:
        res = await c.complete(r)
        if on_done is not None:
            await on_done()
        return res

    async def go() -> list:
        try:
            return list(await asyncio.gather(*(one(r) for r in reqs)))
        finally:
            await c.aclose()

    return asyncio.run(go())


def test_requests_spread_with_each_endpoint_capped(servers) -> None:
    mocks = servers(3, latency_s=0.01)
    c = client([m.url for m in mocks])
    results = send(c, 90)
    assert all(r.ok and r.attempts == 1 for r in results)
    assert sum(m.requests for m in mocks) == 90
    assert all(m.requests >= 10 for m in mocks)  # spread, not all at the first one
    assert all(1 <= m.max_in_flight <= 4 for m in mocks)  # each endpoint's own concurrency
    assert c.max_in_flight <= 12
    stats = c.endpoint_stats()
    assert [stats[m.url]["requests"] for m in mocks] == [m.requests for m in mocks]


@pytest.mark.parametrize("transport", ["direct", "litellm"])
def test_dead_from_the_start_costs_no_attempt(servers, clock: Clock, transport: str) -> None:
    (a,) = servers(1)
    c = client([a.url, DEAD], transport, sleep=no_sleep)
    results = send(c, 30)
    assert all(r.ok and r.attempts == 1 for r in results)
    dead = c.pool.endpoints[1]
    assert a.requests == 30 and not dead.up and dead.counts["taken_out"] == 1
    # 3 in a row take it out; at most concurrency - 1 = 3 more were on their way by then
    assert 3 <= dead.counts["connect_failures"] == dead.counts["requests"] <= 3 + 3


def test_a_slow_endpoint_gets_a_smaller_share(servers) -> None:
    """Requests wait for a free slot at any endpoint: none is stuck in a slow server's queue."""
    fast, slow = servers(1, latency_s=0.002)[0], servers(1, latency_s=0.1)[0]
    c = client([fast.url, slow.url], concurrency=2)
    assert all(r.ok for r in send(c, 120))
    assert fast.requests + slow.requests == 120
    assert slow.requests < fast.requests / 2


def test_dead_endpoint_taken_out_probed_after_cooldown_and_back(servers, clock: Clock) -> None:
    a, b = servers(2, latency_s=0.01)
    port = b.port
    c = client([a.url, b.url], sleep=no_sleep)
    assert all(r.ok for r in send(c, 20, "warm")) and b.requests > 0
    b.stop()
    down = c.pool.endpoints[1]

    results = send(c, 40, "one down")
    assert all(r.ok and r.attempts == 1 for r in results), [(r.error, r.attempts) for r in results]  # moved
    assert not down.up and down.counts["taken_out"] == 1
    assert 3 <= down.counts["connect_failures"] <= 3 + 3  # as in the test above

    before = dict(down.counts)
    assert all(r.ok for r in send(c, 20, "cooling"))  # cool-down not over: b gets nothing
    assert down.counts == before

    clock.now += 10.0  # the cool-down is over: exactly one request probes b, still dead
    assert all(r.ok and r.attempts == 1 for r in send(c, 20, "probe"))
    assert down.counts["probes"] == 1 and down.counts["requests"] == before["requests"] + 1
    assert down.cooldown == 20.0 and not down.up  # a failed probe doubles the cool-down

    clock.now += 10.0  # half of the doubled cool-down: no probe yet
    assert all(r.ok for r in send(c, 20, "still cooling"))
    assert down.counts["probes"] == 1

    (back,) = servers(1, port=port, latency_s=0.01)  # restarted on b's port
    clock.now += 10.0
    assert all(r.ok for r in send(c, 80, "back"))
    assert down.up and down.counts["probes"] == 2 and down.cooldown == 10.0
    assert back.requests >= 10  # the restarted server has its share again
    assert sum(e.counts["taken_out"] for e in c.pool.endpoints) == 1


def test_server_killed_mid_run_every_row_completes(servers, clock: Clock) -> None:
    a, b, dead = servers(3, latency_s=0.005)
    c = client([a.url, b.url, dead.url], sleep=no_sleep)
    done = 0

    async def kill_after_30() -> None:
        nonlocal done
        done += 1
        if done == 30:
            await asyncio.get_running_loop().run_in_executor(None, dead.stop)

    results = send(c, 300, on_done=kill_after_30)
    assert len(results) == 300 and all(r.ok for r in results)
    killed = c.pool.endpoints[2]
    assert not killed.up and killed.counts["taken_out"] == 1
    assert a.requests + b.requests + dead.requests >= 300
    assert dead.requests < 300 / 3 < min(a.requests, b.requests)  # its share went to the others


def test_all_endpoints_down_trips_the_circuit_breaker(servers, clock: Clock) -> None:
    mocks = servers(2)
    for m in mocks:
        m.stop()
    c = client([m.url for m in mocks], circuit_breaker=2, max_retries=5, sleep=no_sleep)
    with pytest.raises(LLMError, match="cannot reach any of its 2 endpoints"):
        send(c, 1)
    # attempts 1-2 try both (moved, uncounted by the breaker); attempt 3 takes both out, and
    # b's failure, with no endpoint left, is the breaker's first; attempt 4 (to a) its second.
    assert all(not e.up for e in c.pool.endpoints)
    assert [e.counts["connect_failures"] for e in c.pool.endpoints] == [4, 3]


def test_all_endpoints_down_without_breaker_gives_up_per_row(servers, clock: Clock) -> None:
    mocks = servers(2)
    for m in mocks:
        m.stop()
    c = client([m.url for m in mocks], circuit_breaker=0, max_retries=2, sleep=no_sleep)
    results = send(c, 6)
    assert all(not r.ok and r.error.startswith("gave up after 3 attempts") for r in results)


def test_one_url_behaves_as_before(servers) -> None:
    (m,) = servers(1)
    one, plain = client([m.url]), client(m.url)  # type: ignore[arg-type]
    assert one.identity == plain.identity and one.label == plain.label
    assert one.endpoint_stats() == {} and len(one.pool) == 1
