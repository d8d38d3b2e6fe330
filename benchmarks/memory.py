"""Peak memory of `selfalign run` over N rows: load → filter_rows → generate_text → generate_text
with `model=test` (no model server: the test model answers in-process, so the run measures the
runner and its tables, not the network).

Each N runs in a fresh child process (`python -m selfalign run …`); its peak RSS is the
child's ru_maxrss (resource.getrusage(RUSAGE_CHILDREN) after it exits: one child per
measurement, so the maximum is that child's). The input JSONL, the pipeline YAML, the prompts
and the run directory live in a temporary folder that is deleted afterwards.

    .venv/bin/python benchmarks/memory.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PIPELINE = """\
# @package _global_
pipeline:
  name: bench_memory
  description: memory benchmark (load, filter, two generate_text stages)
  order: [load, keep, instruction, response]
  stages:
    load:
      kind: load
      path: {data}
      required: [topic]
    keep:
      kind: filter_rows
      rules:
        - {{name: too_long, column: topic, op: max_chars, value: 60}}
    instruction:
      kind: generate_text
      prompt: bench/instruction
      output: instruction
      max_tokens: 32
    response:
      kind: generate_text
      prompt: bench/response
      output: response
      max_tokens: 32
"""

WORDS = ["apple", "river", "cloud", "music", "garden", "engine"]
WORDS += ["window", "orbit", "paper", "violin", "desert", "harbor"]


def write_input(path: Path, n: int) -> None:
    """n short rows; every 50th topic is too long, so the filter drops 2% of them."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            topic = f"{WORDS[i % 12]} {WORDS[(i // 12) % 12]} {i}"
            if i % 50 == 49:
                topic += " " + "very long " * 8
            fh.write(json.dumps({"id": i, "topic": topic}) + "\n")


def setup(tmp: Path, n: int) -> tuple[Path, Path]:
    data = tmp / f"topics_{n}.jsonl"
    write_input(data, n)
    conf = tmp / "conf" / "pipeline"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "bench_memory.yaml").write_text(PIPELINE.format(data=data), encoding="utf-8")
    prompts = tmp / "prompts" / "bench"
    prompts.mkdir(parents=True, exist_ok=True)
    (prompts / "instruction.j2").write_text("Write one instruction about {{ topic }}.\n")
    (prompts / "response.j2").write_text("{{ instruction }}\n")
    return data, tmp / "conf"


def measure(tmp: Path, n: int, extra: list[str]) -> dict[str, float | int | str]:
    data, conf = setup(tmp, n)
    run_dir = tmp / f"run_{n}"
    cmd = [
        sys.executable,
        "-m",
        "selfalign",
        "run",
        "--config-dir",
        str(conf),
        "pipeline=bench_memory",
        "model=test",
        "cache.enabled=false",
        f"prompts.search_path=[{tmp / 'prompts'}]",
        f"hydra.run.dir={run_dir}",
        *extra,
    ]
    # this checkout's selfalign, whatever the venv's editable install points at
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    out = run_dir / "dataset.jsonl"
    rows = sum(1 for _ in out.open()) if out.exists() else 0
    data.unlink()
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
    return {"rows": n, "rc": proc.returncode, "out": rows, "wall_s": wall, "peak_mb": peak_kb / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (prints its path)")
    ap.add_argument("--override", nargs="*", default=[], help="more overrides, e.g. chunk_rows=256")
    args = ap.parse_args()
    print("| rows in | exit | rows out | wall s | peak RSS MB |\n|---|---|---|---|---|", flush=True)
    results = []
    for n in args.rows:
        # a fresh process per N: RUSAGE_CHILDREN's maximum is then that child's alone
        tmp = tempfile.mkdtemp(prefix="selfalign_mem_")
        try:
            child = subprocess.run(
                [sys.executable, __file__, "--_one", str(n), tmp, *args.override],
                capture_output=True,
                text=True,
            )
        finally:
            if args.keep:
                print(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        if child.returncode != 0:
            print(child.stderr[-4000:], file=sys.stderr)
            continue
        r = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"| {r['rows']:,} | {r['rc']} | {r['out']:,} | {r['wall_s']:.1f} | {r['peak_mb']:,.0f} |",
            flush=True,
        )
    if len(results) >= 2 and results[0]["peak_mb"]:
        ratio = results[-1]["peak_mb"] / results[0]["peak_mb"]
        print(f"peak RSS ratio {results[-1]['rows']:,} / {results[0]['rows']:,} rows: {ratio:.2f}")


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--_one":
        print(json.dumps(measure(Path(sys.argv[3]), int(sys.argv[2]), sys.argv[4:])))
    else:
        main()
