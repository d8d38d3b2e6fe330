"""Shared fixtures: an isolated response cache per test, no network, a RunContext on the test
model, a runner of pipelines on the test model in-process, and the scripted test model
(`test_model`). Plain helpers (make_stage, run_stage, cli, ROOT, FIXTURES) live in
tests/helpers.py. `mock_server` is the OpenAI-compatible mock of tests/mockserver.py, started per test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
from helpers import FIXTURES

if TYPE_CHECKING:
    from mockserver import MockServer

    from selfalign.llm.testmodel import Script


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SELFALIGN_CACHE", str(tmp_path / "cache.sqlite"))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Any connection to a non-loopback address fails the test (tests talk to 127.0.0.1 only)."""
    real = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if (
            isinstance(host, str)
            and host not in ("127.0.0.1", "localhost", "::1")
            and not host.startswith("/")
        ):
            raise RuntimeError(f"test tried to reach the network: {address}")
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def run_pipeline(tmp_path: Path):
    """run_pipeline("pipeline=tiny", "k=v", ...) → (dataset, manifest, run_dir), model=test."""
    from selfalign import api

    def _run(
        *overrides: str, config_dirs: list[str] | None = None, run_dir: Path | None = None
    ) -> tuple[pd.DataFrame, dict[str, Any], Path]:
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
    c = RunContext(run_dir=tmp_path, prompts=prompts, llm=session, show_progress=False)
    c.rejected = Rejected(tmp_path / "rejected.jsonl")
    return c


@pytest.fixture
def mock_server(request: pytest.FixtureRequest) -> Iterator[MockServer]:
    """The OpenAI-compatible mock (tests/mockserver.py) on 127.0.0.1 for this test, in a thread.
    Its faults (latency_s, replies, require_key …) come from a `mock_faults` marker on the test
    or module (`pytestmark = pytest.mark.mock_faults(latency_s=0.3)`) or from
    `mock_server.configure(...)`; helpers.mock_config/mock_client point a model at it."""
    from mockserver import MockServer

    marker = request.node.get_closest_marker("mock_faults")
    server = MockServer(**(marker.kwargs if marker else {})).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def test_model() -> Iterator[Script]:
    """The scripted test model for this test: `test_model.queue("reply", ...)` answers the next
    calls of every provider=test model in order (the reply rules answer once the queue is
    empty); `test_model.requests` is every call that reached it (see selfalign/llm/testmodel.py)."""
    from selfalign.llm.testmodel import scripted

    with scripted() as script:
        yield script
