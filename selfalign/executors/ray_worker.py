"""The Ray worker actor: the whole pipeline built from the run's resolved config, with its own
async model client, running a streaming segment's stages on one block of rows at a time.

It sends back what the driver needs to make the run look like a local one: every stage's output
rows (for the checkpoints), and, once per segment, its stats, LLM accounting and rejected rows.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from selfalign.context import Rejected, Stats
from selfalign.llm.accounting import Accounting
from selfalign.llm.config import ModelConfig
from selfalign.llm.server_handle import ServerHandle

# which block the running coroutine works on: rejected rows are put back in block order
BLOCK: contextvars.ContextVar[int] = contextvars.ContextVar("block", default=-1)


class Collected(Rejected):
    """The rejected table of a worker: kept in memory, tagged with its block, sent to the driver."""

    def __init__(self, attempt: int) -> None:
        super().__init__(None, attempt)
        self.records: list[tuple[int, dict[str, Any]]] = []

    def add(
        self, stage: str, row_id: str, reason: str, attempts: int = 0, raw: str | None = None, **extra: Any
    ) -> None:
        super().add(stage, row_id, reason, attempts, raw, **extra)
        rec = {"stage": stage, "row_id": row_id, "reason": reason, "attempts": attempts, "raw": raw, **extra}
        self.records.append((BLOCK.get(), rec))


def share(cfg: ModelConfig, workers: int) -> ModelConfig:
    """A worker's slice of an endpoint's limits, so all workers together keep to `concurrency`,
    `rpm` and `tpm` as one local process would."""
    conc = max(1, cfg.concurrency // workers)
    low = None if cfg.min_concurrency is None else max(1, min(conc, cfg.min_concurrency // workers))
    return dataclasses.replace(
        cfg,
        concurrency=conc,
        min_concurrency=low,
        rpm=None if cfg.rpm is None else cfg.rpm / workers,
        tpm=None if cfg.tpm is None else cfg.tpm / workers,
    )


class Kept(logging.Handler):
    """The worker's `selfalign` log lines (a stage's warnings …), for the driver's run.log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


class Worker:
    """Wrapped by ray.remote in ray_executor (so this module imports without Ray)."""

    def __init__(
        self,
        config_yaml: str,
        run_dir: str,
        cwd: str,
        attempt: int,
        workers: int,
        servers: dict[str, ServerHandle],  # the driver's embedded servers, borrowed
        budget: Any = None,
    ) -> None:
        from omegaconf import OmegaConf

        from selfalign.runner import build

        if Path(cwd).is_dir():  # relative input paths mean what they mean to the driver
            os.chdir(cwd)
        self.built = build(OmegaConf.create(config_yaml), Path(run_dir), show_progress=False)
        self.log = Kept()  # from here on: what the driver's build already logged is not repeated
        logger = logging.getLogger("selfalign")
        logger.addHandler(self.log)
        logger.setLevel(logging.INFO)
        ctx = self.built.ctx
        ctx.rejected = Collected(attempt)
        if budget is not None:
            ctx.llm.budget = budget
        for name, cfg in list(ctx.llm.models.items()):
            ctx.llm.models[name] = share(cfg, workers)
        for name, server in servers.items():
            from selfalign.llm.local import connect

            ctx.llm._clients[name] = connect(ctx.llm.models[name], server)

    async def run_block(self, block: int, first: int, last: int, df: pd.DataFrame) -> dict[str, Any]:
        """Stages first..last (pipeline indexes) on one block: every stage's output and when it
        finished (time.time(), for the stage's wall time as the driver sees it)."""
        BLOCK.set(block)
        stats = self.built.ctx.stats
        outs, done = [], []
        for stage in self.built.stages[first : last + 1]:
            if not len(df):  # every row of the block was dropped: later stages have none
                outs.append(None)
                continue
            st = stats.stage(stage.name)
            st.rows_in += len(df)
            df = await stage.run(df)
            st.rows_out += len(df)
            outs.append(df)
            done.append(time.time())
        return {"outs": outs, "done": done}

    def take(self) -> dict[str, Any]:
        """This worker's stats, accounting, rejected rows and log lines since the last take."""
        ctx = self.built.ctx
        out = {
            "stats": ctx.stats.stages,
            "llm": ctx.llm.accounting.counters,
            "rejected": ctx.rejected.records,  # type: ignore[attr-defined]
            "log": self.log.lines,
        }
        ctx.stats, ctx.llm.accounting = Stats(), Accounting()
        ctx.rejected.records, self.log.lines = [], []  # type: ignore[attr-defined]
        return out

    async def close(self) -> None:
        from selfalign.llm.session import close_all

        for client in self.built.ctx.llm._clients.values():
            await client.aclose()
        await close_all()
