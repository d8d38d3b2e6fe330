"""The three figures of issue 21 §7 besides the in-flight phase, each a fresh `selfalign run`
process (as a user runs it), for one or more checkouts interleaved (a before/after on one busy
machine):

    .venv/bin/python benchmarks/per_row_call/bench.py [--repeat 5] [--root DIR ...]

- row-call: the 2-stage pipeline of benchmarks/llm_client (load → generate_text → generate_text)
  on `model=test` with a fresh cache, at `--small` and `--n` rows; the cost of one row-call is
  the difference of the two whole-process walls over the difference of their calls
  (2 · (n − small)), so start-up and shutdown cancel out.
- warm: the same pipeline at `--n` rows on `model=openai_compatible` against the mock of
  tests/mockserver.py (in this process, instant replies), run once to fill the cache, then the
  timed re-run in a new run dir: every answer comes from the cache (the mock must see 0 requests).
- start+stop: the whole process of a `--tiny`-row run on the mock (instant replies), i.e. what a
  run costs besides its calls: interpreter, imports, Hydra, run dir, outputs, report, exit.

Each figure is the median of `--repeat` runs; the checkouts take turns within each repeat.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BENCH = ROOT / "benchmarks" / "llm_client"
sys.path.insert(0, str(ROOT / "tests"))
from mockserver import MockServer  # noqa: E402

EXTRA: list[str] = []  # --override: more config overrides for every run


def selfalign_run(
    root: Path, tmp: Path, tag: str, rows: int, model: list[str], cache: Path
) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole `selfalign run` process of the 2-stage pipeline, which must
    exit 0. CPU (user + sys) says more than wall on a loaded machine, where a process waits for a
    core."""
    data = tmp / f"topics{rows}.jsonl"
    if not data.exists():  # distinct topics, so no two rows share a prompt
        data.write_text("".join(json.dumps({"topic": f"topic {i}"}) + "\n" for i in range(rows)))
    args = [
        "run",
        "--config-dir",
        str(BENCH / "conf"),
        "pipeline=bench_2stage",
        *model,
        f"prompts.search_path=[{BENCH / 'prompts'}]",
        f"hydra.run.dir={tmp / tag}",
        f"cache.path={cache}",
        *EXTRA,
    ]
    env = {**os.environ, "PYTHONPATH": str(root), "BENCH_DATA": str(data)}
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "selfalign", *args], cwd=tmp, env=env, capture_output=True)
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def one_round(root: Path, tmp: Path, i: int, args: argparse.Namespace, mock: MockServer) -> dict[str, float]:
    test = ["model=test"]
    small = selfalign_run(root, tmp, f"s{i}", args.small, test, tmp / f"cs{i}.sqlite")
    big = selfalign_run(root, tmp, f"b{i}", args.n, test, tmp / f"cb{i}.sqlite")
    mocked = ["model=openai_compatible", f"model.api_base={mock.url}", "model.name=mock"]
    cache = tmp / f"cw{i}.sqlite"
    selfalign_run(root, tmp, f"w{i}a", args.n, mocked, cache)  # fills the cache
    sent = mock.requests
    warm = selfalign_run(root, tmp, f"w{i}b", args.n, mocked, cache)
    assert mock.requests == sent, f"warm re-run sent {mock.requests - sent} requests"
    tiny = selfalign_run(root, tmp, f"t{i}", args.tiny, mocked, tmp / f"ct{i}.sqlite")
    calls = 2 * (args.n - args.small)
    return {
        "row_call_ms": 1000 * (big[0] - small[0]) / calls,
        "row_call_cpu_ms": 1000 * (big[1] - small[1]) / calls,
        "warm_s": warm[0],
        "warm_cpu_s": warm[1],
        "start_stop_s": tiny[0],
        "start_stop_cpu_s": tiny[1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--tiny", type=int, default=2)
    ap.add_argument("--root", type=Path, nargs="+", default=[ROOT], help="checkout(s) whose code runs")
    ap.add_argument("--override", nargs="*", default=[], help="config overrides for every run")
    args = ap.parse_args()
    EXTRA.extend(args.override)
    roots = [r.resolve() for r in args.root]
    got: dict[Path, list[dict[str, float]]] = {r: [] for r in roots}
    load = os.getloadavg()[0]
    mock = MockServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-rowcall-") as d:
            for i in range(args.repeat):
                for k, root in enumerate(roots):
                    got[root].append(one_round(root, Path(d), i * len(roots) + k, args, mock))
    finally:
        mock.stop()
    for root, runs in got.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"{root}: per row-call {med['row_call_ms']:.3f} ms wall / {med['row_call_cpu_ms']:.3f} ms CPU; "
            f"warm re-run of {args.n} rows {med['warm_s']:.2f} s / {med['warm_cpu_s']:.2f} s CPU; "
            f"{args.tiny}-row run (start-up + shutdown) {med['start_stop_s']:.2f} s / "
            f"{med['start_stop_cpu_s']:.2f} s CPU"
        )
    print(f"repeat={args.repeat} n={args.n} overrides={args.override}", end=" ")
    print(f"load before={load:.2f} after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
