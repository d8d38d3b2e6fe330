"""Rows lost under ordinary faults, and what the faults cost (issue 20, item 8).

    .venv/bin/python benchmarks/faults_rows_lost.py --runs 10 --n 2000 --c 64 --latency-ms 100
    # the mock the issue's figures came from (its 429s answer at once, with Retry-After: 1):
    .venv/bin/python benchmarks/faults_rows_lost.py --mock-script /work/shared/bench/mock_openai.py

The 2-stage pipeline of benchmarks/llm_client (load → generate_text → generate_text, N rows,
model.concurrency=C) run as a user runs it: `python -m selfalign run …` in a fresh process, its
wall time the whole process's. Each of `--runs` rounds runs it once clean and once with 5% 429
(Retry-After: 1 s) + 5% 500 (after the latency), one after the other, so a change in the
machine's load hits both; every run gets a fresh mock and a fresh response cache, the faulty one
of round i the fault seed i (so the rounds are different draws, not one replayed). Per run:
exit code, wall s, requests the mock answered, 429s and 500s, rows lost (N − rows in
dataset.jsonl) and rows in rejected.jsonl. Then the totals: rows lost (must be 0) and the
faulty / clean ratio of the median walls. The mock is tests/mockserver.py (its 429 comes after
the latency) unless --mock-script names mock_openai.py-style script.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "benchmarks" / "llm_client"
sys.path.insert(0, str(ROOT / "tests"))
from mockserver import spawn  # noqa: E402


def start_mock(args: argparse.Namespace, seed: int, faulty: bool, tmp: Path) -> tuple[Any, str, str]:
    """(process, base URL with /v1, the model name it serves)."""
    p429, p500 = (0.05, 0.05) if faulty else (0.0, 0.0)
    if not args.mock_script:
        flags = ["--latency", str(args.latency_ms / 1000), "--retry-after", "1", "--seed", str(seed)]
        proc, base = spawn(*flags, "--rate-429", str(p429), "--rate-500", str(p500))
        return proc, f"{base}/v1", "mock"
    port_file = tmp / "port"
    cmd = [sys.executable, args.mock_script, "--port", "0", "--port-file", str(port_file)]
    cmd += ["--latency-ms", str(args.latency_ms), "--fail-429", str(p429), "--fail-500", str(p500)]
    proc = subprocess.Popen([*cmd, "--seed", str(seed)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"the mock did not start: {' '.join(cmd)}")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text().strip()}/v1", "mock-model"


def mock_counts(url: str, bench_mock: bool) -> dict[str, int]:
    """Requests answered, and the 429s and 500s among them, from the mock's own counters."""
    base = url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(base + ("/stats" if bench_mock else "/_stats"), timeout=10) as r:  # noqa: S310
        st = json.loads(r.read())
    if bench_mock:
        kinds = st["by_kind"]
        return {
            "requests": st["total_requests"],
            "429": kinds.get("429_injected", 0),
            "500": kinds.get("500_injected", 0),
        }
    out = st["outcomes"]
    return {"requests": st["requests"], "429": out.get("429", 0), "500": out.get("500", 0)}


def lines(path: Path) -> int:
    return sum(1 for x in path.read_text().splitlines() if x.strip()) if path.exists() else 0


def one_run(args: argparse.Namespace, root: Path, seed: int, faulty: bool) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="faults-bench-"))
    data = tmp / "topics.jsonl"
    data.write_text(
        "".join(json.dumps({"topic": f"subject number {i} of the benchmark"}) + "\n" for i in range(args.n))
    )
    mock, url, name = start_mock(args, seed, faulty, tmp)
    run_dir = tmp / "run"
    cmd = [sys.executable, "-m", "selfalign", "run", "--config-dir", str(CLIENT / "conf")]
    cmd += ["pipeline=bench_2stage", "model=openai_compatible", f"model.api_base={url}", f"model.name={name}"]
    cmd += [f"model.concurrency={args.c}", "cache.enabled=true", f"cache.path={tmp / 'cache.sqlite'}"]
    cmd += [f"prompts.search_path=[{CLIENT / 'prompts'}]", f"hydra.run.dir={run_dir}", *args.override]
    env = {**os.environ, "BENCH_DATA": str(data), "PYTHONPATH": str(root)}
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - t0
        counts = mock_counts(url, bool(args.mock_script))
    finally:
        mock.terminate()
        mock.wait(10)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"the run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rows = lines(run_dir / "dataset.jsonl")
    return {
        "root": str(root),
        "faulty": faulty,
        "seed": seed,
        "exit": proc.returncode,
        "wall_s": round(wall, 2),
        **counts,
        "rows_lost": args.n - rows,
        "rejected": lines(run_dir / "rejected.jsonl"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="rounds (one clean run + one faulty run each)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--c", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument(
        "--mock-script", default=None, help="a mock_openai.py-style mock (else tests/mockserver.py)"
    )
    ap.add_argument(
        "--root",
        action="append",
        default=[],
        help="the checkout whose selfalign runs (default this one); give it twice, e.g. this one and "
        "main, to compare: each round then runs both, one after the other",
    )
    ap.add_argument("--override", nargs="+", action="extend", default=[], help="config overrides (k=v …)")
    args = ap.parse_args()
    roots = [Path(r).resolve() for r in args.root] or [ROOT]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the run and the mock are stopped too
    print(f"# load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    results = []
    for i in range(args.runs):
        for root in roots:
            for faulty in (False, True):
                r = one_run(args, root, i, faulty)
                results.append(r)
                print(json.dumps(r), flush=True)
    print(f"# load average after: {os.getloadavg()}")
    lost = sum(r["rows_lost"] for r in results)
    for root in roots:
        report([r for r in results if r["root"] == str(root)], root)
    sys.exit(1 if lost else 0)


def report(results: list[dict[str, Any]], root: Path) -> None:
    """One checkout's table (a row per round) and totals."""
    clean = [r for r in results if not r["faulty"]]
    faulty = [r for r in results if r["faulty"]]
    head = (
        "| round | clean wall s | faulty wall s | ratio | requests | 429 | 500 | rows lost | rejected | exit"
    )
    print(f"\n{root}\n\n" + head + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, (c, f) in enumerate(zip(clean, faulty, strict=True)):
        print(
            f"| {i} | {c['wall_s']:.2f} | {f['wall_s']:.2f} | {f['wall_s'] / c['wall_s']:.2f} | "
            f"{f['requests']} | {f['429']} | {f['500']} | {f['rows_lost']} | {f['rejected']} | {f['exit']} |"
        )
    med_c = statistics.median(r["wall_s"] for r in clean)
    med_f = statistics.median(r["wall_s"] for r in faulty)
    lost_f, lost_c = sum(r["rows_lost"] for r in faulty), sum(r["rows_lost"] for r in clean)
    hit = sum(r["rows_lost"] > 0 for r in faulty)
    print(
        f"\nrows lost over {len(faulty)} faulty runs: {lost_f} (clean: {lost_c}); runs with a lost row: {hit}"
    )
    print(f"median wall: clean {med_c:.2f} s, faulty {med_f:.2f} s, faulty / clean {med_f / med_c:.2f}")


if __name__ == "__main__":
    main()
