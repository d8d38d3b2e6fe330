"""RunContext: everything a stage needs, passed explicitly (no hidden globals)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from selfalign.llm.session import LLMSession
from selfalign.prompts import PromptLibrary


@dataclass
class StageStats:
    rows_in: int = 0
    rows_out: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)  # notable events that keep the row
    wall_s: float = 0.0
    reused: bool = False


class Stats:
    def __init__(self) -> None:
        self.stages: dict[str, StageStats] = {}

    def stage(self, name: str) -> StageStats:
        return self.stages.setdefault(name, StageStats())

    def drop(self, stage: str, reason: str, n: int = 1) -> None:
        if n:
            self.stage(stage).drops[reason] += n

    def count(self, stage: str, what: str, n: int = 1) -> None:
        """Count something that is not a drop (a fallback label, a kept original …)."""
        if n:
            self.stage(stage).counts[what] += n


class Rejected:
    """The rejected table, appended to disk at once so a crash loses nothing."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.count = 0

    def add(self, stage: str, row_id: str, reason: str, attempts: int = 0,
            raw: str | None = None, **extra: Any) -> None:
        self.count += 1
        if self.path is None:
            return
        rec = {"stage": stage, "row_id": row_id, "reason": reason, "attempts": attempts,
               "raw": raw, **extra}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")


class StageProgress:
    """Rows done, rate, cache hits, failures and ETA for one stage."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self.progress, self.task = progress, task
        self.cache_hits = self.failures = self.done = 0
        self.started = time.perf_counter()

    def add_total(self, n: int) -> None:
        if self.progress is not None and self.task is not None:
            total = self.progress.tasks[self.task].total or 0
            self.progress.update(self.task, total=total + n)

    def advance(self, n: int = 1, cached: bool = False, failed: bool = False) -> None:
        self.cache_hits += int(cached)
        self.failures += int(failed)
        self.done += n
        if self.progress is not None and self.task is not None:
            rate = self.done / max(time.perf_counter() - self.started, 1e-6)
            self.progress.update(self.task, advance=n, info=f"{rate:.1f}/s · cache "
                                 f"{self.cache_hits} · fail {self.failures}")


@dataclass
class RunContext:
    cfg: Any  # the composed DictConfig (read-only by convention)
    run_dir: Path | None
    prompts: PromptLibrary
    llm: LLMSession
    seed: int = 42
    console: Console = field(default_factory=lambda: Console(stderr=True))
    stats: Stats = field(default_factory=Stats)
    rejected: Rejected = field(default_factory=lambda: Rejected(None))
    show_progress: bool = True
    _progress: Progress | None = None

    def rng(self, stage: str) -> random.Random:
        """A per-stage RNG, seeded from the run seed and the stage name (order-independent)."""
        return random.Random(f"{self.seed}:{stage}")

    @contextmanager
    def progress(self, stage: str, total: int) -> Iterator[StageProgress]:
        if not self.show_progress:
            yield StageProgress(None, None)
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=False,
        )
        with progress:
            task = progress.add_task(stage, total=total, info="")
            yield StageProgress(progress, task)
