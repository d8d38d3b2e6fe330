"""Benchmark the ALMoST pool's ROUGE-L novelty check (expand_pool) up to a 10k-prompt pool.

    .venv/bin/python benchmarks/almost_rouge/bench_pool.py [--size 10000] [--brute 40]

1. Grow a pool from the shipped seeds to --size accepted prompts, exactly as expand_pool does
   (check each candidate with RougePool.similar, add it if novel). A third of the candidates
   are near-copies of pool prompts, so the reject path is exercised too.
2. At the final size, time --brute candidates against every stored prompt with rouge-score's
   public RougeScorer (the naive check), compare the decisions with RougePool's, and time both.

Synthetic prompts: a question opener + words drawn from the running text of Python's own
documentation (pydoc_data, in every CPython), so word frequencies (and stop-word overlap) are
those of real English prose. Offline and deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from selfalign.stages.methods.almost.pool import RougePool, read_seed_file  # noqa: E402

OPENERS = [
    "How do I",
    "What is the best way to",
    "Can you explain why",
    "Write a short note on",
    "Why does",
    "What happens when",
    "Give me tips to",
    "Is it a good idea to",
    "Help me understand",
    "What should I know about",
    "Compare",
    "Summarize",
    "How can I avoid",
    "Suggest a plan to",
    "What are the pros and cons of",
    "Explain to a beginner how",
    "Why is it hard to",
    "Recommend a way to",
]


def corpus_words() -> list[str]:
    import pydoc_data.topics as topics

    return re.findall(r"[A-Za-z][a-z]+", " ".join(topics.topics.values()))


def make_candidate(rng: random.Random, words: list[str], pool: list[str]) -> str:
    if pool and rng.random() < 1 / 3:  # a near-copy: drop or swap two words of a pool prompt
        toks = rng.choice(pool).split()
        for _ in range(2):
            i = rng.randrange(len(toks))
            if rng.random() < 0.5 and len(toks) > 3:
                del toks[i]
            else:
                toks[i] = rng.choice(words)
        return " ".join(toks)
    start = rng.randrange(len(words) - 40)
    n = rng.randint(5, 22)
    # a run of real text (word order like prose) with some words replaced
    body = [w if rng.random() < 0.6 else rng.choice(words) for w in words[start : start + n]]
    return f"{rng.choice(OPENERS)} {' '.join(body).lower()}?"


def grow(size: int, seed: int) -> tuple[RougePool, dict[str, float]]:
    rng, words = random.Random(seed), corpus_words()
    _, seeds = read_seed_file(str(ROOT / "selfalign/samples/almost_seed_prompts.txt"), "bench")
    pool = RougePool(0.5)
    for s in seeds:
        pool.add(s)
    rejected = 0
    last_k, window = [], 1000
    start = time.perf_counter()
    while len(pool) < size:
        cand = make_candidate(rng, words, pool.texts)
        t0 = time.perf_counter()
        hit = pool.similar(cand)
        if hit is None:
            pool.add(cand)
        else:
            rejected += 1
        if len(pool) > size - window:
            last_k.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return pool, {
        "grow_total_s": total,
        "candidates": pool.checks,
        "rejected": rejected,
        "check_ms_mean_last1k": 1e3 * statistics.fmean(last_k),
        "check_ms_p99_last1k": 1e3 * sorted(last_k)[int(0.99 * len(last_k))],
        "exact_lcs_per_check": pool.exact_checks / pool.checks,
    }


def brute_vs_fast(pool: RougePool, n: int, seed: int) -> dict[str, float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rng, words = random.Random(seed + 1), corpus_words()
    cands = [make_candidate(rng, words, pool.texts) for _ in range(n)]
    t0 = time.perf_counter()
    # like the original: score the candidate against every stored prompt, then threshold
    brute = [max(scorer.score(s, c)["rougeL"].fmeasure for s in pool.texts) >= 0.5 for c in cands]
    t_brute = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast = [pool.similar(c) is not None for c in cands]
    t_fast = time.perf_counter() - t0
    return {
        "brute_candidates": n,
        "brute_ms_per_check": 1e3 * t_brute / n,
        "fast_ms_per_check": 1e3 * t_fast / n,
        "speedup": t_brute / t_fast,
        "decisions_agree": sum(a == b for a, b in zip(brute, fast, strict=True)),
        "brute_rejects": sum(brute),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--brute", type=int, default=40, help="candidates for the naive check")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pool, grown = grow(args.size, args.seed)
    result = {
        "pool_size": len(pool),
        **grown,
        **brute_vs_fast(pool, args.brute, args.seed),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
