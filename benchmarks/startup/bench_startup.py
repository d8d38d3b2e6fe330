"""Startup benchmark: `selfalign --help`, `selfalign list …` and a 2-stage run's first request.

    .venv/bin/python benchmarks/startup/bench_startup.py [--repeat 5] [--rows 20] [--root DIR]

Every command runs in a fresh process (`python -m selfalign …`, as the `selfalign` script does);
the figure is the median wall time of `--repeat` runs. For the run, the 2-stage pipeline of
benchmarks/llm_client (load → generate_text → generate_text, model=openai_compatible) goes to
the mock server of tests/mockserver.py in this process, which notes when the first request
arrives: time to first request = that arrival − the moment the process was spawned (both
time.time() on this machine), so interpreter start, imports, config, checks and run dir set-up
are all in it; the CPU seconds the run had used by then (from /proc, user + sys) say the same
without the waiting a loaded machine adds. `--root` runs another checkout's code (a before/after
on the same machine).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BENCH = ROOT / "benchmarks" / "llm_client"
sys.path.insert(0, str(ROOT / "tests"))
from mockserver import MockServer  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
CPU: list[float] = []  # per command run, in order
COMMANDS = [["--help"], ["list"], ["list", "models"], ["list", "stages"], ["list", "stages", "generate_text"]]


def timed(
    root: Path, args: list[str], cwd: Path, env: dict[str, str], on_spawn: Callable[[int], None] | None = None
) -> tuple[float, float]:
    """(spawn time, wall seconds) of `python -m selfalign ARGS`, which must exit 0; its CPU
    seconds (user + sys) are added to CPU, which says more than wall time on a loaded machine."""
    env = {**os.environ, **env, "PYTHONPATH": str(root)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawned, start = time.time(), time.perf_counter()
    cmd = [sys.executable, "-m", "selfalign", *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if on_spawn is not None:
        on_spawn(proc.pid)
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return spawned, wall


class FirstCall(MockServer):
    """The mock, which also reads the CPU seconds the run had used when its first request came."""

    pid = 0
    cpu_at_first: float | None = None

    async def _chat(self, request: Any) -> Any:
        if self.cpu_at_first is None and self.pid:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            self.cpu_at_first = (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
        return await super()._chat(request)


def first_request(root: Path, rows: int, tmp: Path, i: int) -> tuple[float, float, float]:
    """(time to first request, CPU seconds by then, whole run) of a fresh 2-stage run."""
    mock = FirstCall().start()
    try:
        args = [
            "run",
            "--config-dir",
            str(BENCH / "conf"),
            "pipeline=bench_2stage",
            "model=openai_compatible",
            f"model.api_base={mock.url}",
            "model.name=mock",
            f"prompts.search_path=[{BENCH / 'prompts'}]",
            f"hydra.run.dir={tmp / f'run{i}'}",
            f"cache.path={tmp / f'cache{i}.sqlite'}",
        ]

        def spawned_as(pid: int) -> None:
            mock.pid = pid

        spawned, wall = timed(root, args, tmp, {"BENCH_DATA": str(tmp / "topics.jsonl")}, spawned_as)
        assert mock.requests == 2 * rows and mock.cpu_at_first is not None, mock.stats()
        return mock.first_request_at - spawned, mock.cpu_at_first, wall  # type: ignore[operator]
    finally:
        mock.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose code runs")
    args = ap.parse_args()
    root, load = args.root.resolve(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as d:
        tmp = Path(d)
        (tmp / "topics.jsonl").write_text(
            "".join(json.dumps({"topic": f"topic {i}"}) + "\n" for i in range(args.rows))
        )
        for cmd in COMMANDS:
            CPU.clear()
            walls = [timed(root, cmd, tmp, {})[1] for _ in range(args.repeat)]
            print(
                f"selfalign {' '.join(cmd):<28} median {statistics.median(walls):.2f} s",
                f"(min {min(walls):.2f}), CPU {statistics.median(CPU):.2f} s",
            )
        CPU.clear()
        runs = [first_request(root, args.rows, tmp, i) for i in range(args.repeat)]
        first = [r[0] for r in runs]
        print(
            f"2-stage run, {args.rows} rows: first request after median {statistics.median(first):.2f} s "
            f"(min {min(first):.2f}), {statistics.median(r[1] for r in runs):.2f} s CPU by then; "
            f"whole run {statistics.median(r[2] for r in runs):.2f} s, CPU {statistics.median(CPU):.2f} s"
        )
    print(f"root={root} repeat={args.repeat} load before={load:.2f} after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
