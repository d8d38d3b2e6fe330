"""Near-duplicate search for the dedup stages and the ALMoST pool: an incremental MinHash LSH
index over shingles, and a greedy cosine dedup of unit vectors (exact, or within k-means clusters)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable
from typing import Any

import numpy as np

from selfalign.text import shingles

# The LSH only proposes candidates and every one is confirmed on the exact Jaccard, so a false
# positive costs a set comparison while a false negative loses a duplicate: the bands are tuned
# for a threshold 0.1 lower, with misses weighted 0.9. On the benchmark's texts this found all
# the pairs a brute-force pass found (at the plain threshold and weights: 73%).
_LSH_WEIGHTS = (0.1, 0.9)
_LSH_SLACK = 0.1


class MinHashIndex:
    """Texts added under a key; `match(text)` = the stored key with the highest exact shingle
    Jaccard >= threshold among the LSH candidates (ties: the smallest key), or None."""

    def __init__(
        self, threshold: float, unit: str = "word", n: int = 3, num_perm: int = 128, seed: int = 1
    ) -> None:
        from datasketch import MinHash, MinHashLSH

        self.threshold, self.unit, self.n = threshold, unit, n
        # shingles arrive as CRC-32 values, so the hash function is the identity; datasketch's
        # affine32 scheme mixes them (MurmurHash3 finalizer) before permuting. SHA-1 per
        # shingle, its default, was two thirds of the time on short texts.
        self._mh = MinHash(num_perm=num_perm, seed=seed, hashfunc=int)
        lsh_threshold = max(threshold - _LSH_SLACK, 0.05)
        self._lsh = MinHashLSH(threshold=lsh_threshold, num_perm=num_perm, weights=_LSH_WEIGHTS)
        # sorted shingle hashes per key: a uint32 array is ~15x smaller than a set of ints
        self._sets: dict[Hashable, np.ndarray] = {}
        self._last: tuple[str, np.ndarray, np.ndarray] | None = None  # match() then add()

    def __len__(self) -> int:
        return len(self._sets)

    def _sketch(self, text: str) -> np.ndarray:
        """The text's sorted, unique shingle hashes; leaves its MinHash in self._mh (one
        object, reused)."""
        if self._last is not None and self._last[0] == text:
            self._mh.hashvalues = self._last[2]
            return self._last[1]
        hashes = (zlib.crc32(s.encode("utf-8")) for s in shingles(text, self.n, self.unit))
        sh = np.unique(np.fromiter(hashes, dtype=np.uint32))
        self._mh.clear()
        self._mh.update_batch(sh.tolist())
        self._last = (text, sh, self._mh.hashvalues)
        return sh

    def match(self, text: str) -> tuple[Any, float] | None:
        sh = self._sketch(text)
        if not len(sh):
            return None
        best: tuple[Any, float] | None = None
        for key in self._lsh.query(self._mh):
            other = self._sets[key]
            both = len(np.intersect1d(sh, other, assume_unique=True))
            j = both / (len(sh) + len(other) - both)
            if j >= self.threshold and (best is None or (-j, key) < (-best[1], best[0])):
                best = (key, j)
        return best

    def add(self, key: Hashable, text: str) -> None:
        sh = self._sketch(text)
        if len(sh):  # an empty text has no shingles: nothing can match it
            self._lsh.insert(key, self._mh, check_duplication=False)
            self._sets[key] = sh


class CosineIndex:
    """Unit vectors added one by one; `match(v)` = (index, cosine) of the most similar stored
    vector with cosine >= threshold, or None. Capacity doubles, so adding n rows copies O(n)."""

    def __init__(self, threshold: float, dim: int) -> None:
        self.threshold = threshold
        self._vecs = np.empty((16, dim), dtype=np.float32)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def match(self, vec: np.ndarray) -> tuple[int, float] | None:
        if not self._n:
            return None
        sims = self._vecs[: self._n] @ vec
        j = int(sims.argmax())
        return (j, float(sims[j])) if sims[j] >= self.threshold else None

    def add(self, vec: np.ndarray) -> None:
        if self._n == len(self._vecs):
            self._vecs = np.concatenate([self._vecs, np.empty_like(self._vecs)])
        self._vecs[self._n] = vec
        self._n += 1


def greedy_cosine(
    emb: np.ndarray,
    threshold: float,
    block: int = 1024,
    exact_max_rows: int = 20000,
    cluster_rows: int = 2000,
    passes: int = 2,
    seed: int = 0,
) -> np.ndarray:
    """Unit vectors in keep order → per row the index of the kept row it repeats (cosine >=
    threshold), or -1. Exact up to exact_max_rows; above, exact within k-means clusters of about
    cluster_rows rows, re-clustering the survivors `passes` times."""
    if len(emb) <= exact_max_rows:
        return _greedy_exact(emb, threshold, block)
    dup_of = np.full(len(emb), -1, dtype=np.int64)
    alive = np.arange(len(emb))  # ascending = keep order
    for p in range(passes):
        labels = kmeans_labels(emb[alive], math.ceil(len(alive) / cluster_rows), seed + p, block)
        for c in np.unique(labels):
            members = alive[labels == c]
            local = _greedy_exact(emb[members], threshold, block)
            hit = local >= 0
            dup_of[members[hit]] = members[local[hit]]
        alive = alive[dup_of[alive] < 0]
    # a row kept in pass 1 may fall in pass 2: point its duplicates at the row that stayed
    while (chained := (dup_of >= 0) & (dup_of[np.maximum(dup_of, 0)] >= 0)).any():
        dup_of[chained] = dup_of[dup_of[chained]]
    return dup_of


def _greedy_exact(emb: np.ndarray, threshold: float, block: int) -> np.ndarray:
    """Each block of rows against every row kept before it (one matrix product), then the
    block's remaining rows among themselves in order."""
    n = len(emb)
    dup_of = np.full(n, -1, dtype=np.int64)
    kept = np.empty_like(emb)
    kept_at = np.empty(n, dtype=np.int64)
    k = 0
    for s in range(0, n, block):
        x = emb[s : s + block]
        out = dup_of[s : s + block]  # a view: writes go to dup_of
        if k:
            sim = x @ kept[:k].T
            best = sim.argmax(axis=1)
            hit = sim[np.arange(len(x)), best] >= threshold
            out[hit] = kept_at[best[hit]]
        rest = np.flatnonzero(out < 0)
        inner = x[rest] @ x[rest].T
        mine = np.zeros(len(rest), dtype=bool)  # kept among `rest` so far
        for a in range(len(rest)):
            if a:
                sims = np.where(mine[:a], inner[a, :a], -np.inf)
                j = int(sims.argmax())
                if sims[j] >= threshold:
                    out[rest[a]] = s + rest[j]
                    continue
            mine[a] = True
        new = rest[mine]
        kept[k : k + len(new)] = x[new]
        kept_at[k : k + len(new)] = s + new
        k += len(new)
    return dup_of


def kmeans_labels(x: np.ndarray, k: int, seed: int, block: int = 4096, iters: int = 10) -> np.ndarray:
    """Spherical k-means (seeded, numpy only): the nearest of k unit centroids for each row."""
    if k <= 1 or len(x) <= k:
        return np.zeros(len(x), dtype=np.int64)
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), size=k, replace=False)].copy()
    labels = _nearest(x, centroids, block)
    for _ in range(iters):
        sums = _cluster_sums(x, labels, k)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centroids)  # empty: keep
        new = _nearest(x, centroids, block)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def _cluster_sums(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster sums of rows (sort + reduceat: np.add.at is far slower on large inputs)."""
    order = np.argsort(labels, kind="stable")
    present, starts = np.unique(labels[order], return_index=True)
    sums = np.zeros((k, x.shape[1]), dtype=x.dtype)
    sums[present] = np.add.reduceat(x[order], starts, axis=0)
    return sums


def _nearest(x: np.ndarray, centroids: np.ndarray, block: int) -> np.ndarray:
    return np.concatenate([(x[s : s + block] @ centroids.T).argmax(axis=1) for s in range(0, len(x), block)])
