"""Shared machinery for LLM stages: sampling params, and running jobs with a parse/retry policy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from selfalign.config import doc
from selfalign.errors import ParseError, StageError
from selfalign.llm.base import ChatRequest

if TYPE_CHECKING:
    from selfalign.context import RunContext, StageProgress

# Retry r of sample j is sample j + r * RETRY_STRIDE: a new, still deterministic, cache key.
RETRY_STRIDE = 1000


@dataclass
class LLMParams:
    """Params every LLM stage shares. Subclass it for a stage's own params."""

    model: str | None = doc("named model from `models:` (null = the run's `model`)", None)
    temperature: float | None = doc("sampling temperature (null = backend default)", None)
    top_p: float | None = doc("nucleus sampling (null = backend default)", None)
    max_tokens: int = doc("completion token limit (always sent)", 256)
    stop: list[str] = doc("stop sequences", factory=list)
    seed: int | None = doc("backend sampling seed, where supported", None)
    extra: dict[str, Any] = doc("extra backend params, e.g. {repetition_penalty: 2}", factory=dict)
    retries: int = doc("new samples to try when the output cannot be parsed", 2)
    on_failure: Literal["drop", "fail"] = doc("after retries: drop row (to rejected) or fail", "drop")
    json_schema: dict[str, Any] | None = doc("JSON schema for response_format (if supported)", None)

    def sampling(self, supports_json_schema: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p,
                               "max_tokens": self.max_tokens, "seed": self.seed}
        if self.stop:
            out["stop"] = list(self.stop)
        if self.json_schema and supports_json_schema:
            out["response_format"] = {"type": "json_schema",
                                      "json_schema": {"name": "output", "schema": self.json_schema}}
        out.update(self.extra)
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class Job:
    row_id: str
    messages: list[dict[str, str]]
    sample: int = 0
    tag: Any = None  # caller's own handle (row index, sample number …)


@dataclass
class Outcome:
    job: Job
    fields: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None
    error: str | None = None  # reason when failed
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def drop_reason(error: str | None) -> str:
    """A short label for drop counts: 'llm_error' or 'parse:<reason>'."""
    if not error or error.startswith("llm_error"):
        return "llm_error"
    return error.replace(": ", ":")


def messages(user: str, system: str | None = None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}]


async def run_jobs(
    ctx: RunContext,
    stage: str,
    params: LLMParams,
    jobs: list[Job],
    parse: Callable[[str], dict[str, Any]] | None,
    progress: StageProgress,
) -> list[Outcome]:
    """Run every job at once (the client bounds concurrency); retry unparsable outputs with a
    new sample up to `params.retries` times; failures are recorded in the rejected table."""
    cfg = ctx.llm.model_config(params.model)
    sampling = params.sampling(cfg.supports_json_schema)

    async def one(job: Job) -> Outcome:
        out = Outcome(job)
        res = None
        for attempt in range(params.retries + 1):
            req = ChatRequest.make(job.messages, sampling, job.sample + attempt * RETRY_STRIDE,
                                   stage=stage, row_id=job.row_id)
            res = await ctx.llm.call(stage, params.model, req)
            out.attempts, out.raw = attempt + 1, res.text
            if not res.ok:
                out.error = f"llm_error: {res.error}"
                break  # the client already spent its retry budget on this one
            try:
                out.fields = parse(res.text or "") if parse else {"value": res.text}
                out.error = None
                break
            except ParseError as exc:
                out.error = f"parse: {exc.reason}"
        progress.advance(cached=bool(res is not None and res.cached), failed=not out.ok)
        if not out.ok:
            if params.on_failure == "fail":
                raise StageError(f"{stage}: row {job.row_id} failed after {out.attempts} "
                                 f"attempt(s): {out.error}. Raw output: {(out.raw or '')[:300]!r}")
            ctx.rejected.add(stage, job.row_id, out.error or "", out.attempts, out.raw)
        return out

    progress.add_total(len(jobs))
    return list(await asyncio.gather(*(one(j) for j in jobs)))
