"""The LLM-stage bases: shared params, named templates, the variable check and prompt hashes.

A concrete LLM stage declares its templates (`templates_of = {"prompt": "prompt"}`: role → the
params field naming the template) and the variables it fills in itself (`injected`). A row-wise
stage subclasses `RowLLMStage` and says what one row asks (`jobs(row)`) and what each reply adds
(`columns(row, outcome)`); the base owns the row loop. A chain stage (calls that depend on
earlier replies, or on other rows) subclasses `LLMStage` and implements `process(df)`. Either
way the base renders (`self.render`) and `self.engine` (selfalign/engine.py) sends, retries,
counts and rejects: no LLM stage has its own retry loop or writes rejected rows itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.engine import CallParams, Engine, Job, Outcome, Policy, drop_reason, messages
from selfalign.errors import ConfigError
from selfalign.prompts import Prompt
from selfalign.stages.base import ROW_ID, Stage, StageSpec

if TYPE_CHECKING:
    from selfalign.context import RunContext


@dataclass
class LLMParams(CallParams):
    """Params every LLM stage shares: the engine's call params (model, sampling, failure policy,
    batch) plus the stage's system prompt, template vars and failure-rate limit."""

    system_prompt: str | None = doc("system prompt template name", None)
    vars: dict[str, Any] = doc("constants visible to the templates", factory=dict)
    max_failure_rate: float = doc(
        "stop the run when more than this share of the stage's calls "
        "failed (LLM error, or unparsable after every retry)",
        0.25,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.max_failure_rate <= 1:
            raise ValueError(f"`max_failure_rate` must be between 0 and 1 (got {self.max_failure_rate})")


@dataclass
class PromptParams(LLMParams):
    """LLMParams for the common case of one user prompt."""

    prompt: str = doc("prompt template name, e.g. wizardlm_aaa/generate_instruction", "")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.prompt:
            raise ValueError("`prompt` is required (a template name)")


class Templates:
    """A stage's named templates plus its system prompt, rendered with the same values.

    Used by LLMStage, and by components that call a model for a stage (the judge's Scorer)."""

    def __init__(
        self,
        ctx: RunContext,
        params: Any,
        where: str,
        roles: dict[str, str],
        injected: frozenset[str] = frozenset(),
    ) -> None:
        get = ctx.prompts.get
        self.vars: dict[str, Any] = dict(getattr(params, "vars", {}) or {})
        self.injected = injected
        self.user: dict[str, Prompt] = {
            role: get(getattr(params, f), f"{where}.{f}") for role, f in roles.items()
        }
        name = getattr(params, "system_prompt", None)
        self.system: Prompt | None = get(name, f"{where}.system_prompt") if name else None
        ctx.llm.check_ref(getattr(params, "model", None), f"{where}.model")

    def all(self) -> list[Prompt]:
        return [*self.user.values(), *([self.system] if self.system else [])]

    def variables(self) -> set[str]:
        """Columns the templates read: their variables less vars, injected names and `row`."""
        names: set[str] = set()
        for p in self.all():
            names |= p.variables
        return names - set(self.vars) - self.injected - {"row"}

    def hashes(self) -> dict[str, str]:
        return {p.name: p.sha256 for p in self.all()}

    def render(self, role: str, row: dict[str, Any] | None = None, **extra: Any) -> list[dict[str, str]]:
        row = row or {}
        values = {**row, **self.vars, "row": row, **extra}
        system = self.system.render(**values) if self.system else None
        return messages(self.user[role].render(**values), system)


class LLMStage(Stage):
    """Base of every stage that calls a model. Subclasses set `templates_of`, `injected` and
    implement `process(df)` using `self.render(...)` and `self.engine` (or, row by row,
    subclass RowLLMStage)."""

    uses_llm = True
    templates_of: ClassVar[dict[str, str]] = {"prompt": "prompt"}  # role → params field
    injected: ClassVar[frozenset[str]] = frozenset()  # variables the stage fills in itself

    def is_row_local(self) -> bool:
        # a batched stage sends its requests as one provider batch: it needs all rows at once
        return super().is_row_local() and not getattr(self.params, "batch", False)

    def __init__(
        self, name: str, params: Any, ctx: RunContext, peers: dict[str, StageSpec] | None = None
    ) -> None:
        super().__init__(name, params, ctx, peers)
        self.templates = Templates(ctx, params, self.where, self.templates_of, self.injected)
        self._engine: Engine | None = None
        self._running = 0  # chunks in process() now
        if getattr(params, "batch", False):
            from selfalign.llm.batch_api import batch_problem

            problem = batch_problem(ctx.llm.model_config(params.model))
            if problem:
                raise ConfigError(f"{self.where}.batch: {problem}")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError(f"{self.name}: the engine exists only while the stage runs")
        return self._engine

    def render(self, row: dict[str, Any], role: str = "prompt", **extra: Any) -> list[dict[str, str]]:
        return self.templates.render(role, row, **extra)

    def drop_failed(self, outcome: Outcome | None, n: int = 1, prefix: str = "") -> None:
        """Count n rows lost to a failed outcome under its reason ('llm_error', 'parse:…'); the
        engine has already kept the outcome in rejected.jsonl."""
        self.ctx.stats.drop(self.name, prefix + drop_reason(outcome.error if outcome else None), n)

    def reads(self) -> set[str]:
        return self.templates.variables()

    def prompt_hashes(self) -> dict[str, str]:
        return self.templates.hashes()

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        return [self.render(row) for row in io.records(df.head(k))]

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        # A streamed segment runs this stage on several chunks at once: they share one engine,
        # which lives while any of them runs.
        with self.ctx.progress(self.name, 0) as prog:
            if self._engine is None:
                self._engine = Engine(self.ctx, self.name, self.params, prog)
            self._running += 1
            try:
                return await self.process(df)
            finally:
                self._running -= 1
                if not self._running:
                    self._engine.close()
                    self._engine = None

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError


@dataclass(frozen=True)
class Drop:
    """What `RowLLMStage.columns` returns for a row it turns down: counted under `reason` and
    kept in rejected.jsonl with the reply's raw text."""

    reason: str


# new columns of one output row, several rows (a fan-out), or Drop / None (None: dropped under
# the failed outcome's own reason; "dropped" for a good one)
Columns = dict[str, Any] | list[dict[str, Any]] | Drop | None


class RowLLMStage(LLMStage):
    """An LLM stage that works row by row. A subclass says which requests a row makes
    (`jobs(row)`, default one from the "prompt" template) and what each reply adds to it
    (`columns(row, outcome)`); this base sends every row's jobs at once, drops failed replies
    (counted by reason; the engine keeps them in rejected.jsonl), builds the output frame (input
    columns, then `new_columns()`; input dtypes kept) and, being row-local, streams.

    Class settings: `row_local = False` makes it a barrier (all rows at once);
    `sees_failures = True` hands failed outcomes to `columns` too (to impute or mark them);
    `share_identical = True` sends identical requests of one chunk once and gives every row
    that asked the same outcome. A row with no jobs gets one `columns(row, None)` call."""

    row_local = True
    sees_failures: ClassVar[bool] = False
    share_identical: ClassVar[bool] = False

    def policy(self) -> Policy:
        """How replies are parsed and when one is complete (engine.Policy)."""
        return Policy()

    def jobs(self, row: dict[str, Any]) -> list[Job]:
        return [self.job(row)]

    def job(self, row: dict[str, Any], sample: int = 0, **kw: Any) -> Job:
        """The row's "prompt" request; `messages=` / `params=` / `note=` override."""
        msgs = kw.pop("messages", None) or self.render(row)
        return Job(str(row[ROW_ID]), msgs, sample, **kw)

    def columns(self, row: dict[str, Any], outcome: Outcome | None) -> Columns:
        raise NotImplementedError

    def combine(self, row: dict[str, Any], outcomes: list[Outcome]) -> list[Columns]:
        """One row's outcomes → what each gives, in order (a Drop at place k keeps outcome k's
        reply); override to merge a row's samples into one row (reformat_response)."""
        if not outcomes:
            return [self.columns(row, None)]
        return [self.columns(row, o) if o.ok or self.sees_failures else None for o in outcomes]

    def new_columns(self) -> list[str]:
        """The columns this stage adds, in output order."""
        return sorted(self.writes())

    def report(self, out: pd.DataFrame) -> None:
        """After a chunk: log what the user should know (fallbacks, imputed values)."""

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        shown: list[list[dict[str, str]]] = []
        for row in io.records(df):
            for job in self.jobs(row):  # a row's n samples of one prompt show once
                if len(shown) < k and (not shown or job.messages != shown[-1]):
                    shown.append(job.messages)
            if len(shown) >= k:
                break
        return shown

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        rows = io.records(df)
        asked = [list(self.jobs(r)) for r in rows]
        answers = iter(await self._send([j for js in asked for j in js]))
        picks: list[int] = []  # input row of each output row
        values: list[dict[str, Any]] = []
        for i, (row, js) in enumerate(zip(rows, asked, strict=True)):
            outcomes = [next(answers) for _ in js]
            for got, o in zip(self.combine(row, outcomes), outcomes or [None], strict=False):
                for new in self._kept(row, o, got):
                    picks.append(i)
                    values.append(new)
        out = out_frame(df, picks, values, self.new_columns(), self.where)
        self.report(out)
        return out

    async def _send(self, jobs: list[Job]) -> list[Outcome]:
        if not self.share_identical:
            return await self.engine.run(jobs, self.policy())
        # one request per distinct (messages, sample, params): a small model often repeats a
        # text, and identical requests in flight at once would each be paid for
        first: dict[str, int] = {}
        keys = [json.dumps([j.messages, j.sample, id(j.params)], sort_keys=True) for j in jobs]
        unique = []
        for j, k in zip(jobs, keys, strict=True):
            if k not in first:
                first[k] = len(unique)
                unique.append(j)
        got = await self.engine.run(unique, self.policy())
        return [got[first[k]] for k in keys]

    def _kept(self, row: dict[str, Any], o: Outcome | None, got: Columns) -> list[dict[str, Any]]:
        """The output rows one outcome gives; a drop is counted (and a stage's own kept)."""
        if isinstance(got, Drop):
            self.engine.reject(o, got.reason, row_id=str(row[ROW_ID]))
            return []
        if got is None and o is not None and not o.ok:
            self.drop_failed(o)
            return []
        if got is None:  # the stage turned down a good reply without saying why
            self.engine.reject(o, "dropped", row_id=str(row[ROW_ID]))
            return []
        return got if isinstance(got, list) else [got]


def out_frame(
    df: pd.DataFrame, picks: list[int], values: list[dict[str, Any]], new: list[str], where: str
) -> pd.DataFrame:
    """Output rows as input rows (by position, so their columns keep their dtypes) with new
    values laid over them: input columns first, then `new` in order. Every stage that maps
    rows to rows builds its frame here."""
    # every row kept once, in order (the usual case): no row copy by position needed
    same = len(picks) == len(df) and picks == list(range(len(df)))
    out = (df if same else df.iloc[picks]).reset_index(drop=True)
    cols = list(df.columns) + [c for c in new if c not in df.columns]
    written = {k for v in values for k in v}
    stray = written - set(cols)
    if stray:  # a column the stage never declared would be lost to the column check
        raise RuntimeError(f"{where}: wrote undeclared column(s) {sorted(stray)}; add them to writes()")
    for c in cols:
        if c in written:  # a value the stage gave wins; the input row's value stays otherwise
            old = out[c].tolist() if c in out.columns else [None] * len(values)
            got = [v.get(c, old[n]) for n, v in enumerate(values)]
            out[c] = pd.Series(got, dtype=None if got else object)
        elif c not in out.columns:
            out[c] = pd.Series([None] * len(values), dtype=object)
    # new columns were appended in order, so the frame is already in `cols` order; selecting
    # by a list of names was half of this function's time on the small streamed chunks
    return out if list(out.columns) == cols else out[cols]
