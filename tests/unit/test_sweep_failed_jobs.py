"""The sweep summary is what says which jobs failed (a parallel launcher's jobs run in other
processes): a job that left no manifest counts, with the overrides Hydra saved for it."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from selfalign import sweep, sweep_summary


def _job(root: Path, name: str, manifest: dict | None, overrides: list[str]) -> None:
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    if manifest is not None:
        (root / name / "manifest.json").write_text(json.dumps(manifest))


def test_failed_and_missing_jobs_are_listed(tmp_path: Path, capsys):
    _job(tmp_path, "0", {"status": "ok", "rows": 5, "overrides": ["a=1"]}, ["a=1"])
    _job(tmp_path, "1", None, ["a=2"])  # its process died before it wrote anything
    _job(tmp_path, "2", {"status": "running", "overrides": ["a=3"]}, ["a=3"])  # … or midway
    _job(tmp_path, "10", {"status": "failed", "rows": 0, "overrides": ["a=4"]}, ["a=4"])
    (tmp_path / "notes").mkdir()  # not a job
    df = sweep_summary.summarize(tmp_path)
    assert list(df.job) == ["0", "1", "2", "10"]
    assert list(df.status) == ["ok", "no manifest", "running", "failed"]
    assert df.overrides[1] == "a=2"
    callback = sweep.SweepSummary()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    callback.on_multirun_start(config)
    callback.on_multirun_end(config)
    assert sweep.failed_jobs([]) == ["1", "2", "10"]
    assert sweep.failed_jobs(["3"]) == ["1", "2", "3", "10"]  # with those this process saw fail
    assert "no manifest" in capsys.readouterr().out
    callback.on_multirun_start(config)  # the next sweep starts with none
    assert sweep.failed_jobs([]) == []
