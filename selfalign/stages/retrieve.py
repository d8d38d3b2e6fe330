"""`retrieve_evidence`: top-k evidence snippets per row (optionally only rows with chosen labels),
from a pluggable provider (offline `bm25` over a local corpus, or `serper` Google Search)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from selfalign.config import doc
from selfalign.errors import ConfigError
from selfalign.stages.base import Stage, register_stage
from selfalign.stages.search import (
    Bm25Provider,
    SerperProvider,
    clean_snippets,
    corpus_fingerprint,
)


@dataclass
class RetrieveParams:
    provider: Literal["bm25", "serper"] = doc("bm25 (offline, local corpus) | serper (Google)", "bm25")
    query_column: str = doc("column sent as the search query", "instruction")
    category_column: str | None = doc("column holding the task label (null = every row)", "category")
    categories: list[str] = doc("only rows with these labels get evidence ([] = all rows)", factory=list)
    turns_column: str = doc("if present: rows whose value is not 2 (multi-turn) are skipped", "num_items")
    output: str = doc("column for the evidence list (rows that already have some keep it)", "evidence")
    top_k: int = doc("snippets kept per row, after cleaning", 5)
    min_score: float = doc(
        "bm25: keep passages whose BM25 score is above this (it grows with the corpus: calibrate on yours)",
        0.0,
    )
    min_relative: float = doc(
        "bm25: keep passages scoring at least this share of the row's best passage (0 = off)", 0.5
    )
    drop_prefixes: list[str] = doc(
        "snippets starting with these are dropped", factory=lambda: ["Missing:", "Duration:", "Posted:"]
    )
    corpus: str | None = doc("bm25: corpus file (JSONL/CSV/Parquet)", None)
    corpus_text_column: str = doc("bm25: corpus column with the passage text", "text")
    corpus_title_column: str | None = doc("bm25: optional title column, indexed too", "title")
    base_url: str = doc("serper: API base URL (point it at a mock in tests)", "https://google.serper.dev")
    api_key_env: str = doc("serper: env var holding the API key", "SERPER_API_KEY")
    gl: str = doc("serper: country", "us")
    hl: str = doc("serper: language", "en")
    concurrency: int = doc("serper: requests in flight at once", 10)
    timeout_s: float = doc("serper: per-request timeout", 30.0)
    retries: int = doc("serper: retries on 429/5xx/network errors", 2)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError("`top_k` must be >= 1")
        if not 0.0 <= self.min_relative <= 1.0:
            raise ValueError(f"`min_relative` must be in [0, 1], got {self.min_relative}")
        if self.concurrency < 1:
            raise ValueError("`concurrency` must be >= 1")
        if self.provider == "bm25" and not self.corpus:
            raise ValueError("provider 'bm25' needs `corpus` (a JSONL/CSV/Parquet file with a `text` column)")


@register_stage
class RetrieveEvidence(Stage):
    """Adds a list of cleaned evidence snippets per row; rows that do not qualify get []."""

    kind = "retrieve_evidence"
    row_local = True
    Params = RetrieveParams

    def __init__(self, name: str, params: RetrieveParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        p = params
        self.bm25: Bm25Provider | None = None
        self.serper: SerperProvider | None = None
        if p.provider == "bm25":
            self.bm25 = Bm25Provider(
                str(p.corpus), p.corpus_text_column, p.corpus_title_column, f"{self.where}.corpus"
            )
            return
        key = os.environ.get(p.api_key_env, "").strip()
        if not key:
            raise ConfigError(
                f"{self.where}.provider: 'serper' needs an API key in the env var "
                f"{p.api_key_env}, which is not set. Export it, or use "
                f"{self.where}.provider=bm25 with a local corpus."
            )
        self.serper = SerperProvider(p.base_url, key, p.gl, p.hl, p.concurrency, p.timeout_s, p.retries)

    def reads(self) -> set[str]:
        p: RetrieveParams = self.params
        cat = {p.category_column} if p.category_column and p.categories else set()
        return {p.query_column} | cat

    def writes(self) -> set[str]:
        return {self.params.output}

    def fingerprint_extra(self) -> str:
        return corpus_fingerprint(str(self.params.corpus)) if self.bm25 else ""

    def eligible(self, df: pd.DataFrame) -> pd.Series:
        """Rows that qualify: a wanted label, single-turn, and no evidence yet."""
        p: RetrieveParams = self.params
        ok = pd.Series(True, index=df.index)
        if p.category_column and p.categories:
            ok &= df[p.category_column].isin(p.categories)
        if p.turns_column in df.columns:
            turns = pd.to_numeric(df[p.turns_column], errors="coerce")
            ok &= turns.isna() | (turns == 2)
        if p.output in df.columns:
            ok &= ~df[p.output].map(_has_evidence)
        return ok

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: RetrieveParams = self.params
        mask = self.eligible(df)
        queries = df.loc[mask, p.query_column].fillna("").astype(str).tolist()
        found, errors = await self._search(queries)
        old = df[p.output] if p.output in df.columns else pd.Series(None, index=df.index)
        values = [list(v) if _has_evidence(v) else [] for v in old]
        for pos, snippets in zip(mask.to_numpy().nonzero()[0], found, strict=True):
            values[pos] = clean_snippets(snippets, p.drop_prefixes, p.top_k)
        out = df.copy()
        out[p.output] = pd.Series(values, index=df.index, dtype=object)
        self._report(len(queries), sum(1 for v in found if not v), errors)
        return out

    async def _search(self, queries: list[str]) -> tuple[list[list[str]], Counter[str]]:
        p: RetrieveParams = self.params
        errors: Counter[str] = Counter()
        if not queries:
            return [], errors
        if self.bm25 is not None:
            # a few extra hits so cleaning can still leave top_k
            return [self.bm25.search(q, p.top_k * 2, p.min_score, p.min_relative) for q in queries], errors
        assert self.serper is not None
        with self.ctx.progress(self.name, len(queries)) as prog:
            results = await self.serper.search_all(queries)
            prog.advance(len(queries))
        for _, err in results:
            if err:
                errors[err] += 1
        return [snips for snips, _ in results], errors

    def _report(self, asked: int, empty: int, errors: Counter[str]) -> None:
        """Counted in the stage's stats (the manifest), not logged: a streamed run calls this
        once per chunk."""
        counts = self.ctx.stats.stage(self.name).counts
        counts["searched"] += asked
        counts["found_nothing"] += empty
        for kind, n in errors.items():
            counts[f"search_error:{kind}"] += n


def _has_evidence(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        or (hasattr(value, "tolist") and len(value.tolist()) > 0)
    )
