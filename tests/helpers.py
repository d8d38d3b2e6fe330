"""Helpers shared by the test modules (`from helpers import ...`); fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
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


PIPELINES = ["wizardlm_aaa", "backtranslation", "almost", "aligners", "realign"]
GOLDEN = ROOT / "tests" / "golden"
UPDATE_ENV = "SELFALIGN_UPDATE_GOLDEN"


def update_golden() -> bool:
    """True when golden files are to be rewritten (SELFALIGN_UPDATE_GOLDEN=1)."""
    return os.environ.get(UPDATE_ENV) == "1"


def check_golden(path: Path, actual: bytes) -> None:
    """Compare `actual` with the golden file byte for byte, or rewrite it under the update flag."""
    if update_golden():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
    rel = path.relative_to(ROOT)
    assert path.exists(), f"{rel} missing: run with {UPDATE_ENV}=1 to create it, and review it"
    expected = path.read_bytes()
    if expected != actual:
        import difflib

        diff = difflib.unified_diff(
            expected.decode("utf-8", "replace").splitlines(),
            actual.decode("utf-8", "replace").splitlines(),
            "golden",
            "now",
            lineterm="",
            n=1,
        )
        shown = "\n".join(list(diff)[:40])
        raise AssertionError(
            f"{rel} differs from what the code produces now. If the change is intended, rerun "
            f"with {UPDATE_ENV}=1 and review the diff like code.\n{shown}"
        )


def check_no_stale_golden(folder: Path, produced: set[str], pattern: str) -> None:
    """Golden files in `folder` matching `pattern` that nothing produces any more: removed under
    the update flag, else a failure (a stage or a view went away)."""
    stale = sorted(p.name for p in folder.glob(pattern) if p.name not in produced)
    if update_golden():
        for name in stale:
            (folder / name).unlink()
        return
    assert not stale, f"{folder.relative_to(ROOT)}: golden files nothing produces now: {stale}"


async def no_sleep(delay: float) -> None:
    """An EndpointClient's `sleep` (llm/client.py) for tests: backoffs take no time."""
    await asyncio.sleep(0)
