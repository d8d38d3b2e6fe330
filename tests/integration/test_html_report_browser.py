"""Every shipped pipeline's report.html and a 2×2 sweep's, opened in headless chromium: no
console error, every chart drawn, the numbers shown equal manifest.json, light and dark themes.

chromium comes from Debian (`apt-get install chromium`); .ci/run installs it and sets
SELFALIGN_REQUIRE_BROWSER=1, so in CI a missing browser fails these tests instead of skipping."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from browser import Browser, Page, find_chromium
from helpers import PIPELINES, ROOT, TINY, TINY_DIRS, cli

from selfalign.errors import SelfAlignError

pytestmark = pytest.mark.slow  # a headless browser
EVIL = '<script>window.__xss = 1</script><img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        why = "chromium is not installed: apt-get install chromium (.ci/run does it)"
        if os.environ.get("SELFALIGN_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    with Browser() as b:
        yield b


def check_charts(page: Page) -> None:
    charts = page.probe["charts"]
    assert charts, "no chart on the page"
    for i, c in enumerate(charts):
        assert c["svg"], f"chart {i}: no <svg>"
        assert c["width"] > 300 and c["height"] > 60, f"chart {i} is not drawn at size: {c}"
        assert c["shapes"] > 0 and c["texts"] > 0, f"chart {i} is empty: {c}"
        assert c["text_fill"].startswith("rgb"), f"chart {i}: theme colour not resolved: {c}"


def shown(text: str, expected: Any, where: str) -> None:
    """The text a cell shows stands for `expected`, to the decimals it shows."""
    if isinstance(expected, tuple):
        parts = text.split(" / ")
        assert len(parts) == len(expected), where
        for p, e in zip(parts, expected, strict=True):
            shown(p, e, where)
        return
    if expected is None:
        assert text == "-", f"{where}: shows {text!r}, manifest has nothing"
        return
    value = float(text.replace(",", ""))
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert abs(value - float(expected)) <= 0.5 * 10**-decimals + 1e-9, f"{where}: {text} != {expected}"


def run_expected(cell: dict[str, Any], m: dict[str, Any]) -> Any:
    """What manifest.json says a cell of the run report shows."""
    totals = m.get("llm_attempt") or m.get("llm_totals") or {}
    key, stage = cell["key"], {s["name"]: s for s in m.get("stages", [])}.get(cell["stage"])
    if cell["where"] == "totals":
        return {
            "rows": m.get("rows"),
            "rejected": m.get("rejected"),
            "wall_s": m.get("wall_s"),
            "tokens": (totals.get("prompt_tokens"), totals.get("completion_tokens")),
            "latency": (totals.get("latency_p50_s"), totals.get("latency_p95_s")),
        }.get(key, totals.get(key))
    assert stage is not None, cell
    if cell["where"] == "funnel-table":
        return sum(stage["drops"].values()) if key == "dropped" else stage.get(key)
    if key in ("calls", "failed_calls", "wall_s"):
        return stage[key]
    llm = stage["llm"]
    if cell["model"]:
        return llm[cell["model"]][key]
    if key.startswith("latency"):
        return next(iter(llm.values()))[key] if len(llm) == 1 else None
    return sum(a[key] for a in llm.values())


def check_run_numbers(page: Page, m: dict[str, Any]) -> None:
    cells = page.probe["cells"]
    for c in cells:
        shown(c["text"], run_expected(c, m), f"{c['where']} {c['stage']} {c['model']} {c['key']}")
    ran = [s for s in m["stages"] if s["status"] != "not run"]
    assert len(cells) >= 11 + 3 * len(m["stages"]) + 12 * len(ran)  # each figure was checked
    drops = {(s["name"], r): n for s in m["stages"] for r, n in s.get("drops", {}).items()}
    assert {(r["stage"], r["reason"]): int(r["text"].split(" = ")[1]) for r in page.probe["reasons"]} == drops


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_pipeline_report_in_browser(pipeline, run_pipeline, browser):
    _, manifest, run_dir = run_pipeline(f"pipeline={pipeline}")
    page = browser.open(run_dir / "report.html")
    assert page.errors == []
    check_charts(page)
    on_disk = json.loads((run_dir / "manifest.json").read_text())
    check_run_numbers(page, on_disk)
    assert not page.probe["too_wide"], "the page is wider than a 1280 px window"
    assert page.probe["scripts"] == 0


def test_report_reads_well_in_dark_and_light_and_on_a_small_laptop(run_pipeline, browser):
    _, _, run_dir = run_pipeline("pipeline=wizardlm_aaa")
    light = browser.open(run_dir / "report.html")
    dark = browser.open(run_dir / "report.html", dark=True, width=1024)
    assert light.errors == dark.errors == []
    assert light.probe["background"] != dark.probe["background"]
    assert {c["text_fill"] for c in light.probe["charts"]} != {c["text_fill"] for c in dark.probe["charts"]}
    check_charts(dark)
    assert not dark.probe["too_wide"], "the page is wider than a 1024 px window"


def test_failed_run_with_markup_in_model_text(run_pipeline, test_model, browser, tmp_path):
    test_model.queue(*[f"Answer {EVIL}"] * 10, *[f"No score. {EVIL}"] * 60)
    with pytest.raises(SelfAlignError):
        run_pipeline(
            *TINY,
            "pipeline.stages.judge.max_failure_rate=1.0",
            config_dirs=TINY_DIRS,
            run_dir=tmp_path / "evil",
        )
    page = browser.open(tmp_path / "evil" / "report.html")
    assert page.errors == []  # an injected script would be blocked by the CSP, and logged
    assert page.probe["scripts"] == 0 and EVIL in page.probe["text"]  # shown as text
    check_run_numbers(page, json.loads((tmp_path / "evil" / "manifest.json").read_text()))
    assert "failed" in page.probe["title"]


def test_sweep_report_2x2_in_browser(tmp_path, browser):
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
        env={"SELFALIGN_CACHE": str(tmp_path / "c.sqlite")},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "; report: " in res.stdout and (sweep / "report.html").is_file()
    page = browser.open(sweep / "report.html")
    assert page.errors == []
    check_charts(page)
    assert page.probe["links"] == [f"{j}/report.html" for j in range(4)]
    cells = page.probe["cells"]
    for c in cells:
        m = json.loads((sweep / c["job"] / "manifest.json").read_text())
        t = m["llm_totals"]
        expected = {
            "status": None,
            "rows_in": m["stages"][0]["rows_out"],
            "rows_out": m["rows"],
            "drops": sum(sum(s["drops"].values()) for s in m["stages"]),
            "rejected": m["rejected"],
            "tokens": t["prompt_tokens"] + t["completion_tokens"],
            "cost_usd": t["cost_usd"],
            "wall_s": m["wall_s"],
        }
        if c["key"] == "status":
            assert c["text"] == m["status"]
        elif c["key"].startswith("mean_"):
            shown(c["text"], m["score_means"][c["key"][5:]], c["key"])
        else:
            shown(c["text"], expected[c["key"]], f"job {c['job']} {c['key']}")
    assert len({c["job"] for c in cells}) == 4 and len(cells) >= 4 * 9
    job = browser.open(sweep / "0" / "report.html")  # where the first link leads
    assert job.errors == [] and "tiny" in job.probe["title"]
