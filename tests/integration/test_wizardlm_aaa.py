"""wizardlm_aaa end to end on the test model: outputs, AAA on/off, keep-if-improved, Dolly CSV,
and a temperature sweep. Its golden prompts (tests/golden/wizardlm_aaa/*.txt) and outputs are
checked, with every other pipeline's, by tests/integration/test_golden_prompts.py and
test_golden_outputs.py. The composed stages and outputs of the AAA phase
mounted twice (conf/phase/aaa/) are checked against the copied-out pipeline they replaced.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT
from omegaconf import OmegaConf

from selfalign import io
from selfalign.hydra_setup import compose_config
from selfalign.paths import sample_path
from selfalign.stages.judge import DEFAULT_WEIGHTS, composite

GOLDEN = ROOT / "tests" / "golden" / "wizardlm_aaa"
DIMS = list(DEFAULT_WEIGHTS)
TEXTS = ("instruction", "response")


def requests(manifest: dict, stage: str) -> int:
    entry = next(s for s in manifest["stages"] if s["name"] == stage)
    return sum(m["requests"] for m in entry["llm"].values())


def check_row(r: dict, keep_if_improved: bool = True) -> None:
    for c in TEXTS:
        final = r[f"{c}_aaa"] if r[f"{c}_aaa_applied"] else r[f"{c}_pre_aaa"]
        assert r[c] == final
        dims = {d: r[f"{c}_score_{d}"] for d in DIMS}
        assert r[f"{c}_score"] == pytest.approx(
            composite(dims, DEFAULT_WEIGHTS, ["toxicity", "bias"]), abs=1e-3
        )
        if r[f"{c}_aaa_applied"]:
            assert r[f"{c}_score"] == r[f"{c}_aaa_score"]
            assert r[f"{c}_written_by"] == "self_teach"
            if keep_if_improved:
                assert r[f"{c}_aaa_score"] >= r[f"{c}_pre_aaa_score"]
        else:
            assert r[f"{c}_score"] == r[f"{c}_pre_aaa_score"]
        assert r[f"{c}_model"] == "test:default@:"


def test_default_run(run_pipeline):
    df, manifest, run_dir = run_pipeline("pipeline=wizardlm_aaa", "n_rows=4")
    assert len(df) == 4 and list(df.row_id) == ["0", "1", "2", "3"]
    assert {"topic", "context", "example_instruction", "example_response"} <= set(df.columns)
    for r in df.to_dict(orient="records"):
        check_row(r)
        assert r["instruction_co_teachers"] == "default T=0.3 → default T=1"
        assert r["instruction_suggestions"] and r["response_suggestions"]
        assert r["instruction"] != r["example_instruction"]
    # 4 rows × 5 candidates, each judged once (the test model always gives every dimension)
    assert requests(manifest, "gen_instructions") == 20
    assert requests(manifest, "judge_responses") == 20
    # per row: 2 co-teachers + suggestions + self-teach + re-judge
    assert requests(manifest, "aaa_instruction") == 4 * 5
    sft = io.read_jsonl(run_dir / "sft.jsonl")
    assert sft.messages[0][0]["role"] == "user" and len(sft) == 4
    assert manifest["score_means"]["instruction_score"] > 0


def test_aaa_disabled_is_the_originals_disable_aaa(run_pipeline):
    df, manifest, _ = run_pipeline("pipeline=wizardlm_aaa", "aaa.enabled=false", "n_rows=2")
    assert requests(manifest, "aaa_instruction") == 0 and requests(manifest, "aaa_response") == 0
    assert not df.instruction_aaa_applied.any() and df.response_aaa.isna().all()
    assert (df.instruction == df.instruction_pre_aaa).all()
    for r in df.to_dict(orient="records"):
        check_row(r)


def test_keep_if_improved_both_ways(run_pipeline, tmp_path):
    kept, _, _ = run_pipeline("pipeline=wizardlm_aaa", "n_rows=8", run_dir=tmp_path / "a")
    always, _, _ = run_pipeline(
        "pipeline=wizardlm_aaa", "n_rows=8", "aaa.keep_if_improved=false", run_dir=tmp_path / "b"
    )
    for r in kept.to_dict(orient="records"):
        check_row(r)
    for r in always.to_dict(orient="records"):
        check_row(r, keep_if_improved=False)
    # the instruction AAA sees the same inputs both times, so the same AAA texts and verdicts
    assert list(kept.instruction_aaa) == list(always.instruction_aaa)
    worse = ~kept.instruction_aaa_applied & ~kept.instruction_aaa_reverted
    assert worse.any(), "the sample should contain a row where AAA made things worse"
    assert always.instruction_aaa_applied[worse].all()
    assert (always.instruction[worse] == always.instruction_aaa[worse]).all()


def test_dolly_csv_through_the_field_mapping(run_pipeline):
    df, _, _ = run_pipeline(
        "pipeline=wizardlm_aaa",
        f"input_path={sample_path('dolly_style.csv')}",
        "n_rows=null",
        "aaa.enabled=false",
        "num_instructions=2",
        "num_responses=2",
    )
    assert len(df) == 4 and set(df.category) == {"closed_qa", "summarization", "information_extraction"}
    assert df.example_instruction[0].startswith("How do honey bees")


def test_temperature_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "SELFALIGN_CACHE": str(tmp_path / "cache.sqlite")}
    cmd = [
        str(Path(sys.executable).parent / "selfalign"),
        "run",
        "-m",
        "pipeline=wizardlm_aaa",
        "model=test",
        "n_rows=2",
        "temperature=0.2,0.8",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(summary.status) == ["ok", "ok"] and list(summary.rows_out) == [2, 2]
    assert [o.split("temperature=")[1].split()[0] for o in summary.overrides] == ["0.2", "0.8"]
    for job in ("0", "1"):
        cfg = (sweep / job / "config.yaml").read_text()
        assert f"temperature: {['0.2', '0.8'][int(job)]}" in cfg
    assert "mean_instruction_score" in summary.columns


# the golden helper for stages.json / runs/
def check_golden(path: Path, text: str) -> None:
    if os.environ.get("SELFALIGN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with SELFALIGN_UPDATE_GOLDEN=1"
    assert path.read_text(encoding="utf-8") == text, (
        f"{path.name}: differs from {path}. If the change is intended, rerun with "
        "SELFALIGN_UPDATE_GOLDEN=1 and review the diff."
    )


PHASE_STAGES = [
    "gen_instructions",
    "judge_instructions",
    "select_instruction",
    "aaa_instruction",
    "gen_responses",
    "judge_responses",
    "select_response",
    "aaa_response",
]


def composed_stages(overrides: list[str]) -> dict:
    cfg = compose_config(["pipeline=wizardlm_aaa", "model=test", *overrides])
    pipe = OmegaConf.to_container(cfg.pipeline, resolve=True)
    return {
        "overrides": overrides,
        "order": pipe["order"],
        "stages": {n: pipe["stages"][n] for n in PHASE_STAGES},
    }


def test_golden_phase_mounted_twice_gives_the_stages_it_replaced():
    """The 8 phase stages compose to the params of the copied-out pipeline: with the defaults,
    and with the README's root names and `pipeline.stages.X.k=v` overrides (the latter win)."""
    path = GOLDEN / "stages.json"
    variants = json.loads(path.read_text(encoding="utf-8"))
    got = {name: composed_stages(v["overrides"]) for name, v in variants.items()}
    check_golden(path, json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    over = got["overrides"]["stages"]
    assert over["gen_responses"]["n"] == 4 and over["gen_instructions"]["n"] == 3
    assert over["aaa_response"]["active"] is False


@pytest.mark.parametrize(
    ("variant", "overrides"),
    [("default", []), ("big", ["n_rows=8", "num_instructions=3", "num_responses=3"])],
)
def test_golden_outputs_byte_identical(run_pipeline, tmp_path, variant, overrides):
    """dataset.jsonl and the sft view, byte for byte, as the copied-out pipeline wrote them."""
    _, _, run_dir = run_pipeline("pipeline=wizardlm_aaa", *overrides, run_dir=tmp_path / variant)
    for name in ("dataset.jsonl", "sft.jsonl"):
        check_golden(GOLDEN / "runs" / variant / name, (run_dir / name).read_text(encoding="utf-8"))
