"""LLM-layer benchmark: a 2-stage pipeline (instruction per row, then a response) over N rows at
concurrency C against the mock server, versus a minimal hand-written AsyncOpenAI client.

    .venv/bin/python benchmarks/llm_client/bench.py --latency 1.0 0.1 --n 2000 --c 64

Each variant runs in its own process (clean CPU time and peak RSS); the mock server runs in
another process on the same machine, as a real local endpoint would. Variants:
  hand     AsyncOpenAI + asyncio.Semaphore(C), the same 2·N calls (the reference client)
  aiohttp  raw aiohttp + Semaphore(C): the leanest Python client (httpx, under AsyncOpenAI,
           is the slow part of `hand`; litellm itself sends through aiohttp)
  litellm  litellm.acompletion + Semaphore(C): litellm's own cost, without our layer
  session  LLMSession (EndpointClient + response cache + accounting), fresh cache file; an
           api_base endpoint goes through the direct transport (selfalign/llm/transport.py)
  session_litellm  the same, with the client forced onto the litellm transport
  runner   the real pipeline (load → generate_text → generate_text) through selfalign.api.run,
           then a fully cached re-run into a new run dir (same cache file); rows stream from
           stage to stage (the default). Its efficiency is the WHOLE process's: from the
           parent's fork to the end of the first run, imports and output writing included
  runner_staged  the same with stream=false: each stage waits for all its rows
  faults   `runner` with 5% 429 + 5% 500 injected by the mock (rows lost must be 0)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mockserver import spawn  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# ---- variants (run in a child process) ------------------------------------------------------
def topics(n: int) -> list[str]:
    return [f"subject number {i} of the benchmark" for i in range(n)]


async def _two_stage(call, n: int) -> int:
    """Stage 1 then stage 2 (a stage barrier, as in the runner); returns failures."""
    inst = await asyncio.gather(*(call(f"Write one clear instruction about {t}.", 48) for t in topics(n)))
    resp = await asyncio.gather(*(call(x or "", 96) for x in inst))
    return sum(x is None for x in inst + resp)


async def v_hand(url: str, n: int, c: int) -> dict[str, Any]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="bench")
    sem = asyncio.Semaphore(c)

    async def call(text: str, max_tokens: int) -> str | None:
        async with sem:
            r = await client.chat.completions.create(
                model="mock",
                messages=[{"role": "user", "content": text}],
                max_tokens=max_tokens,
                temperature=0.7,
            )
        return r.choices[0].message.content

    t0 = time.perf_counter()
    failed = await _two_stage(call, n)
    wall = time.perf_counter() - t0
    await client.close()
    return {"wall_s": wall, "failed": failed}


async def v_aiohttp(url: str, n: int, c: int) -> dict[str, Any]:
    import aiohttp

    sem = asyncio.Semaphore(c)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as http:

        async def call(text: str, max_tokens: int) -> str | None:
            body = {
                "model": "mock",
                "messages": [{"role": "user", "content": text}],
                "max_tokens": max_tokens,
                "temperature": 0.7,
            }
            async with (
                sem,
                http.post(
                    f"{url}/chat/completions", json=body, headers={"Authorization": "Bearer bench"}
                ) as r,
            ):
                data = await r.json()
            return data["choices"][0]["message"]["content"]

        t0 = time.perf_counter()
        failed = await _two_stage(call, n)
        return {"wall_s": time.perf_counter() - t0, "failed": failed}


async def v_litellm(url: str, n: int, c: int) -> dict[str, Any]:
    # via our module: the same env and logging setup as production, applied before import
    from selfalign.llm.litellm_adapter import _litellm

    litellm = _litellm()

    sem = asyncio.Semaphore(c)
    overhead: list[float] = []

    async def call(text: str, max_tokens: int) -> str | None:
        async with sem:
            r = await litellm.acompletion(
                model="openai/mock",
                api_base=url,
                api_key="bench",
                max_retries=0,
                messages=[{"role": "user", "content": text}],
                max_tokens=max_tokens,
                temperature=0.7,
            )
        overhead.append(r._hidden_params.get("litellm_overhead_time_ms") or 0.0)
        return r.choices[0].message.content

    t0 = time.perf_counter()
    failed = await _two_stage(call, n)
    wall = time.perf_counter() - t0
    overhead.sort()
    return {
        "wall_s": wall,
        "failed": failed,
        "litellm_overhead_ms_p50": round(overhead[len(overhead) // 2], 3),
    }


async def v_session(url: str, n: int, c: int, tmp: Path, transport: str) -> dict[str, Any]:
    from selfalign.llm.base import ChatRequest
    from selfalign.llm.cache import ResponseCache
    from selfalign.llm.client import EndpointClient
    from selfalign.llm.config import ModelConfig
    from selfalign.llm.session import LLMSession

    cfg = ModelConfig(provider="litellm", name="mock", api_base=url, concurrency=c)
    client = EndpointClient(cfg, transport=transport)  # built (litellm imported) off the clock
    cache_path = tmp / "cache.sqlite"

    async def run() -> tuple[float, int]:
        s = LLMSession({"default": cfg}, tmp, ResponseCache(cache_path))
        s._clients["default"] = client  # this transport, not the automatic choice

        def reqs(stage: str, texts: list[str], max_tokens: int) -> list[ChatRequest]:
            return [
                ChatRequest.make(
                    [{"role": "user", "content": t}],
                    {"max_tokens": max_tokens, "temperature": 0.7},
                    stage=stage,
                )
                for t in texts
            ]

        t0 = time.perf_counter()
        inst = await s.complete(
            "instruction",
            None,
            reqs("instruction", [f"Write one clear instruction about {t}." for t in topics(n)], 48),
        )
        resp = await s.complete("response", None, reqs("response", [r.text or "" for r in inst], 96))
        return time.perf_counter() - t0, sum(not r.ok for r in inst + resp)

    wall, failed = await run()
    sent = _stats(url)["requests"]
    cached_wall, _ = await run()
    return {
        "wall_s": wall,
        "failed": failed,
        "cached_wall_s": cached_wall,
        "cached_sent": _stats(url)["requests"] - sent,
    }


def v_runner(url: str, n: int, c: int, tmp: Path, t0: float, extra: list[str]) -> dict[str, Any]:
    from selfalign import api

    data = tmp / "topics.jsonl"
    data.write_text("".join(json.dumps({"topic": t}) + "\n" for t in topics(n)))
    os.environ["BENCH_DATA"] = str(data)
    overrides = [
        "pipeline=bench_2stage",
        "model=openai_compatible",
        f"model.api_base={url}",
        "model.name=mock",
        f"model.concurrency={c}",
        "cache.enabled=true",
        f"cache.path={tmp / 'cache.sqlite'}",
        f"prompts.search_path=[{HERE / 'prompts'}]",
        *extra,
    ]

    def run(run_dir: Path) -> tuple[float, dict[str, Any]]:
        t0 = time.perf_counter()
        df, manifest = api.run(overrides, run_dir, config_dirs=[str(HERE / "conf")])
        return time.perf_counter() - t0, {"rows": len(df), "manifest": manifest}

    wall, first = run(tmp / "run1")
    whole = time.time() - t0  # since the parent started this process
    sent = _stats(url)["requests"]
    cached_wall, again = run(tmp / "run2")
    totals = first["manifest"]["llm_totals"]
    return {
        "wall_s": whole,
        "run_wall_s": wall,
        "rows_out": first["rows"],
        "failed": n - first["rows"],
        "retries": totals["retries"],
        "cached_wall_s": cached_wall,
        "cached_sent": _stats(url)["requests"] - sent,
        "cached_rows": again["rows"],
    }


def child(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    c0 = time.process_time()
    if args.variant == "hand":
        out = asyncio.run(v_hand(args.url, args.n, args.c))
    elif args.variant == "aiohttp":
        out = asyncio.run(v_aiohttp(args.url, args.n, args.c))
    elif args.variant == "litellm":
        out = asyncio.run(v_litellm(args.url, args.n, args.c))
    elif args.variant.startswith("session"):
        transport = "litellm" if args.variant == "session_litellm" else "direct"
        out = asyncio.run(v_session(args.url, args.n, args.c, tmp, transport))
    else:
        extra = (["stream=false"] if args.variant == "runner_staged" else []) + args.override
        out = v_runner(args.url, args.n, args.c, tmp, args.t0, extra)
    out["cpu_s"] = time.process_time() - c0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out), flush=True)


# ---- orchestration ---------------------------------------------------------------------------
def _http(url: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    base = url.rsplit("/v1", 1)[0]
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path, data=data, method="POST" if data else "GET", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 — 127.0.0.1 only
        return json.loads(r.read())


def _stats(url: str) -> dict[str, Any]:
    return _http(url, "/_stats")


def _cpu_ticks(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run_variant(
    variant: str, url: str, mock_pid: int, n: int, c: int, latency: float, overrides: list[str]
) -> dict[str, Any]:
    _http(url, "/_reset", {})
    m0 = _cpu_ticks(mock_pid)
    cmd = [sys.executable, __file__, "--child", variant, "--url", url, "--n", str(n), "--c", str(c)]
    cmd += ["--t0", repr(time.time())] + ([f"--override={o}" for o in overrides])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{variant} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(line[7:])
    calls = 2 * n
    sent = _stats(url)["requests"]
    out.update(
        variant=variant,
        latency_s=latency,
        n=n,
        c=c,
        sent=sent,
        mock_cpu_s=round(_cpu_ticks(mock_pid) - m0, 2),
        efficiency=(calls * latency / c) / out["wall_s"],
        req_per_s=calls / out["wall_s"],
        cpu_s_per_1000=1000 * out["cpu_s"] / max(1, sent),
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--c", type=int, default=64)
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["hand", "aiohttp", "litellm", "session_litellm", "session", "runner"],
    )
    ap.add_argument("--faults", action="store_true", help="also run `runner` with 5%%+5%% faults")
    ap.add_argument("--out", default=None, help="append JSON results to this file")
    ap.add_argument(
        "--override",
        nargs="+",
        action="extend",
        default=[],
        help="config overrides for the runner variants (k=v ...)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--t0", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.variant = args.child
        return child(args)
    print(f"# load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    results = []
    for lat in args.latency:
        mock, base = spawn("--latency", str(lat))
        try:
            url = f"{base}/v1"
            plan = [(v, {}) for v in args.variants]
            if args.faults:
                faulty = {"rate_429": 0.05, "rate_500": 0.05, "retry_after": None, "seed": 1}
                plan += [(v, faulty) for v in args.variants if v.startswith("runner")]
            for variant, faults in plan:
                _http(url, "/_config", {"rate_429": 0.0, "rate_500": 0.0, **faults})
                r = run_variant(variant, url, mock.pid, args.n, args.c, lat, args.override)
                if faults:
                    r["variant"] += "+faults"
                results.append(r)
                print(
                    json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}),
                    flush=True,
                )
        finally:
            mock.terminate()
            mock.wait(10)
    if args.out:
        with open(args.out, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    hand = {r["latency_s"]: r["wall_s"] for r in results if r["variant"] == "hand"}
    print("\n| L | variant | wall s | efficiency | × hand | req/s | CPU s/1000 req | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = hand.get(r["latency_s"], float("nan")) / r["wall_s"]
        print(
            f"| {r['latency_s']:g} s | {r['variant']} | {r['wall_s']:.2f} | "
            f"{r['efficiency']:.3f} | {ratio:.2f} | {r['req_per_s']:.0f} | "
            f"{r['cpu_s_per_1000']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    for r in results:
        if "cached_wall_s" in r:
            print(
                f"- L={r['latency_s']:g} s {r['variant']}: cached re-run "
                f"{r['cached_wall_s']:.2f} s ({100 * r['cached_wall_s'] / r['wall_s']:.1f}% "
                f"of the first run), {r['cached_sent']} requests sent"
            )
        if r["variant"].endswith("+faults"):
            print(f"- L={r['latency_s']:g} s faults: rows lost {r['failed']}, retries {r.get('retries')}")


if __name__ == "__main__":
    main()
