"""A 2-row pipeline through the whole runner on the real embedded model (model=local, CPU)."""

import pytest
from helpers import TINY, TINY_DIRS

from selfalign import api

pytestmark = pytest.mark.slow


def test_two_row_pipeline_on_the_embedded_model(tmp_path):
    overrides = [
        *TINY,
        "model=local",
        "pipeline.order=[load,clean,answer]",
        "pipeline.stages.load.limit=2",
        "pipeline.stages.answer.n=1",
        "pipeline.stages.answer.max_tokens=24",
        "model.n_parallel=2",
        "model.concurrency=2",
        "model.n_ctx=2048",
    ]
    df, manifest = api.run(overrides, tmp_path / "run", config_dirs=TINY_DIRS)
    assert len(df) == 2 and df.answer.str.len().min() > 0
    totals = manifest["llm_totals"]
    assert totals["sent"] == 2 and totals["completion_tokens"] > 0 and totals["failures"] == 0
    assert manifest["models"]["default"].startswith("local:")
    assert (tmp_path / "run" / "llama_server.log").exists()
    # the same config again into a new run dir: everything from the cache, no server needed
    _, again = api.run(overrides, tmp_path / "run2", config_dirs=TINY_DIRS)
    assert again["llm_totals"]["sent"] == 0 and again["llm_totals"]["cache_hits"] == 2
