"""Benchmark `selfalign estimate pipeline=wizardlm_aaa n_rows=N` on a hosted model name.

    .venv/bin/python benchmarks/estimate/bench_estimate.py [--rows 1000] [--model openai]
        [--repeat 1] [--root DIR]

The shipped sample has 14 rows, so the input is N rows made from it: row i is sample row
i mod 14 with a tag of three words and i in front of its context and example instruction
(deterministic). Each repeat runs the real command in a fresh process (imports included) and
reports its wall and CPU time (user + sys) and the calls and tokens it counted. `--root` runs
another checkout's code (e.g. the main branch, for a before/after on the same input).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["river", "garden", "signal", "copper", "lantern", "harbor", "meadow", "quartz", "violin", "orbit"]


def make_input(n: int, path: Path) -> None:
    sample = ROOT / "selfalign" / "samples" / "wizardlm_aaa.jsonl"
    rows = [json.loads(line) for line in sample.read_text().splitlines() if line.strip()]
    with path.open("w") as f:
        for i in range(n):
            row = dict(rows[i % len(rows)])
            tag = f"{WORDS[i % 10]} {WORDS[i // 10 % 10]} {WORDS[i // 100 % 10]} {i}"
            row["context"] = f"Case {tag}: {row['context']}"
            row["instruction"] = f"About {tag}: {row['instruction']}"
            f.write(json.dumps(row) + "\n")


def run_once(root: Path, rows: int, model: str, tmp: Path) -> dict[str, float]:
    out = tmp / "estimate.json"
    cmd = [sys.executable, "-m", "selfalign", "estimate", "pipeline=wizardlm_aaa", f"model={model}"]
    cmd += [f"n_rows={rows}", f"input_path={tmp / 'rows.jsonl'}", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(root)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    totals = json.loads(out.read_text())["totals"]
    return {"wall_s": wall, "cpu_s": cpu, "calls": totals["calls"], "prompt_tokens": totals["prompt_tokens"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--model", default="openai")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose code runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as d:
        tmp = Path(d)
        make_input(args.rows, tmp / "rows.jsonl")
        runs = [run_once(args.root.resolve(), args.rows, args.model, tmp) for _ in range(args.repeat)]
    for r in runs:
        print(json.dumps({k: round(v, 2) for k, v in r.items()}))
    print(
        f"rows={args.rows} model={args.model} root={args.root} load={os.getloadavg()[0]:.2f}: "
        f"median wall {statistics.median(r['wall_s'] for r in runs):.1f} s, "
        f"CPU {statistics.median(r['cpu_s'] for r in runs):.1f} s, {runs[0]['calls']:,} calls"
    )


if __name__ == "__main__":
    main()
