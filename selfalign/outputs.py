"""What a run writes besides its checkpoints: the dataset, the manifest, the run dir's set-up
(attempt number, rejected table, resolved config) and run.log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from selfalign import io
from selfalign.checkpoint import Stored
from selfalign.context import Rejected
from selfalign.manifest import versions
from selfalign.prompts import RUN_COPY
from selfalign.redact import LogFilter, config_yaml, redact
from selfalign.runner import Built, build


def stage_report(built: Built) -> list[dict[str, Any]]:
    ctx = built.ctx
    out = []
    for s in built.stages:
        st = ctx.stats.stages.get(s.name)
        if st is None or not (st.finished or st.reused or st.rows_in or st.jobs):
            # the run stopped before this stage (or before any row of its segment reached it)
            out.append({"name": s.name, "kind": s.kind, "status": "not run", "prompts": s.prompt_hashes()})
            continue
        out.append(
            {
                "name": s.name,
                "kind": s.kind,
                # stopped: the run ended while this stage of a streamed segment was running
                "status": "reused" if st.reused else "ran" if st.finished else "stopped",
                "rows_in": st.rows_in,
                "rows_out": st.rows_out,
                "drops": dict(st.drops),
                "counts": dict(st.counts),
                "calls": st.jobs,
                "failed_calls": st.failed,
                "wall_s": st.wall_s,
                "reused": st.reused,
                "prompts": s.prompt_hashes(),
                "llm": ctx.llm.accounting.for_stage(s.name),
            }
        )
    return out


def write_manifest(built: Built, meta: dict[str, Any], rows: int | None) -> dict[str, Any]:
    ctx = built.ctx
    assert ctx.run_dir is not None
    manifest = {
        **meta,
        "rows": rows,
        "rejected": ctx.rejected.count,
        "stages": stage_report(built),
        "llm_totals": ctx.llm.accounting.totals(),
        "llm_attempt": ctx.llm.accounting.totals(this_attempt=True),
        "versions": versions(),
        "models": {k: ctx.llm.identity(k) for k in ctx.llm.models},
    }
    if endpoints := ctx.llm.endpoint_stats():  # models with several api_base URLs
        manifest["endpoints"] = endpoints
    if ctx.llm.budget.active:
        manifest["budget"] = ctx.llm.budget.to_json()
        ctx.llm.budget.save()
    manifest = redact(manifest)  # overrides, errors and model identities may carry a key
    io.write_json(manifest, ctx.run_dir / "manifest.json")
    return manifest


def write_outputs(built: Built, out: Stored, meta: dict[str, Any]) -> dict[str, Any]:
    ctx = built.ctx
    assert ctx.run_dir is not None
    if out.df is not None:
        io.write_jsonl(out.df, ctx.run_dir / "dataset.jsonl")
        io.write_parquet(out.df, ctx.run_dir / "dataset.parquet")
    else:  # a streamed run's output, from its stage file chunk by chunk
        with (
            io.TableWriter(ctx.run_dir / "dataset.jsonl", "jsonl") as rows,
            io.TableWriter(ctx.run_dir / "dataset.parquet", "parquet") as table,
        ):
            for chunk in out.frames():
                rows.write(chunk)
                table.write(chunk)
    return write_manifest(built, meta, len(out))


def prepare_run_dir(cfg: DictConfig, run_dir: Path) -> Built:
    """Build, then set up the run dir: the run's log file, the rejected table (kept across
    attempts: each run into the same dir is attempt n+1), the resolved config, the prompts."""
    run_dir.mkdir(parents=True, exist_ok=True)
    built = build(cfg, run_dir)
    built.attempt = _previous_attempt(run_dir) + 1
    built.ctx.rejected = Rejected(run_dir / "rejected.jsonl", built.attempt)
    (run_dir / "rejected.jsonl").touch()
    (run_dir / "config.yaml").write_text(config_yaml(cfg))  # resolved, secrets redacted
    write_prompts(built, run_dir)
    io.write_json({"status": "running", "attempt": built.attempt}, run_dir / "manifest.json")
    return built


def write_prompts(built: Built, run_dir: Path) -> None:
    """RUN_COPY (prompts.json): every prompt the run uses, by name, with its hash (the manifest's) and the
    text of its files, so the run dir alone says what was asked (`selfalign report` shows
    them even after the prompt files were edited). Not redacted: they are the user's own
    templates, and a changed copy would no longer match its hash."""
    names = sorted({n for s in built.stages for n in s.prompt_hashes()})
    used = {n: built.ctx.prompts.get(n) for n in names}
    copy = {n: {"sha256": p.sha256, "sources": p.sources} for n, p in used.items()}
    io.write_json(copy, run_dir / RUN_COPY)


def _previous_attempt(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "manifest.json").read_text()).get("attempt", 1))
    except (OSError, ValueError, TypeError, AttributeError):
        return 1 if (run_dir / "stages").is_dir() else 0


@contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """run.log in the run dir holds the `selfalign` logger's lines while the run lasts."""
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    handler.addFilter(LogFilter())
    logger = logging.getLogger("selfalign")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
