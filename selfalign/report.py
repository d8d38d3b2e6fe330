"""Human-readable summaries of a run (rich tables); library code never prints, the CLI does."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def stage_table(manifest: dict[str, Any]) -> Table:
    rows = manifest.get("rows")
    title = f"{manifest.get('pipeline', '')}: {'no dataset' if rows is None else f'{rows} rows out'}"
    table = Table(title=title)
    for col in ("stage", "kind", "in", "out", "drops", "requests", "cached", "tokens", "$",
                "wall s"):
        table.add_column(col, justify="right" if col not in ("stage", "kind", "drops") else "left")
    for s in manifest.get("stages", []):
        if s.get("status") == "not run":
            table.add_row(s["name"], s["kind"], "-", "-", "not run", "-", "-", "-", "-", "-")
            continue
        llm = list(s.get("llm", {}).values())
        req = sum(x["requests"] for x in llm)
        hits = sum(x["cache_hits"] for x in llm)
        tok = sum(x["prompt_tokens"] + x["completion_tokens"] for x in llm)
        usd = sum(x.get("cost_usd", 0.0) for x in llm)
        drops = ", ".join(f"{k}={v}" for k, v in sorted(s["drops"].items(), key=lambda kv: -kv[1]))
        table.add_row(s["name"] + (" (reused)" if s.get("reused") else ""), s["kind"],
                      str(s["rows_in"]), str(s["rows_out"]), escape(drops) or "-",
                      str(req or "-"), str(hits or "-"), str(tok or "-"),
                      f"{usd:.4f}" if usd else "-", f"{s['wall_s']:.1f}")
    return table


def spent_line(manifest: dict[str, Any]) -> str:
    """Dollars and tokens spent (this attempt and in all), against the budget if one is set."""
    now = manifest.get("llm_attempt") or {}
    total = manifest.get("llm_totals") or now
    tokens = now.get("prompt_tokens", 0) + now.get("completion_tokens", 0)
    line = (f"spent ${now.get('cost_usd', 0.0):.4f} this run ({tokens} tokens), "
            f"${total.get('cost_usd', 0.0):.4f} for the dataset")
    budget = manifest.get("budget")
    if budget:
        cap = (f"${budget['max_usd']:g}" if budget.get("max_usd") is not None
               else f"{budget['max_tokens']} tokens")
        got = (f"${budget['spent_usd']:.4f}" if budget.get("max_usd") is not None
               else f"{budget['spent_tokens']} tokens")
        line += f"; budget {cap}, used {got} over all attempts into this run dir"
        if budget.get("stopped"):
            line += " [bold yellow](stopped by the budget)[/]"
    return line


def print_run_summary(console: Console, manifest: dict[str, Any], run_dir: str) -> None:
    console.print(stage_table(manifest))
    totals = manifest.get("llm_attempt") or manifest.get("llm_totals", {})
    console.print(
        f"requests this run {totals.get('requests', 0)} (sent {totals.get('sent', 0)}, cached "
        f"{totals.get('cache_hits', 0)}), failures {totals.get('failures', 0)}, rejected rows "
        f"{manifest.get('rejected', 0)}, wall {manifest.get('wall_s', 0):.1f}s")
    console.print(spent_line(manifest))
    console.print(f"run dir: [bold]{run_dir}[/] (dataset.jsonl, dataset.parquet, rejected.jsonl, "
                  "manifest.json, stages/)")
