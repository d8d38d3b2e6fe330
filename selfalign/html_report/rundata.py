"""What a run report shows, read from a run dir: manifest.json, rejected.jsonl, stages/, dataset,
config.yaml (and its pipeline.citation)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from selfalign import io
from selfalign.errors import SelfAlignError
from selfalign.redact import config_yaml, redact, redact_text

# Rows read per file at most: enough for histograms and samples; a report of a million-row run
# must not take as long as the run.
MAX_ROWS = 20_000


def read_head(path: Path, limit: int = MAX_ROWS) -> pd.DataFrame:
    """The first `limit` rows of a JSONL file selfalign wrote; empty when it is missing or empty."""
    if not path.is_file() or not path.stat().st_size:
        return pd.DataFrame()
    try:
        return next(io.iter_table(path, "jsonl", first=limit)).reset_index(drop=True)
    except (SelfAlignError, StopIteration):
        return pd.DataFrame()


@dataclass
class RunData:
    run_dir: Path
    manifest: dict[str, Any]
    stages: list[dict[str, Any]] = field(default_factory=list)
    _frames: dict[int, pd.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, run_dir: Path) -> RunData:
        path = run_dir / "manifest.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SelfAlignError(
                f"{path}: cannot read the run's manifest ({exc}). Point `selfalign report` at a "
                "run dir (it holds manifest.json) or a sweep dir (its jobs do)."
            ) from None
        if not isinstance(manifest, dict):
            raise SelfAlignError(f"{path}: not a run manifest (a JSON object is expected).")
        manifest = redact(manifest)  # a run dir written before redaction existed may hold a key
        stages = manifest.get("stages") or _stages_from_stats(run_dir)
        return cls(run_dir, manifest, stages)

    def stage_file(self, index: int) -> Path:
        return self.run_dir / "stages" / f"{index:02d}_{self.stages[index]['name']}.jsonl"

    def frame(self, index: int) -> pd.DataFrame:
        return self._frames.setdefault(index, read_head(self.stage_file(index)))

    def complete(self, index: int) -> bool:
        """Whether frame(index) holds every row the stage put out."""
        return len(self.frame(index)) == self.stages[index].get("rows_out")

    @cached_property
    def dataset(self) -> pd.DataFrame:
        return read_head(self.run_dir / "dataset.jsonl")

    @cached_property
    def rejected(self) -> list[dict[str, Any]]:
        """This attempt's rejected records (the file keeps earlier attempts' too)."""
        df = read_head(self.run_dir / "rejected.jsonl")
        recs = [{k: v for k, v in r.items() if not _missing(v)} for r in df.to_dict(orient="records")]
        attempt = self.manifest.get("attempt")
        return [r for r in recs if attempt is None or r.get("attempt") in (None, attempt)]

    @cached_property
    def config_text(self) -> str | None:
        path = self.run_dir / "config.yaml"
        if not path.is_file():
            return None
        try:
            return config_yaml(OmegaConf.load(path), resolve=False)  # redacted, as it is written
        except Exception:  # noqa: BLE001 — not YAML (hand-edited): show it, key-shaped text masked
            return redact_text(path.read_text(encoding="utf-8"))

    @cached_property
    def citation(self) -> dict[str, Any] | None:
        """The run's `pipeline.citation` (title, authors, year, url, bibtex), None without one."""
        try:
            cfg = OmegaConf.to_container(OmegaConf.load(self.run_dir / "config.yaml"), resolve=False)
        except Exception:  # noqa: BLE001 — no or odd config.yaml: the page shows no citation
            return None
        found = (cfg.get("pipeline") or {}).get("citation") if isinstance(cfg, dict) else None
        return found if isinstance(found, dict) and found.get("bibtex") else None


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _stages_from_stats(run_dir: Path) -> list[dict[str, Any]]:
    """Stage figures from the checkpoints' stats files, for a run that stopped before it wrote
    its manifest's stage list (killed, interrupted)."""
    out = []
    for path in sorted((run_dir / "stages").glob("[0-9][0-9]_*.stats.json")):
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        st = saved.get("stats", {})
        out.append(
            {
                "name": path.name[3 : -len(".stats.json")],
                "kind": "?",
                "status": "ran",
                "rows_in": st.get("rows_in"),
                "rows_out": st.get("rows_out"),
                "drops": st.get("drops", {}),
                "calls": st.get("jobs", 0),
                "failed_calls": st.get("failed", 0),
                "wall_s": st.get("wall_s", 0.0),
                "llm": {m: _accounting(a) for m, a in saved.get("llm", {}).items()},
            }
        )
    return out


def _accounting(raw: dict[str, Any]) -> dict[str, Any]:
    lat = sorted(raw.get("latencies") or [])

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else 0.0

    return {
        **{
            k: raw.get(k, 0)
            for k in ("requests", "cache_hits", "retries", "failures", "prompt_tokens", "completion_tokens")
        },
        "cost_usd": raw.get("cost", 0.0),
        "latency_p50_s": pct(0.5),
        "latency_p95_s": pct(0.95),
    }


def stage_totals(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage's LLM figures summed over its models (latency only when there is one model)."""
    llm = list((stage.get("llm") or {}).values())
    total = {
        k: sum(x.get(k, 0) or 0 for x in llm)
        for k in (
            "requests",
            "cache_hits",
            "retries",
            "failures",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
        )
    }
    total["tokens"] = total["prompt_tokens"] + total["completion_tokens"]
    one = llm[0] if len(llm) == 1 else {}
    total["latency_p50_s"] = one.get("latency_p50_s")
    total["latency_p95_s"] = one.get("latency_p95_s")
    return total


def funnel(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage: rows in, rows out, rows dropped (by reason) and status."""
    rows = []
    for s in stages:
        drops = dict(sorted((s.get("drops") or {}).items(), key=lambda kv: -kv[1]))
        rows.append(
            {
                "name": s["name"],
                "kind": s.get("kind", "?"),
                "status": s.get("status", "?"),
                "rows_in": s.get("rows_in"),
                "rows_out": s.get("rows_out"),
                "dropped": sum(drops.values()),
                "drops": drops,
            }
        )
    return rows
