"""`dedup_minhash` and `dedup_embedding`: near-duplicate removal across rows (MinHash LSH over
shingles, or sentence-embedding cosine), optionally per group, keeping the first or best row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from selfalign.config import doc
from selfalign.stages import embed
from selfalign.stages.base import Stage, register_stage
from selfalign.stages.neighbours import MinHashIndex, greedy_cosine


@dataclass
class NearDupParams:
    column: str = doc("text column compared")
    group_by: str | None = doc("compare rows only within each group of this column", None)
    keep: Literal["first", "best"] = doc(
        "which row of a cluster of near-duplicates stays: the first in row order, or the one "
        "with the highest `score_column` (ties: the first)",
        "first",
    )
    score_column: str | None = doc("keep=best: the score column (higher is better; null scores last)", None)

    def __post_init__(self) -> None:
        if self.keep == "best" and not self.score_column:
            raise ValueError("keep=best needs `score_column` (the column whose highest value stays)")


@dataclass
class MinHashParams(NearDupParams):
    threshold: float = doc("drop a row whose shingle-set Jaccard with a kept row is >= this", 0.8)
    shingle: Literal["word", "char"] = doc(
        "char: character n-grams (any script, robust to spelling and inflection) | word: word "
        "n-grams (a character counts as a word in Chinese, Japanese, Thai)",
        "char",
    )
    shingle_size: int = doc("n of the n-grams (a text shorter than n is one shingle)", 5)
    num_perm: int = doc("MinHash permutations (more = a sharper LSH, slower)", 128)
    seed: int = doc("MinHash permutation seed (fixed, so results do not depend on the run seed)", 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"`threshold` must be in (0, 1], got {self.threshold}")
        if self.shingle_size < 1 or self.num_perm < 2:
            raise ValueError("`shingle_size` must be >= 1 and `num_perm` >= 2")


@dataclass
class EmbeddingDedupParams(NearDupParams):
    threshold: float = doc("drop a row whose cosine with a kept row is >= this", 0.9)
    model_path: str | None = doc(
        "sentence-transformers model folder (null = the bundled all-MiniLM-L6-v2)", None
    )
    device: str = doc("torch device", "cpu")
    batch_size: int = doc("texts per encoding batch", 64)
    block_size: int = doc("rows compared at once (memory: block_size x kept rows floats)", 1024)
    exact_max_rows: int = doc(
        "up to this many rows (per group) every pair is compared; above, approximate", 20000
    )
    cluster_rows: int = doc(
        "approximate: rows per k-means cluster; only rows of one cluster are compared", 2000
    )
    passes: int = doc("approximate: re-cluster the kept rows this many times (catches cluster edges)", 2)
    seed: int = doc("k-means seed (fixed, so results do not depend on the run seed)", 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"`threshold` is a cosine in [-1, 1], got {self.threshold}")
        for key in ("batch_size", "block_size", "exact_max_rows", "cluster_rows", "passes"):
            if getattr(self, key) < 1:
                raise ValueError(f"`{key}` must be >= 1")


class NearDupStage(Stage):
    """Shared driver: rows in keep order, one duplicate finder per group, drops and clusters
    counted. `find(texts, rows)` gets a group's non-empty texts best first (and their row
    positions) and returns, per text, the index of the kept text it repeats, or -1."""

    def reads(self) -> set[str]:
        p: NearDupParams = self.params
        return {p.column} | {c for c in (p.group_by, p.score_column) if c}

    def find(self, texts: list[str], rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, texts: list[str]) -> None:
        """Called once with every text before the groups are searched (embedding: encode)."""

    def order(self, df: pd.DataFrame) -> np.ndarray:
        """Row positions in keep order: row order, or by score (highest first, stable)."""
        p: NearDupParams = self.params
        if p.keep == "first":
            return np.arange(len(df))
        score = pd.to_numeric(df[p.score_column], errors="coerce").to_numpy(dtype=float)
        return np.lexsort((np.arange(len(df)), np.isnan(score), -np.nan_to_num(score, nan=0.0)))

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: NearDupParams = self.params
        texts = df[p.column].fillna("").astype(str).tolist()
        self.prepare(texts)
        groups = df.groupby(p.group_by, sort=False, dropna=False).indices if p.group_by else {None: None}
        rank = np.empty(len(df), dtype=np.int64)
        rank[self.order(df)] = np.arange(len(df))
        drop = np.zeros(len(df), dtype=bool)
        clusters = 0
        for idx in groups.values():
            rows = np.arange(len(df)) if idx is None else np.asarray(idx)
            rows = rows[np.argsort(rank[rows], kind="stable")]
            rows = rows[[bool(texts[i].strip()) for i in rows]]  # empty texts: filter_rows' job
            if not len(rows):
                continue
            dup_of = self.find([texts[i] for i in rows], rows)
            drop[rows[dup_of >= 0]] = True
            clusters += len(np.unique(dup_of[dup_of >= 0]))
        self.ctx.stats.drop(self.name, "near_duplicate", int(drop.sum()))
        self.ctx.stats.count(self.name, "clusters", clusters)
        return df[~drop].reset_index(drop=True)


@register_stage
class DedupMinhash(NearDupStage):
    """Lexical near-duplicates: MinHash LSH over character or word shingles (datasketch).

    Every LSH candidate is confirmed on the exact Jaccard of the two shingle sets."""

    kind = "dedup_minhash"
    Params = MinHashParams

    def find(self, texts: list[str], rows: np.ndarray) -> np.ndarray:
        p: MinHashParams = self.params
        index = MinHashIndex(p.threshold, p.shingle, p.shingle_size, p.num_perm, p.seed)
        dup_of = np.full(len(texts), -1, dtype=np.int64)
        for pos, text in enumerate(texts):
            hit = index.match(text)
            if hit is None:
                index.add(pos, text)
            else:
                dup_of[pos] = hit[0]
        return dup_of


@register_stage
class DedupEmbedding(NearDupStage):
    """Semantic near-duplicates: cosine of sentence embeddings (MiniLM by default).

    Each block of rows is compared with the rows kept so far; on large inputs k-means clusters
    bound the work. Needs the `embeddings` extra, checked at build."""

    kind = "dedup_embedding"
    Params = EmbeddingDedupParams

    def __init__(self, name: str, params: EmbeddingDedupParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        embed.check_available(self.where, self.kind, params.model_path)
        self._emb: np.ndarray | None = None

    def fingerprint_extra(self) -> str:
        return embed.model_identity(self.params.model_path)

    def prepare(self, texts: list[str]) -> None:
        p: EmbeddingDedupParams = self.params
        if not texts:
            return
        model = embed.model_for(p.model_path, p.device)
        self._emb = np.asarray(embed.encode(model, texts, p.batch_size), dtype=np.float32)

    def find(self, texts: list[str], rows: np.ndarray) -> np.ndarray:
        p: EmbeddingDedupParams = self.params
        assert self._emb is not None
        return greedy_cosine(
            self._emb[rows], p.threshold, p.block_size, p.exact_max_rows, p.cluster_rows, p.passes, p.seed
        )
