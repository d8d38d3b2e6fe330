"""dedup_minhash and dedup_embedding (the latter on fixed vectors: the MiniLM runs are in
tests/integration), and the search behind them: MinHashIndex, greedy_cosine, k-means."""

import random

import numpy as np
import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError
from selfalign.stages import embed
from selfalign.stages.neighbours import CosineIndex, MinHashIndex, greedy_cosine, kmeans_labels
from selfalign.text import shingles

TEXTS = [
    "How do I bake sourdough bread at home?",  # a
    "How do I bake sourdough bread at home??",  # b: near-duplicate of a
    "What are the rules of chess for beginners?",  # c
    "how do i bake sourdough bread at home",  # d: near-duplicate of a
    "Write a short poem about autumn leaves.",  # e
    "",  # f: empty: left alone
]


def frame(texts=TEXTS, **cols):
    return pd.DataFrame({"row_id": [chr(97 + i) for i in range(len(texts))], "text": texts, **cols})


def jaccard(a, b, n=5, unit="char"):
    x, y = shingles(a, n, unit), shingles(b, n, unit)
    return len(x & y) / len(x | y)


# --- dedup_minhash ---------------------------------------------------------------------------


def test_minhash_keeps_the_first_of_each_cluster_and_counts(ctx):
    out = run_stage(make_stage("dedup_minhash", ctx, "d", column="text"), frame())
    assert list(out.row_id) == ["a", "c", "e", "f"]
    st = ctx.stats.stage("d")
    assert st.drops == {"near_duplicate": 2} and st.counts == {"clusters": 1}


def test_minhash_threshold_decides(ctx):
    a, b = "Give me tips for learning Spanish quickly.", "Give me tips for learning Japanese quickly."
    j = jaccard(a, b)
    assert 0.4 < j < 0.7
    df = frame([a, b])
    # well below: the LSH proposes the pair (near the threshold it may not: it is probabilistic)
    assert len(run_stage(make_stage("dedup_minhash", ctx, "lo", column="text", threshold=j - 0.15), df)) == 1
    assert len(run_stage(make_stage("dedup_minhash", ctx, "hi", column="text", threshold=j + 0.05), df)) == 2


def test_minhash_keep_best_by_score_and_per_group(ctx):
    df = frame(score=[3, 5, 1, None, 2, 0], group=["x", "x", "x", "y", "y", "y"])
    best = run_stage(
        make_stage("dedup_minhash", ctx, "b", column="text", keep="best", score_column="score"), df
    )
    assert list(best.row_id) == ["b", "c", "e", "f"]  # b scores 5: it stays, a and d go
    grouped = run_stage(make_stage("dedup_minhash", ctx, "g", column="text", group_by="group"), df)
    assert list(grouped.row_id) == ["a", "c", "d", "e", "f"]  # d is alone in its group
    assert ctx.stats.stage("g").drops == {"near_duplicate": 1}


def test_minhash_word_shingles_and_other_scripts(ctx):
    texts = [
        "Как испечь хлеб дома быстро и просто?",
        "Как испечь хлеб дома быстро и просто",
        "東京でおすすめのラーメン屋はどこですか？",
        "東京でおすすめのラーメン屋はどこですか",
        "كيف أخبز الخبز في المنزل بسرعة؟",
        "كيف أخبز الخبز في المنزل بسرعة",
        "हिन्दी भाषा बहुत सुंदर है।",
        "हिन्दी भाषा बहुत सुंदर है",
    ]
    for shingle, n in (("char", 5), ("word", 2)):
        stage = make_stage(
            "dedup_minhash", ctx, f"s{shingle}", column="text", shingle=shingle, shingle_size=n
        )
        assert list(run_stage(stage, frame(texts)).row_id) == ["a", "c", "e", "g"], shingle


def test_minhash_finds_what_brute_force_finds(ctx):
    """Planted near-duplicates among random texts: every drop is confirmed, few are missed."""
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(400)]
    base = [" ".join(rng.choice(vocab) for _ in range(12)) for _ in range(600)]
    copies = []
    for t in base[:200]:
        toks = t.split()
        toks[rng.randrange(12)] = rng.choice(vocab)  # one word changed
        copies.append(" ".join(toks))
    texts = base + copies
    out = run_stage(make_stage("dedup_minhash", ctx, "m", column="text", threshold=0.6), frame(texts))
    kept = set(out.text)
    dropped = [t for t in texts if t not in kept]
    assert all(any(jaccard(t, k) >= 0.6 for k in kept) for t in dropped)  # precision: exact check
    truly = sum(any(jaccard(c, b) >= 0.6 for b in base) for c in copies)
    assert len(dropped) >= 0.95 * truly  # recall of the LSH


def test_minhash_config_errors(ctx):
    with pytest.raises(ConfigError, match="keep=best needs `score_column`"):
        make_stage("dedup_minhash", ctx, "d", column="text", keep="best")
    with pytest.raises(ConfigError, match=r"`threshold` must be in \(0, 1\]"):
        make_stage("dedup_minhash", ctx, "d", column="text", threshold=0)
    with pytest.raises(ConfigError, match="shingle: expected 'word' \\| 'char'"):
        make_stage("dedup_minhash", ctx, "d", column="text", shingle="token")


def test_minhash_reads_its_columns(ctx):
    stage = make_stage("dedup_minhash", ctx, "d", column="t", group_by="g", keep="best", score_column="s")
    assert stage.reads() == {"t", "g", "s"} and stage.writes() == set()


def test_minhash_index_match_and_add():
    index = MinHashIndex(0.5, "word", 2)
    assert index.match("anything at all") is None
    index.add(0, "How do I bake bread at home?")
    index.add(1, "")  # nothing to store
    assert len(index) == 1
    key, j = index.match("How do I bake bread at home today?")
    assert key == 0 and j == pytest.approx(6 / 7)
    assert index.match("Write a poem about the sea.") is None


# --- dedup_embedding on fixed vectors ------------------------------------------------------


@pytest.fixture
def vectors(monkeypatch):
    """Texts → fixed unit vectors, standing in for MiniLM."""
    table = {}

    def encode(model, texts, batch_size=64):
        return np.stack([table[t] for t in texts]).astype(np.float32)

    monkeypatch.setattr(embed, "model_for", lambda path, device: object())
    monkeypatch.setattr(embed, "encode", encode)
    return table


def unit(*xs):
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_embedding_dedup_drops_by_cosine(ctx, vectors):
    vectors.update(
        {
            "p": unit(1, 0, 0),
            "p2": unit(1, 0.3, 0),
            "q": unit(0, 1, 0),
            "p3": unit(1, 0.1, 0),
            "": unit(1, 0, 0),
        }
    )
    df = frame(["p", "q", "p2", "p3", ""], score=[1, 2, 3, 0, 9])
    out = run_stage(make_stage("dedup_embedding", ctx, "e", column="text", threshold=0.95), df)
    # cos(p, p2) = 0.958, cos(p, p3) = 0.995: both are >= 0.95
    assert list(out.text) == ["p", "q", ""] and ctx.stats.stage("e").counts == {"clusters": 1}
    best = make_stage(
        "dedup_embedding", ctx, "b", column="text", threshold=0.95, keep="best", score_column="score"
    )
    assert list(run_stage(best, df).text) == ["q", "p2", ""]
    strict = make_stage("dedup_embedding", ctx, "s", column="text", threshold=0.99)
    assert list(run_stage(strict, df).text) == ["p", "q", "p2", ""]


def test_embedding_dedup_needs_the_extra(ctx, monkeypatch):
    monkeypatch.setattr(embed, "missing_modules", lambda need_bundled: ["torch"])
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.e \(dedup_embedding\): the module\(s\) torch"):
        make_stage("dedup_embedding", ctx, "e", column="text")


# --- greedy_cosine and k-means -------------------------------------------------------------


def planted(n=2000, dups=400, dim=32, noise=0.25, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    x = np.concatenate([base, base[:dups] + noise * rng.normal(size=(dups, dim))]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[rng.permutation(len(x))]


def brute(x, t):
    sim, kept, out = x @ x.T, [], np.full(len(x), -1)
    for i in range(len(x)):
        near = [j for j in kept if sim[i, j] >= t]
        if near:
            out[i] = max(near, key=lambda j: (sim[i, j], -j))
        else:
            kept.append(i)
    return out


def test_exact_greedy_equals_brute_force_across_blocks():
    x = planted(300, 80, noise=0.4)
    expected = brute(x, 0.9)
    assert 20 < (expected >= 0).sum() < 80
    for block in (7, 64, 1000):
        assert np.array_equal(greedy_cosine(x, 0.9, block=block), expected)


def test_clustered_greedy_finds_nearly_all_and_only_true_duplicates():
    x = planted()
    exact = greedy_cosine(x, 0.9)
    approx = greedy_cosine(x, 0.9, block=128, exact_max_rows=100, cluster_rows=150, passes=2)
    hit = approx >= 0
    assert (approx[hit] >= 0).all() and (approx[approx[hit]] < 0).all()  # points at kept rows
    assert ((x[hit] * x[approx[hit]]).sum(axis=1) >= 0.9 - 1e-6).all()
    assert hit.sum() >= 0.95 * (exact >= 0).sum()


def test_kmeans_is_seeded_and_separates_clusters():
    rng = np.random.default_rng(1)
    centres = np.eye(4, 16, dtype=np.float32)
    x = np.repeat(centres, 50, axis=0) + 0.05 * rng.normal(size=(200, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = kmeans_labels(x, 4, seed=0)
    assert np.array_equal(labels, kmeans_labels(x, 4, seed=0))
    assert all(len(set(labels[i * 50 : (i + 1) * 50])) == 1 for i in range(4))
    assert len(set(labels)) == 4 and set(kmeans_labels(x, 1, seed=0)) == {0}


def test_cosine_index_grows():
    index = CosineIndex(0.9, 2)
    assert index.match(unit(1, 0)) is None
    for i in range(40):
        index.add(unit(np.cos(i), np.sin(i)))
    assert len(index) == 40
    j, cos = index.match(unit(np.cos(5.01), np.sin(5.01)))
    assert j == 5 and cos > 0.99


def test_empty_frames_pass_through(ctx, vectors):
    empty = frame([])
    assert run_stage(make_stage("dedup_minhash", ctx, "m", column="text"), empty).empty
    assert run_stage(make_stage("dedup_embedding", ctx, "e", column="text", group_by="text"), empty).empty
    assert ctx.stats.stage("m").drops == {} and ctx.stats.stage("e").counts == {}
