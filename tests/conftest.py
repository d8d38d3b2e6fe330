"""Shared fixtures: an isolated response cache per test, and a helper to run pipelines with the
deterministic test model in-process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFALIGN_CACHE", str(tmp_path / "cache.sqlite"))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Any connection to a non-loopback address fails the test (tests talk to 127.0.0.1 only)."""
    real = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1") \
                and not host.startswith("/"):
            raise RuntimeError(f"test tried to reach the network: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def run_pipeline(tmp_path: Path):
    """run_pipeline("pipeline=tiny", "k=v", ...) → (dataset, manifest, run_dir), model=test."""
    from selfalign import api

    def _run(*overrides: str, config_dirs: list[str] | None = None,
             run_dir: Path | None = None) -> tuple[pd.DataFrame, dict[str, Any], Path]:
        rd = run_dir or tmp_path / "run"
        args = ["model=test", *overrides]
        df, manifest = api.run(args, rd, config_dirs=config_dirs)
        return df, manifest, rd

    return _run


@pytest.fixture
def ctx(tmp_path: Path):
    """A RunContext with the test model, the shipped + fixture prompts and a rejected table."""
    from selfalign.context import Rejected, RunContext
    from selfalign.llm.cache import ResponseCache
    from selfalign.llm.config import ModelConfig
    from selfalign.llm.session import LLMSession
    from selfalign.paths import resource_dir
    from selfalign.prompts import PromptLibrary

    models = {"default": ModelConfig(provider="test", name="unit")}
    session = LLMSession(models, tmp_path, ResponseCache(tmp_path / "c.sqlite"))
    prompts = PromptLibrary([FIXTURES / "prompts", resource_dir("prompts")])
    c = RunContext(cfg=None, run_dir=tmp_path, prompts=prompts, llm=session, show_progress=False)
    c.rejected = Rejected(tmp_path / "rejected.jsonl")
    return c


def make_stage(kind: str, ctx: Any, name: str = "s", **params: Any):
    """Build a registered stage from keyword params, as the runner would."""
    from selfalign.config import parse_params
    from selfalign.stages import STAGES

    cls = STAGES.get(kind)
    return cls(name, parse_params(cls.Params, params, f"pipeline.stages.{name}"), ctx)


def run_stage(stage: Any, df: pd.DataFrame) -> pd.DataFrame:
    from selfalign import aio

    return aio.run(stage.run(df))


def cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m selfalign ARGS` in a subprocess (Hydra's run mode configures logging globally,
    so runs through `selfalign run` are kept out of the test process)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "selfalign", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)
