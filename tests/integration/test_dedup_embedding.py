"""dedup_embedding and the ALMoST pool's embedding check with the real all-MiniLM-L6-v2 of the
embeddings extra (small, offline)."""

import re

import pandas as pd
from helpers import make_stage, run_stage

from selfalign.stages import embed

QUESTIONS = [
    "How do I bake bread at home?",
    "What is the best way to make bread at home?",  # a paraphrase: few shared words
    "Why is the sky blue?",
    "How can I bake bread in my own kitchen?",  # another paraphrase of the first
    "What causes the blue colour of the sky?",  # a paraphrase of the third
    "Name three rivers in Africa.",
]


def frame(texts, **cols):
    return pd.DataFrame({"row_id": [str(i) for i in range(len(texts))], "text": texts, **cols})


def test_paraphrases_go_and_distinct_questions_stay(ctx):
    out = run_stage(make_stage("dedup_embedding", ctx, "e", column="text", threshold=0.8), frame(QUESTIONS))
    assert list(out.row_id) == ["0", "2", "5"]
    st = ctx.stats.stage("e")
    assert st.drops == {"near_duplicate": 3} and st.counts == {"clusters": 2}
    # MinHash on the same rows sees only lexical overlap: the paraphrases survive it
    lexical = run_stage(make_stage("dedup_minhash", ctx, "m", column="text"), frame(QUESTIONS))
    assert len(lexical) == len(QUESTIONS)


def test_the_approximate_path_drops_only_true_duplicates(ctx):
    """Forced onto k-means clusters of about 8 rows: repeats always share a cluster (the same
    vector), paraphrases usually; nothing is dropped that is not within the threshold."""
    texts = QUESTIONS * 3 + [f"Tell me a fact about the number {i}." for i in range(30)]
    stage = make_stage(
        "dedup_embedding",
        ctx,
        "a",
        column="text",
        threshold=0.8,
        exact_max_rows=10,
        cluster_rows=8,
        block_size=4,
    )
    kept = run_stage(stage, frame(texts))
    dropped = sorted(set(range(len(texts))) - {int(i) for i in kept.row_id})
    assert set(range(6, 18)) <= set(dropped)  # the 2nd and 3rd copy of every question
    vecs = embed.encode(embed.model_for(None, "cpu"), texts)
    keep_idx = [int(i) for i in kept.row_id]
    assert all((vecs[keep_idx] @ vecs[i]).max() >= 0.8 - 1e-6 for i in dropped)


def test_pool_embedding_check_rejects_a_paraphrase(ctx, test_model, tmp_path):
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("Write a question.\nWhat is the tallest mountain on Earth?\n")
    test_model.queue(QUESTIONS[0], QUESTIONS[1], QUESTIONS[2])
    stage = make_stage(
        "expand_pool",
        ctx,
        "pg",
        seed_file=str(seeds),
        num_generation=2,
        batch_size=1,
        embedding_threshold=0.8,
    )
    out = run_stage(stage, pd.DataFrame())
    assert list(out.prompt) == [QUESTIONS[0], QUESTIONS[2]]
    assert ctx.stats.stage("pg").drops == {"semantic_duplicate": 1}
    rejected = (ctx.run_dir / "rejected.jsonl").read_text()
    assert re.search(r'"cosine": 0\.[89]', rejected) and QUESTIONS[0] in rejected
