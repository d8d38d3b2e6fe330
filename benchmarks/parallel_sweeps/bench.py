"""Parallel sweeps: a 4-job sweep of the 2-stage benchmark pipeline on Hydra's basic launcher
(one job after another) vs the joblib launcher (n_jobs jobs at once), against the mock server.

    .venv/bin/python benchmarks/parallel_sweeps/bench.py --latency 0.1 --n 200 --c 16 --n-jobs 2

Each variant is one `selfalign run -m` process with a fresh cache file and sweep dir; the mock
server (tests/mockserver.py, fixed latency) runs in its own process. Reported: the wall time of
the whole command, the ratio basic / joblib, requests the mock served, the most it had in flight
at once, when each job started and how long it took (its manifest), and whether every job's
dataset.jsonl is byte-identical across the two variants.
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
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mockserver import spawn  # noqa: E402

BENCH = ROOT / "benchmarks" / "llm_client"  # its 2-stage pipeline and prompts
JOBS = 4


def _http(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url.removesuffix("/v1") + path, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 — 127.0.0.1
        return json.loads(r.read() or b"{}")


def sweep(url: str, tmp: Path, launcher: list[str], n: int, c: int) -> dict:
    data = tmp / "topics.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"topic": f"subject number {i}"}) + "\n" for i in range(n)))
    name = launcher[0].split("=")[1]
    temps = ",".join(str(round(0.1 + 0.2 * j, 1)) for j in range(JOBS))
    cmd = [sys.executable, "-m", "selfalign", "run", "-m", "--config-dir", str(BENCH / "conf")]
    cmd += ["pipeline=bench_2stage", f"prompts.search_path=[{BENCH / 'prompts'}]"]
    cmd += ["model=openai_compatible", f"model.api_base={url}", "model.name=mock", f"model.concurrency={c}"]
    cmd += [f"cache.path={tmp / name}.sqlite", f"pipeline.stages.instruction.temperature={temps}"]
    # every job's calls distinct (the mock's reply depends on the prompt only; no cross-job hits)
    cmd += ["pipeline.stages.response.temperature=${pipeline.stages.instruction.temperature}"]
    cmd += [*launcher, f"hydra.sweep.dir={tmp / name}"]
    _http(url, "/_reset", {})
    t0, t0_epoch = time.perf_counter(), time.time()
    res = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "BENCH_DATA": str(data)}, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{name} sweep failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    stats = _http(url, "/_stats")
    jobs = [json.loads((tmp / name / str(j) / "manifest.json").read_text()) for j in range(JOBS)]
    starts = [datetime.fromisoformat(m["started"]).timestamp() - t0_epoch for m in jobs]
    return {
        "launcher": name,
        "wall_s": wall,
        "requests": stats["requests"],
        "max_in_flight": stats["max_in_flight"],
        # each job: when it started (s after the command did) + its own wall time
        "jobs": " ".join(f"{s:.1f}+{m['wall_s']:.1f}" for s, m in zip(starts, jobs, strict=True)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--n", type=int, default=200, help="rows per job")
    ap.add_argument("--c", type=int, default=16, help="model.concurrency of each job")
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args()
    print(f"# load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    mock, base = spawn("--latency", str(args.latency))
    try:
        url = f"{base}/v1"
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            basic = sweep(url, tmp, ["hydra/launcher=basic"], args.n, args.c)
            par = sweep(
                url, tmp, ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.n_jobs}"], args.n, args.c
            )
            same = all(
                (tmp / "basic" / str(j) / "dataset.jsonl").read_bytes()
                == (tmp / "joblib" / str(j) / "dataset.jsonl").read_bytes()
                for j in range(JOBS)
            )
    finally:
        mock.terminate()
        mock.wait(10)
    ideal = JOBS * 2 * args.n * args.latency / args.c  # the LLM time of the 4 jobs, one after another
    print(
        f"# {JOBS} jobs × {args.n} rows × 2 calls, C={args.c} per job, L={args.latency:g} s; "
        f"ideal serial LLM time {ideal:.1f} s"
    )
    print("| launcher | wall s | requests | max in flight | jobs: start s + own wall s |")
    print("|---|---|---|---|---|")
    for r in (basic, par):
        print(
            f"| {r['launcher']} | {r['wall_s']:.1f} | {r['requests']} | {r['max_in_flight']} | {r['jobs']} |"
        )
    print(f"wall basic / joblib: {basic['wall_s'] / par['wall_s']:.2f}; identical datasets: {same}")
    print(f"# load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
