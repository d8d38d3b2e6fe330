"""executor=ray: every shipped pipeline on a local Ray with 2 CPUs (2 workers, blocks of 2 rows,
so every streaming segment is spread over both workers) gives the local executor's dataset and
training views byte for byte (the golden outputs), and the same manifest figures and rejected
table as a local run; the workers share one budget and one endpoint's concurrency, and a
worker's error is the run's. One Ray for the whole module: starting it takes seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import NUMERIC_NOISE, OUTPUTS, PIPELINES, ROOT, cli, compared_files, same_up_to_noise
from mockserver import MockServer

from selfalign import api
from selfalign.errors import EXIT_BUDGET, EXIT_CONFIG, EXIT_RUN_FAILED, ConfigError, RunFailed
from selfalign.llm.budget import BudgetExceeded

ray = pytest.importorskip("ray")

BENCH = ROOT / "benchmarks" / "llm_client"  # load → generate_text → generate_text, any reply will do

RAY = ["executor=ray", "ray.block_rows=2"]
# per stage and in the totals: what must not depend on the executor (not wall times, latencies)
STAGE_KEYS = ("name", "kind", "status", "rows_in", "rows_out", "drops", "counts", "calls", "failed_calls")
LLM_KEYS = ("requests", "cache_hits", "sent", "retries", "failures", "prompt_tokens", "completion_tokens")


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _run(pipeline: str, run_dir: Path, cache: Path, *extra: str) -> dict[str, Any]:
    """Each run its own cache, so both executors send every call (equal cache hits)."""
    return api.run([f"pipeline={pipeline}", "model=test", f"cache.path={cache}", *extra], run_dir)[1]


def _figures(manifest: dict[str, Any]) -> dict[str, Any]:
    def llm(counters: dict[str, Any]) -> dict[str, Any]:
        return {k: counters[k] for k in LLM_KEYS}

    return {
        "rows": manifest["rows"],
        "rejected": manifest["rejected"],
        "totals": llm(manifest["llm_totals"]),
        "stages": [
            {**{k: s.get(k) for k in STAGE_KEYS}, "llm": {m: llm(c) for m, c in s.get("llm", {}).items()}}
            for s in manifest["stages"]
        ],
    }


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_ray_gives_the_local_dataset(pipeline: str, tmp_path: Path, local_ray: None) -> None:
    local = _run(pipeline, tmp_path / "local", tmp_path / "local.sqlite")
    remote = _run(pipeline, tmp_path / "ray", tmp_path / "ray.sqlite", *RAY)
    files = compared_files(tmp_path / "ray")
    assert {p.name for p in files} == {p.name for p in OUTPUTS.joinpath(pipeline).glob("*.json*")}
    for path in files:
        golden, actual = (OUTPUTS / pipeline / path.name).read_bytes(), path.read_bytes()
        noisy = NUMERIC_NOISE.get(pipeline, set())
        assert golden == actual or (noisy and same_up_to_noise(golden, actual, noisy)), path.name
    assert _figures(remote) == _figures(local)
    assert remote["llm_totals"]["sent"] > 0
    rejected = [(tmp_path / d / "rejected.jsonl").read_text().splitlines() for d in ("local", "ray")]
    assert rejected[1] == rejected[0]
    # the workers wrote the one cache: a local re-run into a new dir is answered by it alone
    again = _run(pipeline, tmp_path / "again", tmp_path / "ray.sqlite")
    assert again["llm_totals"]["sent"] == 0
    assert again["llm_totals"]["cache_hits"] == local["llm_totals"]["requests"]


@pytest.mark.slow
def test_rerun_reuses_every_stage(tmp_path: Path, local_ray: None) -> None:
    first = _run("almost", tmp_path / "run", tmp_path / "c.sqlite", *RAY)
    again = _run("almost", tmp_path / "run", tmp_path / "c.sqlite", *RAY)
    assert {s["status"] for s in again["stages"]} == {"reused"}
    assert again["llm_attempt"]["requests"] == 0
    assert _figures(again)["totals"] == _figures(first)["totals"]


@pytest.mark.slow
def test_one_budget_for_all_workers(tmp_path: Path, local_ray: None) -> None:
    """A token cap below what the run needs stops it inside the segment the workers run; what
    every worker spent is settled in the one budget; a re-run with more finishes the dataset."""
    run_dir, cache = tmp_path / "run", tmp_path / "c.sqlite"
    full = _run("almost", tmp_path / "full", tmp_path / "full.sqlite")
    need = full["llm_totals"]["prompt_tokens"] + full["llm_totals"]["completion_tokens"]
    cap = need // 2
    with pytest.raises(BudgetExceeded) as stop:
        _run("almost", run_dir, cache, *RAY, f"budget.max_tokens={cap}")
    assert stop.value.exit_code == EXIT_BUDGET
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["budget"]["stopped"]
    spent = manifest["budget"]["spent_tokens"]
    assert 0 < spent <= cap
    assert spent == manifest["llm_attempt"]["prompt_tokens"] + manifest["llm_attempt"]["completion_tokens"]
    done = _run("almost", run_dir, cache, *RAY, f"budget.max_tokens={need * 2}")
    assert done["status"] == "ok"
    assert (run_dir / "dataset.jsonl").read_bytes() == (OUTPUTS / "almost" / "dataset.jsonl").read_bytes()


def test_a_misspelt_executor_exits_2_with_a_suggestion(tmp_path: Path) -> None:
    got = cli("run", "pipeline=almost", "model=test", "executor=rey", f"hydra.run.dir={tmp_path / 'run'}")
    assert got.returncode == EXIT_CONFIG, got.stderr[-2000:]
    assert "executor: unknown executor 'rey'. Did you mean 'ray'?" in " ".join(got.stderr.split())


def test_ray_not_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from omegaconf import OmegaConf

    from selfalign.settings import run_settings

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(
        ConfigError, match=r"executor=ray needs the ray extra: pip install 'selfalign\[ray\]'"
    ):
        run_settings(OmegaConf.create({"executor": "ray"}))
    assert run_settings(OmegaConf.create({"executor": "local"})).executor == "local"


def _two_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, run: str, *extra: str) -> Path:
    data = tmp_path / "topics.jsonl"
    data.write_text("".join(json.dumps({"topic": f"subject {i}"}) + "\n" for i in range(40)))
    monkeypatch.setenv("BENCH_DATA", str(data))
    overrides = [
        "pipeline=bench_2stage",
        f"prompts.search_path=[{BENCH / 'prompts'}]",
        "model=openai_compatible",
        f"model.api_base={url}",
        "model.name=mock",
        f"cache.path={tmp_path / run}.sqlite",
        *extra,
    ]
    api.run(overrides, tmp_path / run, config_dirs=[str(BENCH / "conf")])
    return tmp_path / run / "dataset.jsonl"


@pytest.mark.slow
@pytest.mark.mock_faults(latency_s=0.05)
def test_workers_share_the_endpoints_concurrency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_ray: None, mock_server: MockServer
) -> None:
    """model.concurrency=4 over 2 workers: 2 each, so the endpoint never sees more than 4 in
    flight, and it sees more than one worker's 2 (both work at once)."""
    local = _two_stage(tmp_path, monkeypatch, mock_server.url, "local", "model.concurrency=4")
    mock_server.reset()
    remote = _two_stage(tmp_path, monkeypatch, mock_server.url, "ray", "model.concurrency=4", *RAY)
    assert 2 < mock_server.max_in_flight <= 4
    assert remote.read_bytes() == local.read_bytes()
    assert len(remote.read_text().splitlines()) == 40


@pytest.mark.slow
@pytest.mark.mock_faults(rate_500=1.0)
def test_a_workers_error_is_the_runs_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_ray: None, mock_server: MockServer
) -> None:
    """Every call fails inside a worker: the driver raises the same RunFailed (exit 3, the
    stage and the fix named) and the manifest says failed."""
    with pytest.raises(RunFailed, match=r"pipeline.stages.instruction.max_failure_rate") as err:
        _two_stage(
            tmp_path, monkeypatch, mock_server.url, "ray", "preflight=false", "model.max_retries=0", *RAY
        )
    assert err.value.exit_code == EXIT_RUN_FAILED
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["exit_code"] == EXIT_RUN_FAILED
