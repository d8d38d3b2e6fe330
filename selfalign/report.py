"""Human-readable summaries of a run (rich tables); library code never prints, the CLI does.

The terminal summary stays short enough for 80 columns; everything else is in the run's
report.html (selfalign/html_report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

_COLUMNS = ("stage", "in", "out", "dropped", "calls", "cached", "tokens", "s")


def stage_table(manifest: dict[str, Any]) -> Table:
    rows = manifest.get("rows")
    title = f"{manifest.get('pipeline', '')}: {'no dataset' if rows is None else f'{rows} rows out'}"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for col in _COLUMNS:
        # fold, never cut: a long stage name wraps onto a second line rather than end in "…"
        table.add_column(col, justify="left" if col == "stage" else "right", overflow="fold")
    for s in manifest.get("stages", []):
        name = escape(s["name"]) + ("*" if s.get("reused") else "")
        if s.get("status") == "not run":
            table.add_row(name, "-", "-", "not run", "", "", "", "")
            continue
        llm = list((s.get("llm") or {}).values())
        req = sum(x["requests"] for x in llm)
        hits = sum(x["cache_hits"] for x in llm)
        tok = sum(x["prompt_tokens"] + x["completion_tokens"] for x in llm)
        table.add_row(
            name,
            str(s["rows_in"]),
            str(s["rows_out"]),
            str(sum(s["drops"].values()) or "-"),
            str(req or "-"),
            str(hits or "-"),
            str(tok or "-"),
            f"{s['wall_s']:.1f}",
        )
    return table


def drop_lines(manifest: dict[str, Any]) -> list[str]:
    """One line per stage that dropped rows: its reasons, largest first."""
    out = []
    for s in manifest.get("stages", []):
        drops = sorted((s.get("drops") or {}).items(), key=lambda kv: -kv[1])
        if drops:
            out.append(f"  {s['name']}: " + ", ".join(f"{k}={v}" for k, v in drops))
    return out


def spent_line(manifest: dict[str, Any]) -> str:
    """Dollars and tokens spent (this attempt and in all), against the budget if one is set."""
    now = manifest.get("llm_attempt") or {}
    total = manifest.get("llm_totals") or now
    tokens = now.get("prompt_tokens", 0) + now.get("completion_tokens", 0)
    budget = manifest.get("budget")
    paid = total.get("cost_usd", 0.0)
    if budget:  # cache hits count $0 above, also those a capped attempt paid for: the record has all
        paid = max(paid, budget.get("spent_usd") or 0.0)
    line = f"spent ${now.get('cost_usd', 0.0):.4f} this run ({tokens} tokens), ${paid:.4f} for the dataset"
    if budget:
        cap = (
            f"${budget['max_usd']:g}"
            if budget.get("max_usd") is not None
            else f"{budget['max_tokens']} tokens"
        )
        got = (
            f"${budget['spent_usd']:.4f}"
            if budget.get("max_usd") is not None
            else f"{budget['spent_tokens']} tokens"
        )
        line += f"; budget {cap}, used {got} over all attempts into this run dir"
        if budget.get("stopped"):
            line += " [bold yellow](stopped by the budget)[/]"
    return line


def print_run_summary(console: Console, manifest: dict[str, Any], run_dir: str) -> None:
    console.print(stage_table(manifest))
    drops = drop_lines(manifest)
    if drops:
        console.print("dropped rows by reason:\n" + escape("\n".join(drops)), highlight=False)
    if any(s.get("reused") for s in manifest.get("stages", [])):
        console.print("* reused from an earlier run into this run dir", highlight=False)
    totals = manifest.get("llm_attempt") or manifest.get("llm_totals", {})
    console.print(
        f"requests {totals.get('requests', 0)} (sent {totals.get('sent', 0)}, cached "
        f"{totals.get('cache_hits', 0)}) · failures {totals.get('failures', 0)} · rejected rows "
        f"{manifest.get('rejected', 0)} · wall {manifest.get('wall_s', 0):.1f}s",
        highlight=False,
    )
    console.print(spent_line(manifest), highlight=False)
    console.print(f"run dir: [bold]{escape(run_dir)}[/]", highlight=False)
    report = Path(run_dir) / "report.html"
    if report.is_file():
        console.print(f"report:  [bold]{escape(str(report))}[/] (open it in a browser)", highlight=False)
