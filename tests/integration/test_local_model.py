"""The real embedded model (CPU, 2 cores is enough): a 2-row, 2-stage run through LLMSession,
JSON-schema output, no orphan server after kill -9 of its parent, and a clear start failure."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from selfalign.errors import LLMError
from selfalign.llm.base import ChatRequest
from selfalign.llm.cache import ResponseCache
from selfalign.llm.config import ModelConfig
from selfalign.llm.local import LOG_NAME, start_local_client
from selfalign.llm.session import LLMSession, close_all

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CFG = dict(
    provider="local",
    name="qwen2.5-coder-0.5b-instruct-q4_k_m",
    n_ctx=2048,
    n_parallel=2,
    concurrency=2,
    timeout_s=120,
    max_retries=1,
    supports_json_schema=True,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


def _user(text: str, stage: str, **params) -> ChatRequest:
    return ChatRequest.make(
        [{"role": "user", "content": text}], {"max_tokens": 24, "temperature": 0, **params}, stage=stage
    )


def test_two_rows_two_stages_then_fully_cached(run_dir: Path):
    models = {"default": ModelConfig(**CFG)}
    cache = ResponseCache(run_dir / "cache.sqlite")
    topics = ["sorting a list in Python", "reading a CSV file"]

    async def pipeline(session: LLMSession):
        gen = await session.complete(
            "generate",
            None,
            [_user(f"Write one short question a beginner might ask about {t}.", "generate") for t in topics],
        )
        ans = await session.complete("respond", None, [_user(r.text or "", "respond") for r in gen])
        return gen, ans

    async def main():
        try:
            first = await pipeline(LLMSession(models, run_dir, cache))
            again = LLMSession(models, run_dir, cache)
            second = await pipeline(again)
            return first, second, again
        finally:
            await close_all()

    (gen, ans), (gen2, ans2), again = asyncio.run(main())
    for r in gen + ans:
        assert r.ok and r.text and r.completion_tokens > 0 and not r.cached, r.error
    assert all(r.cached for r in gen2 + ans2)  # the re-run sends nothing
    assert [r.text for r in ans2] == [r.text for r in ans]
    assert again.accounting.totals()["cache_hits"] == 4
    assert (run_dir / LOG_NAME).stat().st_size > 0


def test_json_schema_output(tmp_path: Path):
    schema = {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "reason": {"type": "string", "maxLength": 60},
        },
        "required": ["score", "reason"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "grade", "schema": schema}}
    client = start_local_client(ModelConfig(**CFG), tmp_path)
    try:
        r = asyncio.run(
            client.complete(
                _user(
                    "Rate this answer from 1 to 5: 'Paris is the capital of France.'",
                    "judge",
                    response_format=fmt,
                    max_tokens=48,
                )
            )
        )
    finally:
        asyncio.run(client.aclose())
    assert r.ok, r.error
    data = json.loads(r.text or "")
    assert isinstance(data["score"], int) and 1 <= data["score"] <= 5
    assert "127.0.0.1" not in client.identity and str(client.server.url) not in client.identity


def test_the_embedded_server_refuses_calls_without_its_run_key(tmp_path: Path):
    import urllib.error
    import urllib.request

    client = start_local_client(ModelConfig(**CFG), tmp_path)
    try:
        body = json.dumps(
            {"model": "local", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        ).encode()
        req = urllib.request.Request(
            f"{client.server.url}/v1/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as exc:  # another local process, no key
            urllib.request.urlopen(req, timeout=30)
        assert exc.value.code == 401
        r = asyncio.run(client.complete(_user("Say hi.", "s", max_tokens=4)))  # ours has it
        assert r.ok, r.error
    finally:
        asyncio.run(client.aclose())
    assert client.server.api_key not in (tmp_path / LOG_NAME).read_text(errors="replace")


PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from selfalign.llm.config import ModelConfig
    from selfalign.llm.local import LocalServer, resolve_model_path
    cfg = ModelConfig(provider="local", name="q", n_ctx=512, n_parallel=1)
    server = LocalServer(cfg, resolve_model_path(cfg), Path(sys.argv[1]) / "llama_server.log")
    server.wait_ready(120)
    print(server.proc.pid, server.url, flush=True)
    time.sleep(600)
""")


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_server_exits_when_parent_is_killed(tmp_path: Path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    line = parent.stdout.readline() if parent.stdout else ""
    child = int(line.split()[0])
    assert _running(child)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(10)
    # The child exits on EOF of its stdin; this only waits for it (a safety cap, not a speed
    # claim: a loaded machine may take a while to schedule it).
    deadline = time.monotonic() + 60
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _running(child)
    if alive:
        os.kill(child, signal.SIGKILL)  # don't leave it behind even when the test fails
    assert not alive, "the llama.cpp server outlived its parent"


def test_start_failure_points_at_the_log(tmp_path: Path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not a GGUF file" * 100)
    cfg = ModelConfig(**{**CFG, "path": str(bad), "startup_timeout_s": 60})
    with pytest.raises(LLMError) as info:
        start_local_client(cfg, tmp_path / "run")
    assert str(tmp_path / "run" / LOG_NAME) in str(info.value)
