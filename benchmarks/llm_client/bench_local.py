"""Embedded model throughput: one request alone vs many in flight, raw HTTP vs through LLMSession.

    .venv/bin/python benchmarks/llm_client/bench_local.py --parallel 1 2 4 --requests 8 --tokens 64

For each n_parallel it starts the embedded server (as model=local does) and measures
  single   one request at a time: decode tok/s of a lone request
  raw      `requests` calls at concurrency n_parallel straight to the server (AsyncOpenAI)
  session  the same calls through LLMSession (EndpointClient + cache + accounting), fresh cache
Completions use ignore_eos so every call yields exactly --tokens tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from selfalign.llm.base import ChatRequest
from selfalign.llm.cache import ResponseCache
from selfalign.llm.config import ModelConfig
from selfalign.llm.session import LLMSession, close_all


def prompts(n: int, seed: int) -> list[str]:
    return [f"Write a short story about a robot named R{seed}-{i}." for i in range(n)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure(parallel: int, n_req: int, tokens: int) -> dict[str, Any]:
    from openai import AsyncOpenAI

    tmp = Path(tempfile.mkdtemp(prefix="bench-local-"))
    cfg = ModelConfig(
        provider="local",
        name="qwen2.5-coder-0.5b-instruct-q4_k_m",
        n_ctx=1024 * parallel,
        n_parallel=parallel,
        concurrency=parallel,
        timeout_s=600,
        supports_json_schema=True,
    )
    t0 = time.perf_counter()
    session = LLMSession({"default": cfg}, tmp, ResponseCache(tmp / "cache.sqlite"))
    client: Any = session.client(None)  # starts the server
    ready_s = time.perf_counter() - t0
    url = client.server.url + "/v1"
    params = {"max_tokens": tokens, "temperature": 0.7, "ignore_eos": True}
    out: dict[str, Any] = {"n_parallel": parallel, "ready_s": round(ready_s, 2)}

    raw = AsyncOpenAI(base_url=url, api_key="none")
    sem = asyncio.Semaphore(parallel)

    async def one(text: str) -> int:
        async with sem:
            r = await raw.chat.completions.create(
                model="local",
                messages=[{"role": "user", "content": text}],
                max_tokens=tokens,
                temperature=0.7,
                extra_body={"ignore_eos": True},
            )
        return r.usage.completion_tokens if r.usage else 0

    t = time.perf_counter()
    n_tok = await one(prompts(1, 0)[0])
    out["single_tok_s"] = round(n_tok / (time.perf_counter() - t), 1)

    t = time.perf_counter()
    n_tok = sum(await asyncio.gather(*(one(p) for p in prompts(n_req, 1))))
    out["raw_tok_s"] = round(n_tok / (time.perf_counter() - t), 1)

    reqs = [
        ChatRequest.make([{"role": "user", "content": p}], params, stage="bench") for p in prompts(n_req, 2)
    ]
    t = time.perf_counter()
    res = await session.complete("bench", None, reqs)
    out["session_tok_s"] = round(sum(r.completion_tokens for r in res) / (time.perf_counter() - t), 1)
    out["session_failed"] = sum(not r.ok for r in res)
    out["server_rss_mb"] = round(rss_mb(client.server.proc.pid))
    await raw.close()
    await close_all()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    print(f"# load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    rows = []
    for p in a.parallel:
        rows.append(asyncio.run(measure(p, a.requests, a.tokens)))
        print(json.dumps(rows[-1]), flush=True)
    print(
        "\n| n_parallel | ready s | 1 request tok/s | raw aggregate tok/s | "
        "through LLMSession tok/s | server RSS MB |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n_parallel']} | {r['ready_s']} | {r['single_tok_s']} | {r['raw_tok_s']} | "
            f"{r['session_tok_s']} | {r['server_rss_mb']} |"
        )


if __name__ == "__main__":
    main()
