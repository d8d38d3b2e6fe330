"""The run report's content: figures from the run dir, charts, samples, config and prompts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from selfalign.html_report import samples, scores
from selfalign.html_report.charts import Charts
from selfalign.html_report.rundata import RunData, funnel, stage_totals
from selfalign.prompts import RUN_COPY, digest

STATUS_TEXT = {
    "ok": "ok: the dataset was produced within the failure limits",
    "failed": "failed or degraded",
    "running": "stopped before it finished (crashed or interrupted); figures from the stage files",
}


def run_context(data: RunData) -> dict[str, Any]:
    m = data.manifest
    charts = Charts()
    status = str(m.get("status", "?"))
    if status == "failed" and m.get("exit_code") == 4:
        status = "budget"
    return {
        "m": m,
        "status": status,
        "status_text": STATUS_TEXT.get(status, "stopped by the budget" if status == "budget" else status),
        "run_dir": str(data.run_dir),
        "totals": m.get("llm_attempt") or m.get("llm_totals") or {},
        "all_totals": m.get("llm_totals") or {},
        "funnel": _funnel(data, charts),
        "stages": _stage_rows(data),
        "calls_chart": _calls_chart(data, charts),
        "scores": _scores(data, charts),
        "final_cards": samples.final_cards(data),
        "stage_samples": samples.stage_samples(data),
        "config": data.config_text,
        "config_sha": _sha(data.config_text),
        "citation": data.citation,
        "prompts": prompt_sources(data),
    }


def _sha(textual: str | None) -> str | None:
    return hashlib.sha256(textual.encode()).hexdigest() if textual is not None else None


def _funnel(data: RunData, charts: Charts) -> dict[str, Any]:
    rows = funnel(data.stages)
    ran = [r for r in rows if r["status"] != "not run"]
    svg = None
    if ran:
        svg = charts.barh(
            [r["name"] for r in ran],
            {"rows out": [r["rows_out"] or 0 for r in ran], "dropped": [r["dropped"] for r in ran]},
            "rows out of each stage, and rows it dropped",
            stacked=True,
            notes=[
                f"{r['rows_out'] or 0}" + (f"  (+{r['dropped']} dropped)" if r["dropped"] else "")
                for r in ran
            ],
        )
    return {"rows": rows, "svg": svg}


def _stage_rows(data: RunData) -> list[dict[str, Any]]:
    out = []
    for s in data.stages:
        llm = s.get("llm") or {}
        out.append({"s": s, "t": stage_totals(s), "models": llm if len(llm) > 1 else {}})
    return out


def _calls_chart(data: RunData, charts: Charts) -> str | None:
    ran = [s for s in data.stages if s.get("status") != "not run"]
    if not ran:
        return None
    names = [s["name"] for s in ran]
    totals = [stage_totals(s) for s in ran]
    panels = [
        ("wall time (s)", names, [s.get("wall_s") or 0 for s in ran]),
        ("requests", names, [t["requests"] for t in totals]),
        ("tokens", names, [t["tokens"] for t in totals]),
    ]
    return charts.panels(panels)


def _scores(data: RunData, charts: Charts) -> list[dict[str, Any]]:
    frames = {s["name"]: i for i, s in enumerate(data.stages)}
    return [_score_item(g, data.frame(frames[g.stage]), charts) for g in scores.score_groups(data)]


def _score_item(g: scores.ScoreGroup, frame: Any, charts: Charts) -> dict[str, Any]:
    """One stage's score columns: a chart per x scale, a table, and its before/after pairs."""
    pairs = scores.paired(g)
    plain = [c for c in g.columns if c not in pairs]

    def series(c: str) -> dict[str, Any]:
        final = {"final dataset": g.final[c]} if c in g.final else {}
        return {f"at {g.stage}": g.columns[c], **final}

    stats = [
        {
            "column": c,
            **scores.summary(g.columns[c]),
            "final": scores.summary(g.final[c]) if c in g.final else None,
        }
        for c in plain
    ]
    hist = [
        charts.ridges([(c, series(c)) for c in cols], f"score distributions at {g.stage}")
        for cols in scores.by_scale({c: g.columns[c] for c in plain})
    ]
    item = {"stage": g.stage, "rows": g.rows, "stats": stats, "hist": hist, "refine": None}
    if g.pairs:
        rows = [(after, {"before": g.columns[b], "after": g.columns[after]}) for b, after in g.pairs]
        item["refine"] = charts.ridges(rows, f"{g.stage}: before / after refinement")
        item["refine_rows"] = scores.refine_rows(g, frame)
    return item


def prompt_sources(data: RunData) -> list[dict[str, Any]]:
    """Every prompt the run used: its hash from the manifest, the stages that used it, and its
    text from the run dir's own copy (RUN_COPY), so a prompt edited since shows as it was."""
    used: dict[str, dict[str, Any]] = {}
    for s in data.stages:
        for name, sha in (s.get("prompts") or {}).items():
            entry = used.setdefault(
                name, {"name": name, "sha256": sha, "stages": [], "source": None, "note": None}
            )
            entry["stages"].append(s["name"])
    saved = _saved_prompts(data.run_dir)
    for entry in used.values():
        copy = saved.get(entry["name"]) or {}
        sources = copy.get("sources")
        if not isinstance(sources, dict) or not sources or digest(sources) != entry["sha256"]:
            # a run dir from before runs kept their prompts, or one edited by hand
            entry["note"] = f"the run dir holds no copy of this prompt ({RUN_COPY})"
        else:
            entry["source"] = _joined(sources)
    return list(used.values())


def _saved_prompts(run_dir: Path) -> dict[str, Any]:
    try:
        found = json.loads((run_dir / RUN_COPY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _joined(sources: dict[str, str]) -> str:
    """The template's text, then each file it includes under a marker line."""
    first, *included = sources.items()
    return first[1] + "".join(f"\n{{# ── included: {f} ── #}}\n{text}" for f, text in included)
