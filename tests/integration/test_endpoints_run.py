"""Several endpoints through a whole run: the Hydra list override from the CLI, config errors
(exit 2 naming model.api_base[i]), the preflight (one dead endpoint of several warns, all dead
fails), per-endpoint counts in the manifest, and cache keys that do not depend on which endpoint
answered."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest
from helpers import ROOT, TINY_CLI, TINY_ON_MOCK, cli

from selfalign.config import parse_params
from selfalign.errors import ConfigError
from selfalign.llm.config import ModelConfig
from selfalign.llm.preflight import preflight

sys.path.insert(0, str(ROOT / "tests"))
from mockserver import MockServer  # noqa: E402

# load → filter → one generate_text stage (the judge's score parser would not read mock replies)
TINY = [*TINY_CLI, *TINY_ON_MOCK]
DEAD = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


@pytest.fixture
def mocks():
    servers = [MockServer(latency_s=0.005).start() for _ in range(2)]
    yield servers
    for s in servers:
        s.stop()


def run(tmp_path: Path, name: str, *args: str):
    res = cli("run", *TINY, *args, f"hydra.run.dir={tmp_path / name}")
    manifest = tmp_path / name / "manifest.json"
    return res, (json.loads(manifest.read_text()) if manifest.exists() else None)


def test_cli_list_override_spreads_and_counts(tmp_path: Path, mocks) -> None:
    a, b = mocks  # the three runs share this test's response cache ($SELFALIGN_CACHE)
    res, manifest = run(tmp_path, "r1", f"model.api_base=[{a.url},{b.url},{DEAD}]")
    assert res.returncode == 0, res.stderr[-2000:]
    assert manifest["rows"] == 10 and a.requests > 0 and b.requests > 0
    assert a.requests + b.requests == 10  # 5 questions × n=2, nothing lost to the dead one
    counts = manifest["endpoints"]["default"]
    assert [counts[u]["ok"] for u in (a.url, b.url)] == [a.requests, b.requests]
    assert counts[DEAD]["ok"] == 0 and counts[DEAD]["taken_out"] == 1
    log = " ".join((tmp_path / "r1" / "run.log").read_text().split())
    assert f"{DEAD}: cannot reach the server" in log and "The other endpoints take its share" in log
    assert f"endpoint {DEAD} taken out" in log

    # The same cache, the endpoints in another order, then only the first of the list as a
    # plain string: every answer comes from the cache, whichever endpoint gave it.
    sent = a.requests + b.requests
    res, manifest = run(tmp_path, "r2", f"model.api_base=[{a.url},{DEAD},{b.url}]")
    assert res.returncode == 0 and manifest["llm_attempt"]["sent"] == 0
    res, manifest = run(tmp_path, "r3", f"model.api_base={a.url}")
    assert res.returncode == 0 and manifest["llm_attempt"]["sent"] == 0
    assert "endpoints" not in manifest  # one endpoint: the manifest as before
    assert a.requests + b.requests == sent


def test_cli_all_endpoints_dead_fails_the_preflight(tmp_path: Path) -> None:
    res, _ = run(tmp_path, "r", f"model.api_base=[{DEAD},http://127.0.0.1:7/v1]")
    msg = " ".join(res.stderr.split())
    assert res.returncode == 3 and "2 model endpoint problem(s)" in msg
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("value", "where", "says"),
    [
        ("[]", "model.api_base", "empty list"),
        ("[http://127.0.0.1:8000/v1,gpu1:8000]", "model.api_base[1]", "not an http(s) URL"),
        ("[http://a:8000/v1,http://b:8000/v1,http://a:8000/v1/]", "model.api_base[2]", "repeats"),
    ],
)
def test_bad_lists_exit_2_naming_the_item(tmp_path: Path, value: str, where: str, says: str) -> None:
    res = cli("validate", *TINY, f"model.api_base={value}")
    msg = " ".join(res.stderr.split())
    assert res.returncode == 2 and f"{where}: " in msg and says in msg, msg


def test_bad_item_types_name_the_item() -> None:
    with pytest.raises(ConfigError, match=r"model\.api_base: expected str \| list\[str\] \| null"):
        parse_params(ModelConfig, {"provider": "litellm", "api_base": ["http://a/v1", 8000]}, "model")


def test_preflight_checks_every_endpoint(mocks, caplog) -> None:
    a, b = mocks
    cfg = ModelConfig(provider="litellm", name="mock", api_base=[a.url, DEAD, b.url])
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(preflight([("model 'mock'", cfg)])) == []
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith(f"model 'mock' at {DEAD}: cannot reach")
    dead = ModelConfig(provider="litellm", name="mock", api_base=[DEAD, "http://127.0.0.1:7/v1"])
    problems = asyncio.run(preflight([("model 'mock'", dead)]))
    assert len(problems) == 2 and all("cannot reach the server" in p for p in problems)
