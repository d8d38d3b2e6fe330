"""CPU per call of the endpoint client alone (llm/client.py and what it uses: pool, limits,
gate), without a server: an in-process transport answers each call at once, so what is left is
the client's own bookkeeping. N calls submitted together at concurrency C, on 1 and on 3 URLs.

    .venv/bin/python benchmarks/llm_client/bench_client_cpu.py --n 20000 --c 64
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from selfalign.llm.base import ChatRequest
from selfalign.llm.client import EndpointClient
from selfalign.llm.config import ModelConfig
from selfalign.llm.transport import Reply


class Instant:
    """A transport that answers at once (one event-loop turn)."""

    async def send(self, messages: Any, params: Any, key: Any, timeout_s: float) -> Reply:
        await asyncio.sleep(0)
        return Reply(text="ok", prompt_tokens=1, completion_tokens=1)

    async def aclose(self) -> None:
        return None


def run(n: int, conc: int, urls: int) -> float:
    """CPU ms per call."""
    bases = [f"http://127.0.0.1:{9 + i}/v1" for i in range(urls)]
    base = bases if urls > 1 else bases[0]
    cfg = ModelConfig(provider="litellm", name="m", api_base=base, concurrency=conc)
    client = EndpointClient(cfg, transport="direct")
    for e in client.pool.endpoints:
        e.send = Instant()
    reqs = [ChatRequest.make([("user", f"r{i}")], {"max_tokens": 8}) for i in range(n)]

    async def go() -> list[Any]:
        return await asyncio.gather(*(client.complete(r) for r in reqs))

    start = time.process_time()
    assert all(r.ok for r in asyncio.run(go()))
    return 1000 * (time.process_time() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--c", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    for urls in (1, 3):
        best = min(run(a.n, a.c, urls) for _ in range(a.repeat))
        print(f"urls={urls} n={a.n} c={a.c}: {best:.3f} CPU ms per call (best of {a.repeat})")


if __name__ == "__main__":
    main()
