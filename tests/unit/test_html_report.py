"""The HTML report without a browser: escaping, self-containment, failed and interrupted runs,
the `report` command, the charts' SVG, and the terminal summaries at 80 columns."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import FIXTURES
from rich.console import Console

from selfalign.cli import main
from selfalign.errors import SelfAlignError
from selfalign.html_report import write_run_report
from selfalign.html_report.charts import Charts
from selfalign.report import print_run_summary
from selfalign.sweep_summary import render

TINY = ["pipeline=tiny", f"prompts.search_path=[{FIXTURES / 'prompts'}]"]
DIRS = [str(FIXTURES / "conf")]
EVIL = '<script>window.__xss = 1</script><img src=x onerror="alert(1)">'


def run_evil(run_pipeline, test_model, run_dir: Path) -> dict:
    """tiny with markup in every answer and every judge reply unparsable: the replies land in
    rejected.jsonl with their raw text, no row is left and the run fails; returns its manifest."""
    test_model.queue(*[f"Answer {EVIL}"] * 10, *[f"No score. {EVIL}"] * 60)
    with pytest.raises(SelfAlignError) as err:
        run_pipeline(*TINY, "pipeline.stages.judge.max_failure_rate=1.0", config_dirs=DIRS, run_dir=run_dir)
    return err.value.manifest  # type: ignore[attr-defined]


def test_report_is_written_at_the_end_of_a_run_and_is_self_contained(run_pipeline):
    _, manifest, run_dir = run_pipeline(*TINY, config_dirs=DIRS)
    html = (run_dir / "report.html").read_text()
    assert "default-src 'none'" in html  # the page may load nothing and run no script
    assert not re.search(r"<(script|link|iframe|object|embed)\b", html, re.I)
    refs = re.findall(r'\s(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith("#") for r in refs), refs  # in-page anchors only
    assert not re.search(r"url\((?!#)", html) and "@import" not in html
    assert html.count("<svg") >= 3  # funnel, calls, the judge's scores
    for s in manifest["stages"]:
        assert f'data-stage="{s["name"]}"' in html
    assert "tiny/answer" in html and manifest["stages"][2]["prompts"]["tiny/answer"][:16] in html


def test_model_text_is_escaped_and_a_failed_run_has_a_report(run_pipeline, test_model, tmp_path):
    manifest = run_evil(run_pipeline, test_model, tmp_path / "evil")
    assert manifest["status"] == "failed" and manifest["rejected"] > 0
    html = (tmp_path / "evil" / "report.html").read_text()
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
    assert 'class="raw"' in html  # the rejected replies' raw model text
    assert 'id="error"' in html and "0 rows" in html  # what went wrong


def test_report_of_a_run_that_failed_before_any_stage(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps({"pipeline": "p", "status": "failed", "exit_code": 2, "error": "bad <config>"})
    )
    html = write_run_report(tmp_path).read_text()
    assert "bad &lt;config&gt;" in html and "no dataset" in html


def test_report_of_an_interrupted_run_reads_the_stage_stats(run_pipeline):
    _, manifest, run_dir = run_pipeline(*TINY, config_dirs=DIRS)
    # what a killed run leaves: the manifest still says "running", the checkpoints are there
    (run_dir / "manifest.json").write_text(json.dumps({"status": "running", "attempt": 1}))
    html = write_run_report(run_dir).read_text()
    assert "stopped before it finished" in html
    for s in manifest["stages"]:
        assert f'data-stage="{s["name"]}"' in html
    assert "too_short = 1" in html  # the drops, from clean's stats file


def test_report_command(run_pipeline, tmp_path, capsys):
    _, _, run_dir = run_pipeline(*TINY, config_dirs=DIRS)
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").is_file() and "report.html" in capsys.readouterr().out
    assert main(["report", str(run_dir), "-o", str(tmp_path / "x.html")]) == 0
    assert (tmp_path / "x.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "neither a run dir (no manifest.json) nor a sweep dir" in err and "selfalign run" in err
    assert main(["report"]) == 2 and "give one run dir" in capsys.readouterr().err


def test_charts_follow_the_theme_and_never_share_ids():
    charts = Charts()
    a = charts.barh(["<b>&x"], {"n": [3]}, "t")
    b = charts.ridges([("c$1$", {"s": [1.0, 2.0, 2.5]})], "t")
    assert "&lt;b&gt;&amp;x" in a and "c$1$" in b  # text escaped, and never read as TeX
    assert not re.search(r"#[0-9a-fA-F]{3,8}\b", a + b) and "var(--fg)" in a  # colours: CSS variables
    ids_a, ids_b = (set(re.findall(r'id="([^"]+)"', s)) for s in (a, b))
    assert ids_a and ids_b and not ids_a & ids_b
    assert not a.startswith("<?xml") and "<metadata" not in a


def test_run_summary_fits_80_columns_and_points_at_the_report(run_pipeline):
    _, manifest, run_dir = run_pipeline("pipeline=wizardlm_aaa")
    console = Console(width=80, record=True, color_system=None)
    print_run_summary(console, manifest, str(run_dir))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for s in manifest["stages"]:
        assert s["name"] in text  # whole, not cut
    assert "not_best=12" in text and str(run_dir / "report.html") in text.replace("\n", "")


def test_sweep_table_fits_80_columns():
    df = pd.DataFrame(
        [
            {
                "job": str(i),
                "overrides": f"pipeline=wizardlm_aaa model=test temperature={t} "
                f"++pipeline.stages.gen_instructions.n={n}",
                "status": "ok",
                "rows_in": 3,
                "rows_out": 3,
                "drops": 24,
                "rejected": 0,
                "tokens": 18928,
                "wall_s": 0.64,
                **{f"mean_instruction_score_{d}": 50.0 for d in range(40)},
            }
            for i, (t, n) in enumerate([(0.2, 2), (0.2, 3), (0.8, 2), (0.8, 3)])
        ]
    )
    console = Console(width=80, record=True, color_system=None)
    render(df, console)
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "++pipeline.stages.gen_instructions.n=3" in text and "temperature=0.8" in text
    assert "every job: pipeline=wizardlm_aaa model=test" in text


def test_the_report_shows_the_prompts_the_run_used_after_they_were_edited(run_pipeline, tmp_path):
    # the run dir keeps its prompts (prompts.json, with the manifest's hashes): the report reads
    # only the run dir, so editing or deleting the prompt files later changes nothing in it
    prompts = tmp_path / "prompts"
    shutil.copytree(FIXTURES / "prompts", prompts)
    answer, style = prompts / "tiny" / "answer.j2", prompts / "tiny" / "_style.j2"
    style.write_text("Be kind.\n")
    answer.write_text(answer.read_text() + '{% include "tiny/_style.j2" %}\n')
    _, manifest, run_dir = run_pipeline("pipeline=tiny", f"prompts.search_path=[{prompts}]", config_dirs=DIRS)
    saved = json.loads((run_dir / "prompts.json").read_text())["tiny/answer"]
    assert saved["sha256"] == manifest["stages"][2]["prompts"]["tiny/answer"]
    assert list(saved["sources"]) == ["tiny/answer.j2", "tiny/_style.j2"]
    answer.write_text("EDITED since the run: {{ question }}\n")
    style.write_text("EDITED too\n")
    html = write_run_report(run_dir).read_text()
    assert "EDITED" not in html and "Question: {{ question }}" in html and "Be kind." in html
    assert "included: tiny/_style.j2" in html
    shutil.rmtree(prompts)
    assert "Be kind." in write_run_report(run_dir).read_text()


def test_a_run_dir_without_its_prompts_says_so(run_pipeline):
    _, _, run_dir = run_pipeline(*TINY, config_dirs=DIRS)
    (run_dir / "prompts.json").unlink()  # a run dir written before runs kept their prompts
    html = write_run_report(run_dir).read_text()
    assert "the run dir holds no copy of this prompt" in html and "Question: {{ question }}" not in html


def test_report_shows_the_pipelines_citation(run_pipeline, tmp_path):
    """pipeline.citation in the pipeline's YAML is on the page; a pipeline without one has none."""
    _, _, run_dir = run_pipeline("pipeline=almost", run_dir=tmp_path / "almost")
    html = (run_dir / "report.html").read_text()
    assert '<p id="citation">' in html and "Aligning Large Language Models through Synthetic Feedback" in html
    assert "@inproceedings{kim2023aligning," in html and "aclanthology.org/2023.emnlp-main.844" in html
    _, _, run_dir = run_pipeline(*TINY, config_dirs=DIRS, run_dir=tmp_path / "tiny")
    assert 'id="citation"' not in (run_dir / "report.html").read_text()
