"""A built wheel carries conf/, pipelines/ and prompts/ and works outside the source tree."""

import os
import subprocess
import sys

import pytest
from helpers import FIXTURES, ROOT, TINY_CLI

pytestmark = pytest.mark.slow  # builds and installs a wheel


def test_wheel_install_runs_outside_checkout(tmp_path):
    dist, target, work = tmp_path / "dist", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("selfalign-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(target),
        "SELFALIGN_CACHE": str(tmp_path / "c.db"),
        "TINY_DATA": str(FIXTURES / "data" / "tiny.jsonl"),
    }

    def sa(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "selfalign", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import selfalign.paths as p; print(p.resource_dir('conf')); print(p.resource_dir('prompts'))",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(str(target) in line for line in where.stdout.split()), where.stdout
    listed = sa("list", "pipelines")
    assert listed.returncode == 0, listed.stderr
    res = sa(
        "run",
        *TINY_CLI,
        "model=test",
        f"hydra.run.dir={tmp_path / 'r'}",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "r" / "dataset.jsonl").read_text().count("\n") == 5
