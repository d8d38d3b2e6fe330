"""Shared fixtures: an isolated response cache per test, and a helper to run pipelines with the
deterministic test model in-process."""

from __future__ import annotations

import socket
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
