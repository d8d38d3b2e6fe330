"""ALMoST model stages: `expand_pool` (grow a prompt pool) and `generate_responses` (the grid)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc, parse_params
from selfalign.errors import ConfigError, StageError
from selfalign.prompts import Prompt
from selfalign.stages.almost_compare import bad_reason, cut_turn, join_demos, split_demos
from selfalign.stages.almost_pool import (
    ParseMode,
    RougePool,
    length_reject,
    parse_query,
    read_seed_file,
)
from selfalign.stages.base import PARENT_ID, ROW_ID, Stage, register_stage
from selfalign.stages.llm_util import Job, LLMParams, Outcome, drop_reason, messages, run_jobs


def _templates(stage: Stage, prompt: str, system: str | None,
               provided: set[str] | None) -> tuple[Prompt, Prompt | None]:
    """Load the request (+ system) template; with `provided`, refuse any other variable."""
    ctx, where = stage.ctx, stage.where
    user = ctx.prompts.get(prompt, f"{where}.prompt")
    sys_prompt = ctx.prompts.get(system, f"{where}.system_prompt") if system else None
    checks = [(user, "prompt")] + ([(sys_prompt, "system_prompt")] if sys_prompt else [])
    for t, key in checks if provided is not None else []:
        if extra := sorted(t.variables - provided):
            raise ConfigError(f"{where}.{key}: template '{t.name}' uses {', '.join(extra)}, "
                              f"but {stage.kind} only provides {', '.join(sorted(provided))}.")
    return user, sys_prompt


@dataclass
class ExpandPoolParams(LLMParams):
    seed_file: str = doc("seed prompts: line 1 = task instruction, then one seed per line", "")
    prompt: str = doc("request template (variables: instruction, examples)", "almost/expand_pool")
    system_prompt: str | None = doc("system prompt template for chat models (null = none)", None)
    instruction: str | None = doc("replaces the seed file's first line", None)
    num_generation: int = doc("accepted prompts to produce", 100)
    n_examples: int = doc("examples per request, sampled from seeds + accepted prompts", 10)
    batch_size: int = doc("requests in flight; request i sees the pool after results "
                          "0..i-batch_size, so runs are reproducible", 4)
    max_attempts: int | None = doc("cap on requests (null = 20 x num_generation)", None)
    parse: ParseMode = doc("first_line | skip_first (the original: the query AFTER the one "
                           "asked for)", "first_line")
    min_chars: int = doc("shorter queries need final punctuation", 30)
    max_chars: int = doc("longer queries are rejected", 250)
    rouge_threshold: float = doc("reject if ROUGE-L F >= this against any pool prompt", 0.5)
    keep_seeds: bool = doc("also output the seed prompts (source=seed)", False)
    output: str = doc("column for the prompts", "prompt")
    on_exhausted: Literal["warn", "fail"] = doc("max_attempts reached early: warn or fail", "warn")
    temperature: float | None = doc("sampling temperature", 1.2)
    top_p: float | None = doc("nucleus sampling", 0.9)
    max_tokens: int = doc("completion token limit", 64)
    retries: int = doc("failed calls are simply more attempts, so no retries", 0)

    def __post_init__(self) -> None:
        if not self.seed_file:
            raise ValueError("`seed_file` is required (a .txt file of seed prompts)")
        for key in ("num_generation", "n_examples", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"`{key}` must be >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("`max_attempts` must be >= 1 (or null)")
        if not 0.0 < self.rouge_threshold <= 1.0:
            raise ValueError("`rouge_threshold` must be in (0, 1]")


@register_stage
class ExpandPool(Stage):
    """Self-instruct-style prompt generation from a growing few-shot pool, with novelty filters."""

    kind = "expand_pool"
    Params = ExpandPoolParams
    uses_llm = True

    def __init__(self, name: str, params: ExpandPoolParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.prompt, self.system = _templates(self, params.prompt, params.system_prompt,
                                              {"instruction", "examples"})
        ctx.llm.check_ref(params.model, f"{self.where}.model")
        instruction, self.seeds = read_seed_file(params.seed_file, f"{self.where}.seed_file")
        self.instruction = params.instruction or instruction

    def writes(self) -> set[str]:
        return {ROW_ID, self.params.output, "source"}

    def prompt_hashes(self) -> dict[str, str]:
        return {t.name: t.sha256 for t in (self.prompt, self.system) if t is not None}

    def fingerprint_extra(self) -> str:
        """The seed file's content, so editing it re-runs the stage."""
        return hashlib.sha256(Path(self.params.seed_file).expanduser().read_bytes()).hexdigest()

    def request(self, examples: list[str]) -> list[dict[str, str]]:
        values = {"instruction": self.instruction, "examples": examples}
        system = self.system.render(**values) if self.system else None
        return messages(self.prompt.render(**values), system)

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        rng = self.ctx.rng(self.name)
        n = min(self.params.n_examples, len(self.seeds))
        return [self.request(rng.sample(self.seeds, n)) for _ in range(k)]

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: ExpandPoolParams = self.params
        pool = RougePool(p.rouge_threshold)
        for s in self.seeds:
            pool.add(s)
        accepted = await self._grow(pool)
        rows = [("seed", s) for s in self.seeds] if p.keep_seeds else []
        rows += [("generated", q) for q in accepted]
        return pd.DataFrame({ROW_ID: [f"q{i:05d}" for i in range(len(rows))],
                             p.output: [q for _, q in rows], "source": [s for s, _ in rows]})

    async def _grow(self, pool: RougePool) -> list[str]:
        """Keep `batch_size` requests in flight; judge results in request order (deterministic)."""
        p: ExpandPoolParams = self.params
        rng = self.ctx.rng(self.name)
        limit = p.max_attempts if p.max_attempts is not None else 20 * p.num_generation
        accepted: list[str] = []
        pending: deque[asyncio.Future[list[Outcome]]] = deque()
        launched = 0
        with self.ctx.progress(self.name, 0) as prog:
            try:
                while len(accepted) < p.num_generation:
                    while len(pending) < p.batch_size and launched < limit:
                        pending.append(self._launch(launched, pool, rng, prog))
                        launched += 1
                    if not pending:
                        break
                    self._consider((await pending.popleft())[0], pool, accepted)
            finally:  # enough accepted (or a failure): the rest are not needed
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if len(accepted) < p.num_generation:
            self._exhausted(len(accepted), limit)
        return accepted

    def _launch(self, i: int, pool: RougePool, rng: random.Random,
                prog: Any) -> asyncio.Future[list[Outcome]]:
        examples = rng.sample(pool.texts, min(self.params.n_examples, len(pool)))
        job = Job(f"attempt-{i}", self.request(examples), sample=i, tag=i)
        return asyncio.ensure_future(run_jobs(self.ctx, self.name, self.params, [job], None, prog))

    def _consider(self, outcome: Outcome, pool: RougePool, accepted: list[str]) -> None:
        p: ExpandPoolParams = self.params
        if not outcome.ok:  # run_jobs already put it in the rejected table
            self.ctx.stats.drop(self.name, drop_reason(outcome.error))
            return
        query = parse_query(outcome.raw or "", p.parse)
        if query is None:
            return self._reject(outcome, "no_query", query)
        if reason := length_reject(query, p.min_chars, p.max_chars):
            return self._reject(outcome, reason, query)
        if match := pool.similar(query):
            return self._reject(outcome, "too_similar", query, similar_to=match.text,
                                rouge_l=round(match.fmeasure, 4))
        pool.add(query)
        accepted.append(query)

    def _reject(self, outcome: Outcome, reason: str, query: str | None, **extra: Any) -> None:
        self.ctx.stats.drop(self.name, reason)
        self.ctx.rejected.add(self.name, outcome.job.row_id, reason, outcome.attempts,
                              outcome.raw, query=query, **extra)

    def _exhausted(self, got: int, limit: int) -> None:
        p: ExpandPoolParams = self.params
        drops = dict(self.ctx.stats.stage(self.name).drops)
        msg = (f"{self.where}: max_attempts={limit} reached with {got}/{p.num_generation} "
               f"prompts accepted (rejections: {drops}). Raise max_attempts, add seeds, or relax "
               f"rouge_threshold / min_chars.")
        if p.on_exhausted == "fail":
            raise StageError(msg)
        self.ctx.console.log(f"[yellow]{msg}")


@dataclass
class ResponseConfig:
    name: str = doc("configuration name, used by the rubric")
    demos: str = doc("demonstration set: a prompt template name", "almost/demos_hhh")
    n_shot: int = doc("dialogues taken from the set (0 = none, only its preamble)", 1)
    model: str | None = doc("named model from `models:` (null = the stage's model)", None)
    max_tokens: int | None = doc("null = the stage's max_tokens", None)
    temperature: float | None = doc("null = the stage's temperature", None)
    top_p: float | None = doc("null = the stage's top_p", None)


@dataclass
class GenerateResponsesParams(LLMParams):
    configs: list[dict[str, Any]] = doc("the grid, each a ResponseConfig mapping", factory=list)
    prompt: str = doc("request template (demonstrations + row columns)", "almost/respond")
    system_prompt: str | None = doc("system prompt template (null = none)", None)
    separator: str = doc("line separating the segments of a demonstration set", "-----")
    output: str = doc("column for the response", "response")
    min_chars: int = doc("shorter responses are marked bad", 50)
    keep_raw: bool = doc("also keep the uncut model text in <output>_raw", False)
    temperature: float | None = doc("sampling temperature", 1.0)
    top_p: float | None = doc("nucleus sampling", 0.9)
    max_tokens: int = doc("completion token limit (configs may override)", 384)
    retries: int = doc("every text is a response (bad ones are marked), so no retries", 0)

    def __post_init__(self) -> None:
        if not self.configs:
            raise ValueError("`configs` is empty: list at least one {name, demos, n_shot}")


@register_stage
class GenerateResponses(Stage):
    """One response per prompt per named configuration (model x demonstration set x n_shot)."""

    kind = "generate_responses"
    Params = GenerateResponsesParams
    uses_llm = True

    def __init__(self, name: str, params: GenerateResponsesParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.prompt, self.system = _templates(self, params.prompt, params.system_prompt, None)
        self.configs: list[ResponseConfig] = []
        self.demos: dict[str, str] = {}
        self.demo_hashes: dict[str, str] = {}
        for i, raw in enumerate(params.configs):
            self._add_config(parse_params(ResponseConfig, raw, f"{self.where}.configs[{i}]"), i)

    def _add_config(self, cfg: ResponseConfig, i: int) -> None:
        where = f"{self.where}.configs[{i}]"
        if cfg.name in self.demos:
            raise ConfigError(f"{where}.name: '{cfg.name}' is used twice; names must be unique.")
        self.ctx.llm.check_ref(cfg.model or self.params.model, f"{where}.model")
        demos = self.ctx.prompts.get(cfg.demos, f"{where}.demos")
        if demos.variables:
            raise ConfigError(f"{where}.demos: '{demos.name}' must be plain text, but uses "
                              f"{', '.join(sorted(demos.variables))}.")
        segments = split_demos(demos.render(), self.params.separator)
        try:
            self.demos[cfg.name] = join_demos(segments, cfg.n_shot, self.params.separator)
        except ValueError as exc:
            raise ConfigError(f"{where}.n_shot: {exc} ('{demos.name}'); use 0.."
                              f"{len(segments) - 1}.") from None
        self.demo_hashes[demos.name] = demos.sha256
        self.configs.append(cfg)

    def reads(self) -> set[str]:
        t = set(self.prompt.variables) | (self.system.variables if self.system else set())
        return t - {"demonstrations", "row"}

    def writes(self) -> set[str]:
        p: GenerateResponsesParams = self.params
        extra = {f"{p.output}_raw"} if p.keep_raw else set()
        return {PARENT_ID, "config", p.output, "bad", "bad_reason"} | extra

    def prompt_hashes(self) -> dict[str, str]:
        out = {t.name: t.sha256 for t in (self.prompt, self.system) if t is not None}
        return {**out, **self.demo_hashes}

    def render(self, row: dict[str, Any], config: str) -> list[dict[str, str]]:
        values = {**row, "demonstrations": self.demos[config], "row": row}
        system = self.system.render(**values) if self.system else None
        return messages(self.prompt.render(**values), system)

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        rows = io.records(df.head(k))
        return [self.render(r, c.name) for r in rows for c in self.configs][:k]

    def _params(self, cfg: ResponseConfig) -> GenerateResponsesParams:
        p: GenerateResponsesParams = self.params
        pick = lambda a, b: b if a is None else a  # noqa: E731 — 0 and 0.0 are real values
        return replace(p, model=cfg.model or p.model, max_tokens=pick(cfg.max_tokens, p.max_tokens),
                       temperature=pick(cfg.temperature, p.temperature),
                       top_p=pick(cfg.top_p, p.top_p))

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        rows = io.records(df)

        async def one(ci: int, cfg: ResponseConfig, prog: Any) -> list[Outcome]:
            jobs = [Job(str(r[ROW_ID]), self.render(r, cfg.name), 0, (i, ci))
                    for i, r in enumerate(rows)]
            return await run_jobs(self.ctx, self.name, self._params(cfg), jobs, None, prog)

        with self.ctx.progress(self.name, 0) as prog:  # every config's jobs at once
            results = await asyncio.gather(*(one(ci, c, prog) for ci, c in enumerate(self.configs)))
        outcomes = sorted((o for res in results for o in res), key=lambda o: o.job.tag)
        out = [r for o in outcomes if (r := self._row(rows, o)) is not None]
        cols = list(df.columns) + [c for c in sorted(self.writes()) if c not in df.columns]
        return pd.DataFrame.from_records(out, columns=cols)

    def _row(self, rows: list[dict[str, Any]], o: Outcome) -> dict[str, Any] | None:
        p: GenerateResponsesParams = self.params
        if not o.ok:
            self.ctx.stats.drop(self.name, drop_reason(o.error))
            return None
        i, ci = o.job.tag
        row, cfg = rows[i], self.configs[ci]
        text = cut_turn(o.raw or "", p.separator)
        why = bad_reason(text, p.min_chars)
        if why:  # kept and marked; build_preferences drops it
            self.ctx.stats.count(self.name, f"bad:{why}")
        out = {**row, ROW_ID: f"{row[ROW_ID]}.{cfg.name}", PARENT_ID: str(row[ROW_ID]),
               "config": cfg.name, p.output: text, "bad": why is not None, "bad_reason": why}
        if p.keep_raw:
            out[f"{p.output}_raw"] = o.raw
        return out
