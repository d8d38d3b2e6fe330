"""End to end with the test model: run dir contents, resume, cache, sweeps, preview, plugins."""

import json

import pandas as pd
from helpers import FIXTURES, ROOT, TINY, TINY_DIRS, cli

from selfalign.cli import main


def test_end_to_end_run_dir(run_pipeline):
    df, manifest, run_dir = run_pipeline(*TINY, config_dirs=TINY_DIRS)
    assert len(df) == 5 and {"question", "answer", "score", "score_reasoning"} <= set(df.columns)
    for name in (
        "dataset.jsonl",
        "dataset.parquet",
        "rejected.jsonl",
        "manifest.json",
        "config.yaml",
        "sft.jsonl",
    ):
        assert (run_dir / name).exists(), name
    assert len(pd.read_parquet(run_dir / "dataset.parquet")) == 5
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["clean"]["drops"] == {"too_short": 1}
    assert stages["answer"]["rows_out"] == 10 and stages["best"]["rows_out"] == 5
    assert stages["answer"]["prompts"]["tiny/answer"]  # prompt hash recorded
    assert manifest["llm_totals"]["requests"] == 20 and manifest["versions"]["pandas"]
    assert len(list((run_dir / "stages").glob("*.jsonl"))) == 6
    assert "model: test" not in (run_dir / "config.yaml").read_text()  # resolved, not raw


def test_rerun_same_dir_reuses_stage_outputs(run_pipeline):
    first, _, run_dir = run_pipeline(*TINY, config_dirs=TINY_DIRS)
    again, manifest, _ = run_pipeline(*TINY, config_dirs=TINY_DIRS, run_dir=run_dir)
    assert all(s["reused"] for s in manifest["stages"])
    assert manifest["llm_attempt"]["requests"] == 0  # this attempt sent nothing …
    assert manifest["llm_totals"]["requests"] == 20  # … and the record of the first one is kept
    assert manifest["stages"][1]["drops"] == {"too_short": 1}
    assert list(again.answer) == list(first.answer)
    # a changed stage param re-runs that stage and those after it, not the ones before
    _, m3, _ = run_pipeline(
        *TINY, "pipeline.stages.judge.max_tokens=99", config_dirs=TINY_DIRS, run_dir=run_dir
    )
    assert [s["reused"] for s in m3["stages"]] == [True, True, True, False, False, False]


def test_fully_cached_rerun_sends_nothing(run_pipeline, tmp_path):
    run_pipeline(*TINY, config_dirs=TINY_DIRS, run_dir=tmp_path / "a")
    _, manifest, _ = run_pipeline(*TINY, config_dirs=TINY_DIRS, run_dir=tmp_path / "b")
    totals = manifest["llm_totals"]
    assert totals["requests"] == 20 and totals["cache_hits"] == 20 and totals["sent"] == 0


def test_disabled_stage_is_skipped(run_pipeline):
    df, manifest, _ = run_pipeline(*TINY, "pipeline.stages.clean.enabled=false", config_dirs=TINY_DIRS)
    assert "clean" not in {s["name"] for s in manifest["stages"]} and len(df) == 6


def test_user_plugin_stage(run_pipeline, monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES / "plugins"))
    df, _, _ = run_pipeline(
        *TINY,
        "plugins=[my_stages]",
        "+pipeline.stages.loud.kind=shout_text",
        "+pipeline.stages.loud.column=answer",
        "pipeline.order=[load,clean,answer,judge,best,loud]",
        config_dirs=TINY_DIRS,
    )
    assert (df.shout == df.answer.str.upper()).all()


def test_preview_renders_first_llm_prompts(capsys):
    assert main(["preview", "--config-dir", TINY_DIRS[0], *TINY, "model=test", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "answer (generate_text): first 2 request(s), not sent" in out
    assert "What is the capital of France?" in out and "How do plants make food?" in out


def test_sweep_two_by_two_writes_summary(tmp_path):
    sweep = tmp_path / "sweep"
    res = cli(
        "run",
        "-m",
        "--config-dir",
        TINY_DIRS[0],
        *TINY,
        "model=test",
        "temperature=0.2,0.8",
        "pipeline.stages.answer.n=2,3",
        f"hydra.sweep.dir={sweep}",
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = pd.read_csv(sweep / "sweep_summary.csv")
    assert len(summary) == 4 and set(summary.status) == {"ok"}
    assert summary.overrides.str.contains("temperature=0.2").sum() == 2
    assert {"rows_in", "rows_out", "drops", "tokens", "wall_s", "mean_score"} <= set(summary.columns)
    assert (summary.rows_out == 5).all() and (sweep / "sweep_summary.md").exists()
    assert "sweep summary" in res.stdout
    manifests = [json.loads(p.read_text()) for p in sweep.glob("*/manifest.json")]
    assert len(manifests) == 4


def test_cli_run_prints_summary(tmp_path):
    res = cli(
        "run", "--config-dir", TINY_DIRS[0], *TINY, "model=test", f"hydra.run.dir={tmp_path}/r", cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "tiny: 5 rows out" in res.stderr and (tmp_path / "r" / "dataset.jsonl").exists()
