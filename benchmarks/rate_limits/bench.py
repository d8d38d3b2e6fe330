"""Adaptive concurrency and RPM limits of EndpointClient against tests/mockserver.py.

cap      a server that answers 429 (Retry-After) above 16 requests in flight: a client set to
         concurrency=64 with adaptive concurrency (min_concurrency=1) against one set to exactly
         16; throughput over the whole run, and 429s as a share of requests after the first 10 s
rpm      model.rpm=600 for 60 s against a fast server: requests that arrived in that minute

python benchmarks/rate_limits/bench.py cap --seconds 40
python benchmarks/rate_limits/bench.py rpm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from mockserver import spawn  # noqa: E402

sys.path.insert(0, str(ROOT))

from selfalign.llm.base import ChatRequest  # noqa: E402
from selfalign.llm.client import EndpointClient  # noqa: E402
from selfalign.llm.config import ModelConfig  # noqa: E402


def mock_stats(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/_stats") as r:
        return json.loads(r.read())


async def drive(
    client: EndpointClient, workers: int, seconds: float, base: str, mark_s: float
) -> dict[str, Any]:
    """`workers` loops sending requests for `seconds`; server counters at `mark_s` and the end."""
    ok = 0
    end = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal ok
        i = 0
        while time.perf_counter() < end:
            res = await client.complete(ChatRequest.make([("user", f"w{w} r{i}")], {"max_tokens": 8}))
            i += 1
            ok += int(res.ok and time.perf_counter() <= end)

    async def mark() -> dict[str, Any]:
        await asyncio.sleep(mark_s)
        return await asyncio.to_thread(mock_stats, base)

    start = time.perf_counter()
    at_mark = asyncio.ensure_future(mark())
    await asyncio.gather(*(worker(w) for w in range(workers)))
    wall = time.perf_counter() - start
    final = mock_stats(base)
    await client.aclose()
    early = await at_mark
    after = final["requests"] - early["requests"]
    refused = final["over_cap"] - early["over_cap"]
    return {
        "ok": ok,
        "ok_per_s": round(ok / seconds, 1),
        "wall_s": round(wall, 1),
        "requests": final["requests"],
        "requests_at_mark": early["requests"],
        "429": final["over_cap"],
        "429_share_after_mark": round(refused / max(after, 1), 4),
        "final_limit": round(client.limit.limit, 1),
    }


def client(url: str, **kw: Any) -> EndpointClient:
    cfg = dict(provider="litellm", name="mock", api_base=f"{url}/v1", max_retries=100, timeout_s=30.0)
    return EndpointClient(ModelConfig(**{**cfg, **kw}))


def bench_cap(seconds: float, latency: float) -> None:
    results = {}
    for name, kw in (
        ("fixed 16", {"concurrency": 16}),
        ("adaptive 64 (floor 1)", {"concurrency": 64, "min_concurrency": 1}),
    ):
        proc, url = spawn("--latency", str(latency), "--max-concurrency", "16", "--retry-after", "1")
        try:
            results[name] = asyncio.run(drive(client(url, **kw), 96, seconds, url, 10.0))
        finally:
            proc.terminate()
            proc.wait()
        print(name, results[name], flush=True)
    ratio = results["adaptive 64 (floor 1)"]["ok"] / max(results["fixed 16"]["ok"], 1)
    print(f"throughput adaptive / fixed = {ratio:.3f}")


def bench_rpm(seconds: float, rpm: int) -> None:
    proc, url = spawn("--latency", "0.05")
    try:
        c = client(url, concurrency=64, rpm=rpm)
        out = asyncio.run(drive(c, 64, seconds, url, seconds))
    finally:
        proc.terminate()
        proc.wait()
    got = out["requests_at_mark"]  # requests that reached the server in the window
    per_min = got / seconds * 60
    print(
        f"rpm={rpm} for {seconds:g}s: {got} requests arrived "
        f"({per_min:.1f}/min, {per_min / rpm - 1:+.2%} of the limit); {out}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["cap", "rpm"])
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--latency", type=float, default=0.2, help="cap: server latency per call")
    ap.add_argument("--rpm", type=int, default=600)
    a = ap.parse_args()
    if a.which == "cap":
        bench_cap(a.seconds or 40.0, a.latency)
    else:
        bench_rpm(a.seconds or 60.0, a.rpm)


if __name__ == "__main__":
    main()
