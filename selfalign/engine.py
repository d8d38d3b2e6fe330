"""The LLM job engine: the one place where a stage's model calls are sent, retried, checked,
counted and, when they fail, written to the rejected table.

Stages describe *jobs* (messages + a handle) and a *policy* (how to parse a reply, when a reply is
complete); they never call the session, loop over attempts or write rejected rows themselves. Rate
limits, budgets and batch submission hook in here too, so every LLM stage gets them at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from selfalign.config import doc
from selfalign.errors import ParseError, StageError
from selfalign.llm.base import EMPTY_REPLY, ChatRequest
from selfalign.llm.budget import BudgetExceeded

if TYPE_CHECKING:
    from selfalign.context import RunContext, StageProgress
    from selfalign.llm.batch import Batcher

# Attempt a of sample j is sample j + a * RETRY_STRIDE: a new, still deterministic, cache key.
RETRY_STRIDE = 1000

Parse = Callable[[str], dict[str, Any]]


@dataclass
class CallParams:
    """What the engine needs to send a stage's calls: model, sampling, retries, failure policy,
    batch submission. A stage's params extend it (stages/llm.py's LLMParams)."""

    model: str | None = doc("named model from `models:` (null = the run's `model`)", None)
    temperature: float | None = doc("sampling temperature (null = backend default)", None)
    top_p: float | None = doc("nucleus sampling (null = backend default)", None)
    max_tokens: int = doc("completion token limit (always sent)", 256)
    stop: list[str] = doc("stop sequences", factory=list)
    seed: int | None = doc("backend sampling seed, where supported", None)
    extra: dict[str, Any] = doc("extra backend params, e.g. {repetition_penalty: 2}", factory=dict)
    retries: int = doc("new samples to try when the output cannot be parsed", 2)
    retry_temperature: float | None = doc(
        "temperature of those new samples (null = same as the first try)", None
    )
    on_failure: Literal["drop", "fail"] = doc("after retries: drop row (to rejected) or fail", "drop")
    json_schema: dict[str, Any] | None = doc("JSON schema for response_format (if supported)", None)
    batch: bool = doc(
        "send this stage's calls through the provider's batch API (OpenAI, Anthropic): "
        "half price, results within 24 h (docs/cost.md)",
        False,
    )
    batch_poll_s: float = doc("batch: seconds between status polls", 30.0)
    batch_max_wait_s: float | None = doc(
        "batch: stop waiting after this many seconds (exit 3; a re-run re-attaches); null = until it ends",
        None,
    )

    def __post_init__(self) -> None:
        if self.batch_poll_s <= 0:
            raise ValueError(f"`batch_poll_s` must be > 0 (got {self.batch_poll_s})")
        if self.batch_max_wait_s is not None and self.batch_max_wait_s < 0:
            raise ValueError(f"`batch_max_wait_s` must be >= 0 or null (got {self.batch_max_wait_s})")
        if self.retries < 0:
            raise ValueError("`retries` must be >= 0")
        if self.max_tokens < 1:
            raise ValueError("`max_tokens` must be >= 1")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0 (got {self.temperature})")
        if self.retry_temperature is not None and self.retry_temperature < 0:
            raise ValueError(f"`retry_temperature` must be >= 0 (got {self.retry_temperature})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1] (got {self.top_p})")

    def sampling(self, supports_json_schema: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.stop:
            out["stop"] = list(self.stop)
        if self.json_schema and supports_json_schema:
            out["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": self.json_schema},
            }
        out.update(self.extra)
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class Job:
    """One request of a stage: its messages and the caller's handle to match the outcome."""

    row_id: str
    messages: list[dict[str, str]]
    sample: int = 0
    tag: Any = None  # the caller's own handle (row index, sample number …)
    params: CallParams | None = None  # model + sampling for this job (None: the stage's)
    note: dict[str, Any] = field(default_factory=dict)  # extra fields for a rejected record


@dataclass
class Outcome:
    job: Job
    fields: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None
    error: str | None = None  # reason, when failed
    attempts: int = 0  # samples tried (a new sample after an unusable reply)
    requests: int = 0  # HTTP attempts over all samples (the client retries 429/5xx itself)
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def value(self) -> Any:
        return self.fields.get("value") if self.ok else None


@dataclass(frozen=True)
class Policy:
    """How the engine treats the replies of one kind of job.

    parse: text → fields; a ParseError asks for a new sample (None: {"value": text}).
    complete: fields → bool; an incomplete reply asks for a new sample, and each new reply only
      fills the fields still missing (None values), so partial answers add up.
    keep_incomplete: after the last attempt an incomplete result is returned as it is (the stage
      imputes what is missing) instead of failing the job.
    """

    parse: Parse | None = None
    complete: Callable[[dict[str, Any]], bool] | None = None
    keep_incomplete: bool = False


def drop_reason(error: str | None) -> str:
    """A short label for drop counts: 'llm_error' or 'parse:<reason>'."""
    if not error or error.startswith("llm_error"):
        return "llm_error"
    return error.replace(": ", ":")


def messages(user: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]


def _fill(found: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Earlier non-missing values stay; later replies fill only what is still missing."""
    out = dict(found)
    for k, v in new.items():
        if out.get(k) is None:
            out[k] = v
    return out


class Engine:
    """Runs one stage's jobs: all at once (the client bounds concurrency), each with its own
    attempts; applies the stage's failure policy (`on_failure`) and records rejects."""

    def __init__(self, ctx: RunContext, stage: str, params: CallParams, progress: StageProgress) -> None:
        self.ctx, self.stage, self.params, self.progress = ctx, stage, params, progress
        self.batcher: Batcher | None = None
        if params.batch:  # its cache misses go through the batch API, by this engine's batcher
            from selfalign.llm.batch import Batcher, BatchSettings

            settings = BatchSettings(params.batch_poll_s, params.batch_max_wait_s)
            self.batcher = Batcher(ctx.llm, stage, settings, progress)
            progress.detail = self.batcher.status  # the stage's bar shows the batch's state

    def close(self) -> None:
        """The stage is done (every chunk): its batcher goes with it."""
        if self.batcher is not None:
            self.progress.detail = None
            self.batcher = None

    async def run(self, jobs: list[Job], policy: Policy = Policy()) -> list[Outcome]:
        """Every job at once; outcomes in job order."""
        self.progress.add_total(len(jobs))
        tasks = [asyncio.ensure_future(self._job(j, policy)) for j in jobs]
        try:
            return list(await asyncio.gather(*tasks))
        except BudgetExceeded:
            # Dispatch has stopped (every later call is refused at once): the calls already sent
            # finish and are cached, so a re-run pays for none of them twice. Refused jobs are
            # not counted as failed: they were never tried.
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.ctx.llm.drain()
            raise
        except BaseException:  # a fatal error (endpoint down, on_failure=fail): stop the rest
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def call(self, job: Job, policy: Policy = Policy()) -> Outcome:
        """One job, for stages that chain calls per row (each row its own coroutine)."""
        (out,) = await self.run([job], policy)
        return out

    def _sampling(self, params: CallParams, attempt: int) -> dict[str, Any]:
        cfg = self.ctx.llm.model_config(params.model)
        if attempt and params.retry_temperature is not None:
            # a greedy model that gave an unusable reply would only repeat it
            params = replace(params, temperature=params.retry_temperature)
        return params.sampling(cfg.supports_json_schema)

    async def _job(self, job: Job, policy: Policy) -> Outcome:
        params = job.params or self.params
        out = Outcome(job)
        for attempt in range(params.retries + 1):
            req = ChatRequest.make(
                job.messages,
                self._sampling(params, attempt),
                job.sample + attempt * RETRY_STRIDE,
                stage=self.stage,
                row_id=job.row_id,
            )
            res = await self.ctx.llm.call(self.stage, params.model, req, self.batcher)
            out.attempts, out.cached = attempt + 1, res.cached
            out.raw = res.text if res.text is not None else res.extra.get("raw_body")
            out.requests += 0 if res.cached else max(res.attempts, 1)
            if res.error == EMPTY_REPLY:
                # nothing came back (the session never caches it): a new sample; the fields an
                # earlier, incomplete reply gave stay (and so does its error)
                out.error = out.error if out.fields else f"llm_error: {EMPTY_REPLY}"
                continue
            if not res.ok:
                out.error = f"llm_error: {res.error}"
                break  # the client already spent its retry budget on this one
            try:
                got = policy.parse(res.text or "") if policy.parse else {"value": res.text}
            except ParseError as exc:
                out.error = f"parse: {exc.reason}"
                continue
            out.fields = _fill(out.fields, got) if policy.complete else got
            if policy.complete is None or policy.complete(out.fields):
                out.error = None
                break
            missing = sorted(k for k, v in out.fields.items() if v is None)
            out.error = f"parse: incomplete ({', '.join(missing)} missing)"
        if out.error and out.error.startswith("parse: incomplete") and policy.keep_incomplete:
            out.error = None
        self.progress.advance(cached=out.cached, failed=not out.ok)
        self.ctx.stats.job(self.stage, out.error)
        if not out.ok:
            self._failed(out, params)
        return out

    def reject(self, out: Outcome | None, reason: str, row_id: str | None = None, **extra: Any) -> None:
        """A reply the stage itself turned down (too similar, too long …): counted as a drop
        and kept in the rejected table with its raw text, like a failed job. `row_id`: the row
        dropped, when it is not the job's own (a request shared by rows; a row that asked none)."""
        self.ctx.stats.drop(self.stage, reason)
        rid = row_id if row_id is not None else out.job.row_id if out else ""
        attempts, raw, note = (out.attempts, out.raw, out.job.note) if out else (0, None, {})
        self.ctx.rejected.add(self.stage, rid, reason, attempts, raw, **{**note, **extra})

    def _failed(self, out: Outcome, params: CallParams) -> None:
        job = out.job
        if params.on_failure == "fail":
            where = "".join(f", {k}={v}" for k, v in job.note.items())
            raise StageError(
                f"{self.stage}: row {job.row_id}{where} failed after {out.attempts} "
                f"attempt(s): {out.error}. Raw output: {(out.raw or '')[:300]!r}"
            )
        # attempts = every request sent for this job, so it agrees with "gave up after N attempts"
        note = {"samples_tried": out.attempts, "sample": job.sample, **job.note}
        self.ctx.rejected.add(
            self.stage, job.row_id, out.error or "", out.requests or out.attempts, out.raw, **note
        )
