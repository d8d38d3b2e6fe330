"""The sweep summary: one row per multirun job, printed and written at the end of `run -m`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def summarize(sweep_dir: Path) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for path in sorted(sweep_dir.glob("*/manifest.json"), key=lambda p: _num(p.parent.name)):
        m = json.loads(path.read_text())
        stages = m.get("stages", [])
        totals = m.get("llm_totals", {})
        row = {
            "job": path.parent.name,
            "overrides": " ".join(m.get("overrides", [])),
            "status": m.get("status", "?"),
            "rows_in": stages[0].get("rows_out") if stages else None,
            "rows_out": m.get("rows"),
            "drops": sum(sum(s.get("drops", {}).values()) for s in stages),
            "rejected": m.get("rejected"),
            "tokens": totals.get("prompt_tokens", 0) + totals.get("completion_tokens", 0),
            "wall_s": m.get("wall_s"),
        }
        row.update({f"mean_{k}": v for k, v in (m.get("score_means") or {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _num(name: str) -> int:
    return int(name) if name.isdigit() else 10**9


def render(df: pd.DataFrame, console: Console) -> None:
    table = Table(title="sweep summary")
    for col in df.columns:
        table.add_column(col, overflow="fold")
    for rec in df.to_dict(orient="records"):
        table.add_row(
            *(
                escape("" if v is None or v != v else f"{v:.2f}" if isinstance(v, float) else str(v))
                for v in rec.values()
            )
        )
    console.print(table)


def to_markdown(df: pd.DataFrame) -> str:
    cells = [[("" if v is None or v != v else str(v)) for v in r] for r in df.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    """Hydra callback (conf/config.yaml: hydra.callbacks.sweep_summary)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        df = summarize(sweep_dir)
        if df.empty:
            return
        df.to_csv(sweep_dir / "sweep_summary.csv", index=False)
        (sweep_dir / "sweep_summary.md").write_text(to_markdown(df))
        console = Console()
        render(df, console)
        console.print(f"sweep summary written to {sweep_dir / 'sweep_summary.csv'}")
