"""executor=ray vs executor=local on this machine: the same pipeline, wall ratio, identical output.

    .venv/bin/python benchmarks/ray_executor/bench.py --n 2000 --c 64 --latency 0.1

Scenarios (each run in a fresh process with a fresh response cache, so every call is sent):
  2stage/test   benchmarks/llm_client's load → generate_text → generate_text, model=test, N rows:
                the executors' own overhead (the test model answers at once)
  2stage/mock   the same pipeline, model=openai_compatible against tests/mockserver.py at latency
                L, concurrency C (under Ray each of the W workers gets C/W: the same total)
  wizardlm_aaa  the shipped pipeline (barriers between its two 4-stage segments), model=test,
                all 14 sample rows
The Ray runs start their own local Ray (`ray.num_cpus`, default all CPUs); "run s" includes
that start, "stages s" is the sum of the stages' wall times from the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mockserver import spawn  # noqa: E402

BENCH = ROOT / "benchmarks" / "llm_client"


def child(args: argparse.Namespace) -> None:
    from selfalign import api

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    overrides = [f"executor={args.executor}", f"cache.path={tmp / 'cache.sqlite'}", *args.extra]
    dirs = None
    if args.scenario.startswith("2stage"):
        data = tmp / "topics.jsonl"
        data.write_text("".join(json.dumps({"topic": f"subject number {i}"}) + "\n" for i in range(args.n)))
        os.environ["BENCH_DATA"] = str(data)
        overrides += ["pipeline=bench_2stage", f"prompts.search_path=[{BENCH / 'prompts'}]"]
        dirs = [str(BENCH / "conf")]
    else:
        overrides += ["pipeline=wizardlm_aaa", "n_rows=14"]
    t0 = time.perf_counter()
    df, manifest = api.run(overrides, tmp / "run", config_dirs=dirs)
    wall = time.perf_counter() - t0
    digest = hashlib.sha256((tmp / "run" / "dataset.jsonl").read_bytes()).hexdigest()
    out = {
        "run_s": round(wall, 2),
        "stages_s": round(sum(s["wall_s"] for s in manifest["stages"]), 2),
        "rows": len(df),
        "sent": manifest["llm_totals"]["sent"],
        "dataset_sha256": digest[:16],
    }
    print("RESULT " + json.dumps(out), flush=True)


def run(scenario: str, executor: str, n: int, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", scenario, "--executor", executor, "--n", str(n), "--", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{scenario}/{executor} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--c", type=int, default=64)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--executor", default=None, help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.scenario = args.child
        return child(args)
    print(f"# load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    mock, base = spawn("--latency", str(args.latency))
    try:
        url = f"{base}/v1"
        mocked = [
            "model=openai_compatible",
            f"model.api_base={url}",
            "model.name=mock",
            f"model.concurrency={args.c}",
        ]
        plan = [("2stage/test", ["model=test"]), ("2stage/mock", mocked), ("wizardlm_aaa", ["model=test"])]
        for scenario, extra in plan:
            local, ray = (run(scenario, ex, args.n, extra) for ex in ("local", "ray"))
            row = {
                "scenario": scenario,
                "local": local,
                "ray": ray,
                "ratio_run": round(ray["run_s"] / local["run_s"], 2),
                "ratio_stages": round(ray["stages_s"] / max(local["stages_s"], 1e-9), 2),
                "identical": local["dataset_sha256"] == ray["dataset_sha256"]
                and local["rows"] == ray["rows"],
            }
            print(json.dumps(row), flush=True)
    finally:
        mock.terminate()
        mock.wait(10)
    print(f"# load average after: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
