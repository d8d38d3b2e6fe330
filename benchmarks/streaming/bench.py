"""Streaming vs stage by stage: a shipped pipeline against the mock server (test-model replies,
fixed latency L), each variant in a fresh `selfalign run` process with a fresh cache.

    .venv/bin/python benchmarks/streaming/bench.py --pipeline wizardlm_aaa --n-rows 200 \
        --latency 1.0 --c 64

efficiency = (calls · L / C) / wall, where calls is what the mock received: the throughput
bound of the pipeline's call graph (a dependent chain of k calls per row also needs k·L, far
less here). wall is the whole `selfalign run` process, imports and output writing included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from mockserver import spawn  # noqa: E402

VARIANTS = {"stream": [], "staged": ["stream=false"]}


def _stats(url: str, path: str = "/_stats", body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url.rsplit("/v1", 1)[0] + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 — 127.0.0.1 only
        return json.loads(r.read())


def run(url: str, args: argparse.Namespace, extra: list[str], tmp: Path) -> dict:
    _stats(url, "/_reset", {})
    cmd = [
        sys.executable, "-m", "selfalign", "run", f"pipeline={args.pipeline}",
        "model=openai_compatible", "model.name=mock", f"model.api_base={url}",
        f"model.concurrency={args.c}", f"hydra.run.dir={tmp / 'run'}", *args.override, *extra,
    ]  # fmt: skip
    if args.n_rows is not None:
        cmd.append(f"n_rows={args.n_rows}")
    env = {**os.environ, "SELFALIGN_CACHE": str(tmp / "cache.sqlite")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}:\n{proc.stderr[-3000:]}")
    manifest = json.loads((tmp / "run" / "manifest.json").read_text())
    sent = _stats(url)["requests"]
    ideal = sent * args.latency / args.c
    return {"wall_s": wall, "requests": sent, "rows": manifest["rows"], "efficiency": ideal / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipeline", default="wizardlm_aaa")
    ap.add_argument("--n-rows", type=int, default=200)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--c", type=int, default=64)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--override", nargs="*", default=[], help="more overrides for both variants")
    args = ap.parse_args()
    print(f"# load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    mock, base = spawn("--latency", str(args.latency), "--replies", "test")
    try:
        url = f"{base}/v1"
        results = {}
        for v in args.variants:
            with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
                results[v] = run(url, args, VARIANTS[v], Path(tmp))
            print(json.dumps({"variant": v, **results[v]}), flush=True)
    finally:
        mock.terminate()
        mock.wait(10)
    print(f"\n{args.pipeline}, {args.n_rows} rows, L = {args.latency} s, C = {args.c}\n")
    print("| variant | wall s | requests | rows | efficiency |\n|---|---|---|---|---|")
    for v, r in results.items():
        print(f"| {v} | {r['wall_s']:.1f} | {r['requests']} | {r['rows']} | {r['efficiency']:.3f} |")
    if {"stream", "staged"} <= results.keys():
        ratio = results["stream"]["wall_s"] / results["staged"]["wall_s"]
        print(f"\nstreamed wall / staged wall = {ratio:.3f}")


if __name__ == "__main__":
    main()
