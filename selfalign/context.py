"""RunContext: everything a stage needs, passed explicitly (no hidden globals)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
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
from rich.text import Text

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
    jobs: int = 0  # LLM jobs finished (each with its own attempts)
    failed: int = 0  # jobs that ended failed: LLM error or unparsable after every attempt
    llm_failed: int = 0  # of those, failed with an LLM error (worth retrying on a re-run)
    first_error: str | None = None
    finished: bool = False  # this run saw it through (not saved: a reused stage is `reused`)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "drops": dict(self.drops),
            "counts": dict(self.counts),
            "wall_s": self.wall_s,
            "jobs": self.jobs,
            "failed": self.failed,
            "llm_failed": self.llm_failed,
            "first_error": self.first_error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageStats:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        st = cls(**known)
        st.drops, st.counts = Counter(st.drops), Counter(st.counts)
        return st


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

    def job(self, stage: str, error: str | None) -> None:
        """One finished LLM job (the engine calls this), for the failure-rate check."""
        st = self.stage(stage)
        st.jobs += 1
        if error:
            st.failed += 1
            st.llm_failed += int(error.startswith("llm_error"))
            st.first_error = st.first_error or error


class Rejected:
    """The rejected table, appended to disk at once so a crash loses nothing. Each run into
    the same run dir is a new `attempt`; earlier attempts' records are kept."""

    def __init__(self, path: Path | None, attempt: int = 1) -> None:
        self.path = path
        self.attempt = attempt
        self.count = 0

    def add(
        self, stage: str, row_id: str, reason: str, attempts: int = 0, raw: str | None = None, **extra: Any
    ) -> None:
        self.count += 1
        if self.path is None:
            return
        rec = {
            "attempt": self.attempt,
            "stage": stage,
            "row_id": row_id,
            "reason": reason,
            "attempts": attempts,
            "raw": raw,
            **extra,
        }
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")


log = logging.getLogger("selfalign")


class LogConsole(Console):
    """The run's console. `log()` goes to the `selfalign` logger, so every message a stage or
    the runner logs reaches run.log (and the terminal through the CLI's logging handler)."""

    def log(self, *objects: Any, **_: Any) -> None:  # type: ignore[override]
        text = " ".join(str(o) for o in objects)
        level = logging.WARNING if text.startswith(("[yellow]", "[red]")) else logging.INFO
        try:
            text = Text.from_markup(text).plain
        except Exception:  # noqa: BLE001 — not markup after all: log it as it is
            pass
        log.log(level, text)


class StageProgress:
    """Calls done, rate, cache hits, failures and ETA for one stage: a rich bar on a terminal,
    else (output piped to a file) a log line every `every_s` seconds."""

    def __init__(
        self,
        progress: Progress | None,
        task: TaskID | None,
        stage: str = "",
        every_s: float | None = None,
        status: Callable[[], str] | None = None,
    ) -> None:
        self.progress, self.task, self.stage, self.every_s = progress, task, stage, every_s
        self.status = status  # the session's live figures: $ spent, current concurrency
        self.detail: Callable[[], str] | None = None  # the stage's own state (a batch's), if any
        self.cache_hits = self.failures = self.done = self.total = 0
        self.started = self._logged = time.perf_counter()

    def add_total(self, n: int) -> None:
        self.total += n
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, total=self.total)

    def info(self) -> str:
        rate = self.done / max(time.perf_counter() - self.started, 1e-6)
        figures = [f() for f in (self.status, self.detail) if f is not None]
        extra = " · ".join(f for f in figures if f)
        return f"{rate:.1f}/s · cache {self.cache_hits} · fail {self.failures}" + (
            f" · {extra}" if extra else ""
        )

    def advance(self, n: int = 1, cached: bool = False, failed: bool = False) -> None:
        self.cache_hits += int(cached)
        self.failures += int(failed)
        self.done += n
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=n, info=self.info())
        now = time.perf_counter()
        if self.every_s is not None and now - self._logged >= self.every_s:
            self._logged = now
            log.info("%s: %d/%d calls · %s", self.stage, self.done, self.total, self.info())


@dataclass
class RunContext:
    run_dir: Path | None
    prompts: PromptLibrary
    llm: LLMSession
    seed: int = 42
    console: Console = field(default_factory=lambda: LogConsole(stderr=True))
    stats: Stats = field(default_factory=Stats)
    rejected: Rejected = field(default_factory=lambda: Rejected(None))
    show_progress: bool = True
    progress_every_s: float = 10.0  # without a terminal: one progress line this often
    _progress: Progress | None = None
    _stages: dict[str, StageProgress] = field(default_factory=dict)

    def rng(self, stage: str) -> random.Random:
        """A per-stage RNG, seeded from the run seed and the stage name (order-independent)."""
        return random.Random(f"{self.seed}:{stage}")

    @contextmanager
    def progress(self, stage: str, total: int) -> Iterator[StageProgress]:
        """The stage's progress, one for the whole run: each chunk of a streamed segment adds
        its calls to it. All bars share one display, which `end_progress` closes."""
        prog = self._stages.get(stage)
        if prog is None:
            prog = self._stages[stage] = self._stage_progress(stage)
        prog.add_total(total)
        yield prog

    def _stage_progress(self, stage: str) -> StageProgress:
        if not self.show_progress or not self.console.is_terminal:
            every = self.progress_every_s if self.show_progress else None
            return StageProgress(None, None, stage, every, self.llm.status)
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        task = self._progress.add_task(stage, total=0, info="")
        return StageProgress(self._progress, task, stage, status=self.llm.status)

    def end_progress(self) -> None:
        """Close the bars of the stages that ran (the runner calls it after each segment)."""
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._stages = None, {}
