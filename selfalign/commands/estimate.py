"""`selfalign estimate`: calls, tokens, dollars and time of a run before it is made (offline)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table

from selfalign import aio, terminal
from selfalign.api import check
from selfalign.errors import ConfigError
from selfalign.hydra_setup import compose_config
from selfalign.llm import estimate as est
from selfalign.redact import redact


def estimate(
    overrides: list[str], config_dirs: list[str] | None = None, pilot: int = 0, out: Path | None = None
) -> dict[str, Any]:
    """The estimate of `selfalign run <overrides>` as a dict (also written to `out`)."""
    cfg = compose_config(overrides, config_dirs)
    built = check(cfg)  # a bad config fails here, exit 2, as `run` would
    models = built.ctx.llm.models
    stages = est.tally(est.record_calls(cfg, models, overrides), models)
    batched = {s.name for s in built.stages if getattr(s.params, "batch", False)}
    for stage in stages:
        stage.batch = stage.stage in batched
    if pilot:
        _pilot(cfg, stages, pilot)
    result = est.finish(stages, models, est.price(models))
    result.update(pipeline=str(cfg.pipeline.name), overrides=list(overrides), pilot=pilot)
    result = redact(result)  # the overrides may carry a key; the table is printed from this
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


def _pilot(cfg: Any, stages: list[est.StageEstimate], k: int) -> None:
    from selfalign.llm.session import close_all
    from selfalign.runner import build, check_endpoints

    with tempfile.TemporaryDirectory(prefix="selfalign-pilot-") as tmp:
        built = build(cfg, Path(tmp), show_progress=False)  # the user's models and cache
        check_endpoints(built)  # a missing key or a wrong model name: say so before any call
        try:
            aio.run(est.pilot(stages, built.ctx.llm, k))
        finally:
            aio.run(close_all())


def _usd(v: float | None, priced: bool) -> str:
    if not priced:
        return "no price"
    return "unknown" if v is None else f"${v:,.4f}"


def table(result: dict[str, Any]) -> Table:
    unpriced = set(result["unpriced_models"])
    t = Table(
        title=f"estimate: {result['pipeline']}"
        + (f" (pilot {result['pilot']} calls/stage)" if result["pilot"] else "")
    )
    for col in (
        "stage",
        "model",
        "calls",
        "tokens in",
        "tokens out exp / max",
        "$ low",
        "$ expected",
        "$ high",
        "time",
    ):
        t.add_column(col, justify="left" if col in ("stage", "model") else "right")
    rows = [*result["stages"], {"stage": "total", "model": "", **result["totals"]}]
    for s in rows:
        priced = s["stage"] == "total" or s["model"] not in unpriced
        exp = s["completion_expected"]
        t.add_row(
            s["stage"],
            result["models"].get(s["model"], ""),
            f"{s['calls']:,}",
            f"{s['prompt_tokens']:,}",
            f"{'unknown' if exp is None else f'{exp:,}'} / {s['completion_worst']:,}",
            _usd(s["usd_low"], priced),
            _usd(s["usd_expected"], priced),
            _usd(s["usd_high"], priced),
            _duration(s["wall_s"]),
        )
    return t


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


def estimate_command(args: list[str], config_dirs: list[str]) -> int:
    pilot, out, overrides = _flags(args)
    result = estimate(overrides, config_dirs, pilot, out)
    console = terminal.console()
    console.print(table(result))
    if result["unpriced_models"]:
        console.print(
            f"[yellow]no price known for {', '.join(result['unpriced_models'])}[/]: "
            "set model.price={input_per_mtok: X, output_per_mtok: Y}."
        )
    if not pilot:
        console.print(
            "expected completion tokens are unknown: add --pilot K to send K real "
            "calls per stage (they are cached, so the run reuses them)."
        )
    console.print(f"time assumes {est.DEFAULT_LATENCY_S:g}s per call unless a pilot measured it.")
    # its own line, the last one: `selfalign estimate … | tail -1` finds the JSON
    console.print(f"this table as JSON: {out.resolve()}", highlight=False, markup=False)
    return 0


def _flags(args: list[str]) -> tuple[int, Path, list[str]]:
    pilot, out, rest = 0, Path("estimate.json"), []
    it = iter(args)
    for a in it:
        if a in ("--pilot", "--out"):
            value = next(it, "")
            if not value or value.startswith("-"):
                raise ConfigError(
                    f"estimate: {a} needs a value, e.g. `{a} {'3' if a == '--pilot' else 'estimate.json'}`."
                )
            if a == "--out":
                out = Path(value)
            elif not value.isdigit():
                raise ConfigError(f"estimate: --pilot takes a number of calls per stage, not {value!r}.")
            else:
                pilot = int(value)
        elif a.startswith("-"):
            raise ConfigError(
                f"estimate: unknown option '{a}'. Options: --pilot K, --out FILE; "
                "overrides are written key=value."
            )
        else:
            rest.append(a)
    return pilot, out, rest
