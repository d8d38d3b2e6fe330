"""Benchmark dedup_minhash and dedup_embedding on N short texts: wall time, peak RSS, drops.

    .venv/bin/python benchmarks/dedup/bench_dedup.py [--rows 100000] [--only minhash|embedding]
        [--save-vectors FILE.npy]
    .venv/bin/python benchmarks/dedup/bench_dedup.py --rows 100000 --vectors FILE.npy --recall

Each measurement runs the real stage (`stage.run` on a DataFrame) in a fresh process, so peak
RSS (ru_maxrss) is that stage's alone, model load included; for dedup_embedding the time spent
encoding is reported apart from the whole. The texts are synthetic questions: an opener and a
run of words from Python's own documentation (pydoc_data, in every CPython), so word
frequencies are those of English prose; 10% are near-copies of an earlier text (a word dropped
or replaced, upper-cased, or other final punctuation). Offline and deterministic for a --seed.

--minhash-recall compares dedup_minhash with a brute-force greedy pass over the exact Jaccard
of every pair (O(N²): use a few thousand rows).

--save-vectors keeps the MiniLM vectors of the embedding run; --vectors reuses them instead of
encoding (the search alone). --recall then runs dedup_embedding exact (every pair) and
approximate (k-means clusters) on the same vectors and counts how many exact drops the
approximate path also made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import platform
import random
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

OPENERS = ["How do I", "What is the best way to", "Can you explain why", "Write a short note on",
           "Why does", "What happens when", "Give me tips to", "Is it a good idea to",
           "Help me understand", "What should I know about", "Compare", "Summarize",
           "How can I avoid", "Suggest a plan to", "What are the pros and cons of"]  # fmt: skip


def texts(n: int, seed: int) -> list[str]:
    import pydoc_data.topics as topics

    words = re.findall(r"[A-Za-z][a-z]+", " ".join(topics.topics.values()))
    rng, out = random.Random(seed), []
    while len(out) < n:
        if out and rng.random() < 0.1:  # a near-copy of an earlier text
            toks = rng.choice(out).split()
            i = rng.randrange(len(toks))
            if rng.random() < 0.5 and len(toks) > 4:
                del toks[i]
            else:
                toks[i] = rng.choice(words).lower()
            s = " ".join(toks)
            out.append(s.upper() if rng.random() < 0.1 else s.rstrip("?.!") + rng.choice("?.!"))
            continue
        start = rng.randrange(len(words) - 30)
        body = words[start : start + rng.randint(5, 15)]
        out.append(f"{rng.choice(OPENERS)} {' '.join(body).lower()}?")
    return out


def _patch_encoder(vectors: str | None, save: str | None, timing: dict[str, float]) -> None:
    """Time embed.encode; or answer it from saved vectors (then no model is loaded)."""
    import numpy as np

    from selfalign.stages import embed

    real = embed.encode
    if vectors:
        saved = np.load(vectors)
        embed.model_for = lambda path, device: None  # type: ignore[assignment]
        embed.encode = lambda model, texts, batch_size=64: saved[: len(texts)]  # type: ignore[assignment]
        return

    def timed(model: Any, texts: list[str], batch_size: int = 64) -> Any:
        t0 = time.perf_counter()
        out = real(model, texts, batch_size)
        timing["encode_s"] = round(time.perf_counter() - t0, 2)
        if save:
            np.save(save, out)
        return out

    embed.encode = timed  # type: ignore[assignment]


def measure(kind: str, params: dict[str, Any], args: argparse.Namespace, queue: Any) -> None:
    """One stage run in this (fresh) process; the result goes back through `queue`."""
    import pandas as pd

    from selfalign.config import parse_params
    from selfalign.context import RunContext
    from selfalign.prompts import PromptLibrary
    from selfalign.stages import STAGES

    timing: dict[str, float] = {}
    _patch_encoder(args.vectors, args.save_vectors, timing)
    df = pd.DataFrame({"row_id": [str(i) for i in range(args.rows)], "text": texts(args.rows, args.seed)})
    # the dedup stages call no model: no LLM session is needed
    ctx = RunContext(run_dir=None, prompts=PromptLibrary([]), llm=None, show_progress=False)  # type: ignore[arg-type]
    cls = STAGES.get(kind)
    stage = cls("bench", parse_params(cls.Params, {"column": "text", **params}, "bench"), ctx)
    t0 = time.perf_counter()
    out = asyncio.run(stage.run(df))
    st = ctx.stats.stage("bench")
    queue.put(
        {
            "kind": kind,
            "params": params,
            "rows": args.rows,
            "kept": len(out),
            "dropped": int(st.drops.get("near_duplicate", 0)),
            "clusters": int(st.counts.get("clusters", 0)),
            "wall_s": round(time.perf_counter() - t0, 2),
            **timing,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "kept_ids": list(out.row_id) if args.recall else None,
        }
    )


def minhash_recall(n: int, seed: int) -> dict[str, Any]:
    """dedup_minhash's drops vs a brute-force greedy pass with the same rule (exact Jaccard of
    character 5-grams >= 0.8 with an earlier kept row)."""
    import pandas as pd

    from selfalign.config import parse_params
    from selfalign.context import RunContext
    from selfalign.prompts import PromptLibrary
    from selfalign.stages import STAGES
    from selfalign.text import shingles

    rows = texts(n, seed)
    sets = [shingles(t, 5, "char") for t in rows]
    kept: list[int] = []
    brute = set()
    for i, a in enumerate(sets):
        if any(len(a & sets[j]) / len(a | sets[j]) >= 0.8 for j in kept):
            brute.add(i)
        else:
            kept.append(i)
    ctx = RunContext(run_dir=None, prompts=PromptLibrary([]), llm=None, show_progress=False)  # type: ignore[arg-type]
    cls = STAGES.get("dedup_minhash")
    stage = cls("bench", parse_params(cls.Params, {"column": "text"}, "bench"), ctx)
    out = asyncio.run(stage.run(pd.DataFrame({"row_id": [str(i) for i in range(n)], "text": rows})))
    lsh = set(range(n)) - {int(i) for i in out.row_id}
    return {"rows": n, "brute_force_drops": len(brute), "minhash_drops": len(lsh), "both": len(brute & lsh)}


def run(kind: str, params: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(kind, params, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["minhash", "embedding"])
    ap.add_argument("--save-vectors", help="embedding: np.save the MiniLM vectors here")
    ap.add_argument("--vectors", help="embedding: use these saved vectors instead of encoding")
    ap.add_argument("--recall", action="store_true", help="embedding: approximate vs exact")
    ap.add_argument("--minhash-recall", action="store_true", help="minhash vs brute force")
    args = ap.parse_args()
    results = []
    if args.minhash_recall:
        print(json.dumps(minhash_recall(args.rows, args.seed)))
        return
    if args.recall:
        exact = run("dedup_embedding", {"exact_max_rows": args.rows}, args)
        approx = run("dedup_embedding", {"exact_max_rows": 1}, args)
        everyone = {str(i) for i in range(args.rows)}
        e_drop, a_drop = everyone - set(exact["kept_ids"]), everyone - set(approx["kept_ids"])
        overlap = {"exact_drops": len(e_drop), "approx_drops": len(a_drop), "both": len(e_drop & a_drop)}
        results = [exact, approx, overlap]
    else:
        if args.only in (None, "minhash"):
            results.append(run("dedup_minhash", {}, args))
        if args.only in (None, "embedding"):
            results.append(run("dedup_embedding", {}, args))
    for r in results:
        r.pop("kept_ids", None)
        print(json.dumps(r))
    print(json.dumps({"python": platform.python_version(), "cpus": mp.cpu_count()}))


if __name__ == "__main__":
    main()
