"""The LLM client stack as docs/architecture.md draws it (issue 21, section 3): litellm only in
its adapter, an endpoint client of at most 300 lines, one priority gate shared by the endpoint
pool and every adaptive limit, one server handle for the embedded server, no test-only hooks."""

from __future__ import annotations

import ast
import asyncio
from typing import Any

import pytest
from helpers import ROOT

from selfalign.llm import local
from selfalign.llm.client import EndpointClient
from selfalign.llm.config import ModelConfig
from selfalign.llm.gate import PRIORITY, PriorityGate
from selfalign.llm.limits import AdaptiveLimit
from selfalign.llm.server_handle import ServerHandle

LLM = ROOT / "selfalign" / "llm"


def _imports(path: Any) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_litellm_is_imported_by_its_adapter_only() -> None:
    importers = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "selfalign").rglob("*.py") if "litellm" in _imports(p)
    )
    assert importers == ["selfalign/llm/litellm_adapter.py"]


def test_the_client_stack_modules_stay_small() -> None:
    for name in ("client", "endpoints", "limits", "gate", "litellm_adapter", "transport", "server_handle"):
        lines = len((LLM / f"{name}.py").read_text().splitlines())
        assert lines <= 300, f"selfalign/llm/{name}.py has {lines} lines"


def test_no_test_only_hooks_on_the_client() -> None:
    assert not hasattr(EndpointClient, "_send")  # tests reach the transport through the pool
    assert "sleep" in EndpointClient.__init__.__code__.co_varnames  # backoffs are injectable


def test_the_pool_and_every_limit_wait_at_one_kind_of_gate() -> None:
    cfg = ModelConfig(
        provider="litellm", name="m", api_base=["http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1"]
    )
    client = EndpointClient(cfg, transport="direct")
    assert isinstance(client.pool.gate, PriorityGate)
    assert all(isinstance(e.limit.gate, PriorityGate) for e in client.pool.endpoints)
    assert not any(hasattr(o, "_waiters") for o in (client.pool, *[e.limit for e in client.pool.endpoints]))


def test_the_gate_serves_later_stages_first_then_in_arrival_order() -> None:
    async def main() -> list[str]:
        limit, served = AdaptiveLimit(1, 1), []
        await limit.acquire()  # the one slot is taken: everyone below queues

        async def want(name: str, stage: int) -> None:
            PRIORITY.set(stage)
            await limit.acquire()
            served.append(name)
            limit.release(limit.epoch, "other")

        tasks = [asyncio.ensure_future(want(n, s)) for n, s in (("a0", 0), ("b1", 1), ("c0", 0), ("d1", 1))]
        await asyncio.sleep(0)
        limit.release(limit.epoch, "other")
        await asyncio.gather(*tasks)
        return served

    assert asyncio.run(main()) == ["b1", "d1", "a0", "c0"]


def test_a_cancelled_waiter_passes_its_wake_on() -> None:
    async def main() -> bool:
        gate, room = PriorityGate(), [False]
        first = asyncio.ensure_future(gate.wait_until(lambda: room[0]))
        second = asyncio.ensure_future(gate.wait_until(lambda: room[0]))
        await asyncio.sleep(0)
        room[0] = True
        gate.wake(1)  # wakes `first` …
        first.cancel()  # … which leaves without taking the room: `second` must get it
        await asyncio.wait_for(second, 1)
        return second.done() and not second.cancelled()

    assert asyncio.run(main())


class Owned:
    def __init__(self) -> None:
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1


@pytest.mark.parametrize("owned", [True, False])
def test_one_server_handle_stopped_only_by_its_owner(owned: bool) -> None:
    proc = Owned()
    handle = ServerHandle("http://127.0.0.1:9", "k3y", "/m.gguf", owner=proc if owned else None)
    client = local.connect(ModelConfig(provider="local", name="local", n_ctx=4096, n_parallel=4), handle)
    assert isinstance(client, EndpointClient) and client.server is handle
    assert client.api_base == "http://127.0.0.1:9/v1" and "127.0.0.1" not in client.identity
    assert client.cfg.extra_params["max_tokens"] == 512  # the slot's share of n_ctx, halved
    asyncio.run(client.aclose())
    assert proc.stopped == int(owned)
    assert handle.borrowed() == ServerHandle("http://127.0.0.1:9", "k3y", "/m.gguf")  # no owner


def test_a_sweeps_shared_server_is_the_same_handle(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    cfg, model = ModelConfig(provider="local", name="local"), tmp_path / "m.gguf"
    table = {local.fingerprint(cfg, model): {"url": "http://127.0.0.1:9", "api_key": "k"}}
    monkeypatch.setenv(local.SHARED_ENV, __import__("json").dumps(table))
    assert local.lookup(cfg, model) == ServerHandle("http://127.0.0.1:9", "k", str(model))


def test_freed_slots_wake_one_waiter_each() -> None:
    """64 calls ending in one tick of the event loop woke 1 + 2 + … + 64 waiters (each release
    saw the slots of the waiters woken before it as free), and all but 64 queued again: ~30
    wake-ups per call, 80% of the client's CPU at concurrency 64. Now each waiter is woken once."""

    async def main() -> int:
        limit, woken = AdaptiveLimit(64, 64), [0]
        wake = limit.gate.wake

        def counted(n: int) -> None:
            before = limit.gate.woken
            wake(n)
            woken[0] += limit.gate.woken - before

        limit.gate.wake = counted  # type: ignore[method-assign]

        async def call() -> None:
            epoch = await limit.acquire()
            await asyncio.sleep(0)  # the call in flight
            limit.release(epoch, "ok")

        await asyncio.gather(*(call() for _ in range(640)))
        assert limit.in_flight == 0 and limit.gate.woken == 0 and not len(limit.gate)
        return woken[0]

    assert asyncio.run(main()) == 640 - 64  # every call past the first 64 waited, once
