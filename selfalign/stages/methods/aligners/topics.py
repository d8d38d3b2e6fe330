"""Aligners topic pool: `grow_topics` brainstorms topics per question type over several rounds."""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from selfalign.config import doc
from selfalign.engine import Job, Policy
from selfalign.errors import ConfigError, ParseError
from selfalign.stages.base import ROW_ID, register_stage
from selfalign.stages.llm import LLMStage, PromptParams

_NUMBERING = re.compile(r"^\s*(?:\d+\s*[.):]|[-*•])\s*")
_TRAILING_PUNCT = re.compile(r"[^\w\s)\]'\"]$")  # the original: "ends with punctuation"
TOPIC_VARS = frozenset({"question_type", "examples", "n_new", "max_words"})


def validate_topic(line: str, max_words: int = 3) -> tuple[str | None, str]:
    """(topic, "ok") or (None, reason) for one line of a brainstormed list.

    Rules (the original's): strip the "N. " numbering; non-empty; at most `max_words` words;
    starts with a capital letter A-Z; does not end with punctuation. Markdown bold is removed
    first because chat models like to emphasise list items."""
    text = _NUMBERING.sub("", line, count=1).replace("**", "").strip(" \t*_")
    if not text:
        return None, "empty"
    if len(text.split()) > max_words:
        return None, "too_many_words"
    if not ("A" <= text[0] <= "Z"):
        return None, "not_capitalised"
    if _TRAILING_PUNCT.search(text) or text[-1] in ")]'\"":
        return None, "trailing_punctuation"
    return text, "ok"


def parse_topics(text: str, max_words: int = 3, max_lines: int = 20) -> dict[str, Any]:
    """Valid topics from the first `max_lines` non-empty lines, with a count of dropped lines
    by reason. No valid topic at all is a parse failure (so the row is retried)."""
    lines = [ln for ln in text.splitlines() if ln.strip()][:max_lines]
    topics, dropped = [], Counter[str]()
    for line in lines:
        topic, reason = validate_topic(line, max_words)
        if topic is None:
            dropped[reason] += 1
        else:
            topics.append(topic)
    if not topics:
        raise ParseError("no_valid_topic", f"none of {len(lines)} line(s) is a valid topic")
    return {"value": topics, "dropped": dropped}


def dedup_balance(pool: dict[str, list[str]], balance: bool = True) -> tuple[dict[str, list[str]], int, int]:
    """Per type: exact dedup after lowercasing (first kept), then (if `balance`) truncate every
    type to the smallest type's count. Returns (pool, duplicates dropped, dropped to balance)."""
    out, dups = {}, 0
    for qtype, topics in pool.items():
        seen: set[str] = set()
        kept = []
        for t in topics:
            if t.lower() not in seen:
                seen.add(t.lower())
                kept.append(t)
        dups += len(topics) - len(kept)
        out[qtype] = kept
    if not balance:
        return out, dups, 0
    smallest = min((len(v) for v in out.values()), default=0)
    balanced = sum(len(v) - smallest for v in out.values())
    return {k: v[:smallest] for k, v in out.items()}, dups, balanced


@dataclass
class GrowTopicsParams(PromptParams):
    prompt: str = doc("prompt template; gets question_type, examples, n_new, max_words", "aligners/topics")
    type_column: str = doc("column holding the question type", "question_type")
    topic_column: str = doc("column holding the topic", "topic")
    epochs: int = doc("brainstorming rounds; each adds its topics to the pool", 2)
    examples: int = doc("existing topics of the type shown in each prompt", 5)
    n_new: int = doc("new topics asked for per prompt", 10)
    prompts_per_type: int | None = doc(
        "prompts per type per round (null = one per topic in the pool, as the original)", 1
    )
    max_words: int = doc("longest valid topic, in words", 3)
    max_lines: int = doc("lines of each reply that are looked at", 20)
    balance: bool = doc("truncate every type to the smallest type's count each round", True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 0 or self.examples < 1 or self.n_new < 1 or self.max_words < 1:
            raise ValueError("epochs must be >= 0 and examples, n_new, max_words >= 1")
        if self.prompts_per_type is not None and self.prompts_per_type < 1:
            raise ValueError("prompts_per_type must be >= 1 (or null = one per topic)")


@register_stage
class GrowTopics(LLMStage):
    """Grow a topic pool per question type over `epochs` rounds of brainstorming prompts;
    invalid lines, duplicates (per type, lowercased) and balancing are counted as drops."""

    kind = "grow_topics"
    Params = GrowTopicsParams
    injected = TOPIC_VARS

    def __init__(self, name: str, params: GrowTopicsParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        # the prompts are made per question type, not per row: no column can fill a variable
        unknown = self.templates.variables()
        if unknown:
            raise ConfigError(
                f"{self.where}.prompt: template '{params.prompt}' uses {sorted(unknown)}, but "
                f"this stage provides only {sorted(TOPIC_VARS)} (+ `vars`). Add them to `vars`."
            )

    def reads(self) -> set[str]:
        return {self.params.type_column, self.params.topic_column}

    def writes(self) -> set[str]:
        return {"epoch"}

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        pool = self._pool(df)
        plans = self._plan(pool, random.Random(self.ctx.seed))[:k]
        return [self._messages(qtype, examples) for qtype, examples in plans]

    def _pool(self, df: pd.DataFrame) -> dict[str, list[str]]:
        p: GrowTopicsParams = self.params
        pool: dict[str, list[str]] = {}
        types, topics = df[p.type_column].astype(str), df[p.topic_column].astype(str)
        for qtype, topic in zip(types, topics, strict=True):
            pool.setdefault(qtype, []).append(topic.strip())
        return pool

    def _plan(self, pool: dict[str, list[str]], rng: random.Random) -> list[tuple[str, list[str]]]:
        """(type, example topics) per prompt. One prompt per topic (original): a type with
        fewer than 2×examples topics shows that one topic, else a random `examples` of them."""
        p: GrowTopicsParams = self.params
        plans = []
        for qtype, topics in pool.items():
            if p.prompts_per_type is None:
                few = len(topics) < 2 * p.examples
                for t in topics:
                    plans.append((qtype, [t] if few else rng.sample(topics, p.examples)))
            else:
                for _ in range(p.prompts_per_type):
                    plans.append((qtype, rng.sample(topics, min(p.examples, len(topics)))))
        return plans

    def _messages(self, qtype: str, examples: list[str]) -> list[dict[str, str]]:
        p: GrowTopicsParams = self.params
        return self.templates.render(
            "prompt", question_type=qtype, examples=examples, n_new=p.n_new, max_words=p.max_words
        )

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        p: GrowTopicsParams = self.params
        pool, rng = self._pool(df), self.ctx.rng(self.name)
        epoch_of = {(q, t.lower()): 0 for q, ts in pool.items() for t in ts}
        for epoch in range(1, p.epochs + 1):
            pool = self._tidy(pool)
            new = await self._round(pool, epoch, rng)
            for qtype, topics in new.items():
                pool[qtype] = pool[qtype] + topics
                for t in topics:
                    epoch_of.setdefault((qtype, t.lower()), epoch)
        pool = self._tidy(pool)
        rows = [
            {ROW_ID: f"t{i}.{j}", p.type_column: q, p.topic_column: t, "epoch": epoch_of[(q, t.lower())]}
            for i, (q, ts) in enumerate(pool.items())
            for j, t in enumerate(ts)
        ]
        return pd.DataFrame.from_records(rows, columns=[ROW_ID, p.type_column, p.topic_column, "epoch"])

    def _tidy(self, pool: dict[str, list[str]]) -> dict[str, list[str]]:
        out, dups, balanced = dedup_balance(pool, self.params.balance)
        self.ctx.stats.drop(self.name, "duplicate", dups)
        self.ctx.stats.drop(self.name, "balance", balanced)
        return out

    async def _round(
        self, pool: dict[str, list[str]], epoch: int, rng: random.Random
    ) -> dict[str, list[str]]:
        p: GrowTopicsParams = self.params
        plans = self._plan(pool, rng)
        per_type = Counter(q for q, _ in plans)
        seen: Counter[str] = Counter()
        jobs = []
        for i, (qtype, ex) in enumerate(plans):
            # a new sample index per round, so an unchanged pool still gets fresh replies
            sample = (epoch - 1) * per_type[qtype] + seen[qtype]
            seen[qtype] += 1
            jobs.append(Job(f"e{epoch}.{i}", self._messages(qtype, ex), sample, qtype))

        def parse(text: str) -> dict[str, Any]:
            return parse_topics(text, p.max_words, p.max_lines)

        new: dict[str, list[str]] = {q: [] for q in pool}
        for o in await self.engine.run(jobs, Policy(parse=parse)):
            if not o.ok:
                self.drop_failed(o)
                continue
            for reason, n in o.fields["dropped"].items():
                self.ctx.stats.drop(self.name, f"topic:{reason}", n)
            new[o.job.tag].extend(o.fields["value"])
        return new
