"""`expand_pool`: grow a prompt pool from seed prompts, self-instruct style, keeping only novel ones."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from selfalign.config import doc
from selfalign.engine import Job, Outcome
from selfalign.errors import ConfigError, StageError
from selfalign.stages import embed
from selfalign.stages.base import ROW_ID, register_stage
from selfalign.stages.llm import LLMStage, PromptParams
from selfalign.stages.methods.almost.pool import (
    Novelty,
    ParseMode,
    RougePool,
    length_reject,
    parse_query,
    read_seed_file,
)
from selfalign.stages.neighbours import MinHashIndex


@dataclass
class ExpandPoolParams(PromptParams):
    seed_file: str = doc("seed prompts: line 1 = task instruction, then one seed per line", "")
    prompt: str = doc("request template (variables: instruction, examples)", "almost/expand_pool")
    instruction: str | None = doc("replaces the seed file's first line", None)
    num_generation: int = doc("accepted prompts to produce", 100)
    n_examples: int = doc("examples per request, sampled from seeds + accepted prompts", 10)
    batch_size: int = doc(
        "requests in flight; request i sees the pool after results 0..i-batch_size, so runs are reproducible",
        4,
    )
    max_attempts: int | None = doc("cap on requests (null = 20 x num_generation)", None)
    parse: ParseMode = doc(
        "first_line | skip_first (the original: the query AFTER the one asked for)", "first_line"
    )
    min_chars: int = doc("shorter queries need final punctuation", 30)
    max_chars: int = doc("longer queries are rejected", 250)
    rouge_threshold: float = doc("reject if ROUGE-L F >= this against any pool prompt", 0.5)
    minhash_threshold: float | None = doc(
        "also reject if the Jaccard of character n-grams with any pool prompt is >= this "
        "(spelling and inflection variants ROUGE-L misses); null = off",
        0.5,
    )
    minhash_shingle_size: int = doc("n of those character n-grams", 4)
    embedding_threshold: float | None = doc(
        "also reject if the MiniLM cosine with any pool prompt is >= this (paraphrases); needs "
        "the embeddings extra; null = off",
        None,
    )
    embedding_model_path: str | None = doc(
        "sentence-transformers folder for that check (null = the bundled all-MiniLM-L6-v2)", None
    )
    keep_seeds: bool = doc("also output the seed prompts (source=seed)", False)
    output: str = doc("column for the prompts", "prompt")
    on_exhausted: Literal["warn", "fail"] = doc("max_attempts reached early: warn or fail", "warn")
    temperature: float | None = doc("sampling temperature", 1.2)
    top_p: float | None = doc("nucleus sampling", 0.9)
    max_tokens: int = doc("completion token limit", 64)
    retries: int = doc("failed calls are simply more attempts, so no retries", 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.seed_file:
            raise ValueError("`seed_file` is required (a .txt file of seed prompts)")
        for key in ("num_generation", "n_examples", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"`{key}` must be >= 1")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("`max_attempts` must be >= 1 (or null)")
        if not 0.0 < self.rouge_threshold <= 1.0:
            raise ValueError("`rouge_threshold` must be in (0, 1]")
        if self.minhash_threshold is not None and not 0.0 < self.minhash_threshold <= 1.0:
            raise ValueError("`minhash_threshold` must be in (0, 1] (or null)")
        if self.minhash_shingle_size < 1:
            raise ValueError("`minhash_shingle_size` must be >= 1")


@register_stage
class ExpandPool(LLMStage):
    """Self-instruct-style prompt generation from a growing few-shot pool, with novelty filters."""

    kind = "expand_pool"
    Params = ExpandPoolParams
    injected = frozenset({"instruction", "examples"})

    def __init__(self, name: str, params: ExpandPoolParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self._only_injected()
        instruction, self.seeds = read_seed_file(params.seed_file, f"{self.where}.seed_file")
        self.instruction = params.instruction or instruction
        if params.embedding_threshold is not None:
            embed.check_available(self.where, self.kind, params.embedding_model_path)

    def _only_injected(self) -> None:
        """The stage reads no rows, so its templates may use only what it fills in (and vars)."""
        provided = self.injected | set(self.templates.vars)
        named = [(self.templates.user["prompt"], "prompt")]
        named += [(self.templates.system, "system_prompt")] if self.templates.system else []
        for t, key in named:
            if extra := sorted(t.variables - provided):
                raise ConfigError(
                    f"{self.where}.{key}: template '{t.name}' uses "
                    f"{', '.join(extra)}, but {self.kind} only provides "
                    f"{', '.join(sorted(provided))}."
                )

    def writes(self) -> set[str]:
        return {ROW_ID, self.params.output, "source"}

    def fingerprint_extra(self) -> str:
        """The seed file's content, so editing it re-runs the stage."""
        return hashlib.sha256(Path(self.params.seed_file).expanduser().read_bytes()).hexdigest()

    def request(self, examples: list[str]) -> list[dict[str, str]]:
        return self.render({}, instruction=self.instruction, examples=examples)

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        rng = self.ctx.rng(self.name)
        n = min(self.params.n_examples, len(self.seeds))
        return [self.request(rng.sample(self.seeds, n)) for _ in range(k)]

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        p: ExpandPoolParams = self.params
        pool = self.novelty()
        pool.add_all(self.seeds)
        accepted = await self._grow(pool)
        rows = [("seed", s) for s in self.seeds] if p.keep_seeds else []
        rows += [("generated", q) for q in accepted]
        return pd.DataFrame(
            {
                ROW_ID: [f"q{i:05d}" for i in range(len(rows))],
                p.output: [q for _, q in rows],
                "source": [s for s, _ in rows],
            }
        )

    def novelty(self) -> Novelty:
        """An empty pool with this stage's novelty checks."""
        p: ExpandPoolParams = self.params
        minhash = (
            MinHashIndex(p.minhash_threshold, "char", p.minhash_shingle_size)
            if p.minhash_threshold is not None
            else None
        )
        if p.embedding_threshold is None:
            return Novelty(RougePool(p.rouge_threshold), minhash)
        model = embed.model_for(p.embedding_model_path, "cpu")
        encode = lambda texts: embed.encode(model, texts)  # noqa: E731
        return Novelty(RougePool(p.rouge_threshold), minhash, encode, p.embedding_threshold)

    async def _grow(self, pool: Novelty) -> list[str]:
        """Keep `batch_size` requests in flight; judge results in request order (deterministic)."""
        p: ExpandPoolParams = self.params
        rng = self.ctx.rng(self.name)
        limit = p.max_attempts if p.max_attempts is not None else 20 * p.num_generation
        accepted: list[str] = []
        pending: deque[asyncio.Future[Outcome]] = deque()
        launched = 0
        try:
            while len(accepted) < p.num_generation:
                while len(pending) < p.batch_size and launched < limit:
                    pending.append(self._launch(launched, pool, rng))
                    launched += 1
                if not pending:
                    break
                self._consider(await pending.popleft(), pool, accepted)
        finally:  # enough accepted (or a failure): the rest are not needed
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if len(accepted) < p.num_generation:
            self._exhausted(len(accepted), limit)
        return accepted

    def _launch(self, i: int, pool: Novelty, rng: random.Random) -> asyncio.Future[Outcome]:
        # the examples are drawn now, from the pool as judged so far: that fixes the order
        examples = rng.sample(pool.texts, min(self.params.n_examples, len(pool)))
        job = Job(f"attempt-{i}", self.request(examples), sample=i, tag=i)
        return asyncio.ensure_future(self.engine.call(job))

    def _consider(self, outcome: Outcome, pool: Novelty, accepted: list[str]) -> None:
        p: ExpandPoolParams = self.params
        if not outcome.ok:  # the engine already put it in the rejected table
            self.drop_failed(outcome)
            return
        query = parse_query(outcome.raw or "", p.parse)
        if query is None:
            return self.engine.reject(outcome, "no_query", query=query)
        if reason := length_reject(query, p.min_chars, p.max_chars):
            return self.engine.reject(outcome, reason, query=query)
        if seen := pool.reject(query):
            return self.engine.reject(outcome, seen[0], query=query, **seen[1])
        pool.add(query)
        accepted.append(query)

    def _exhausted(self, got: int, limit: int) -> None:
        p: ExpandPoolParams = self.params
        drops = dict(self.ctx.stats.stage(self.name).drops)
        msg = (
            f"{self.where}: max_attempts={limit} reached with {got}/{p.num_generation} "
            f"prompts accepted (rejections: {drops}). Raise max_attempts, add seeds, or relax "
            f"rouge_threshold / minhash_threshold / min_chars."
        )
        if p.on_exhausted == "fail":
            raise StageError(msg)
        self.ctx.console.log(f"[yellow]{msg}")
