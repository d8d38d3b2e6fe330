"""Helpers shared by the test modules (`from helpers import ...`); fixtures live in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def make_stage(kind: str, ctx: Any, name: str = "s", **params: Any) -> Any:
    """Build a registered stage from keyword params, as the runner would."""
    from selfalign.config import parse_params
    from selfalign.stages import STAGES

    cls = STAGES.get(kind)
    return cls(name, parse_params(cls.Params, params, f"pipeline.stages.{name}"), ctx)


def run_stage(stage: Any, df: pd.DataFrame) -> pd.DataFrame:
    """Run one stage on a frame in the process's event loop."""
    from selfalign import aio

    return aio.run(stage.run(df))


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m selfalign ARGS` in a subprocess (Hydra's run mode configures logging globally,
    so runs through `selfalign run` are kept out of the test process)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "selfalign", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
