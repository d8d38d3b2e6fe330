"""The row-wise LLM stage of docs/architecture.md ("Where does a new stage go?"), run as the
plugin a user would write: taken from the docs' code block, imported through `plugins=[…]` and
run in a tiny pipeline on the scripted test model. It streams (row-local by default), counts
drops by reason and keeps the dropped rows in rejected.jsonl; `row_local = False` opts out."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import ROOT, TINY_CLI

from selfalign.cli import main
from selfalign.stages.base import STAGES, Stage, register_stage

MODULE = "rate_stages_from_docs"
# six questions in, one reply each (retries=0): two dropped, each under its own reason
REPLIES = ["Score: 9", "Score: 8", "Score: 2", "I cannot rate this.", "Score: 7", "Score: 6"]


def docs_example() -> str:
    """The python block of the "Where does a new stage go?" section that defines a RowLLMStage."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Where does a new stage go?", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, re.S | re.M)
    (code,) = [b for b in blocks if "(RowLLMStage)" in b]
    return code


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / f"{MODULE}.py").write_text(docs_example(), encoding="utf-8")
    sys.path.insert(0, str(folder))
    module = importlib.import_module(MODULE)

    class RateAtOnce(module.RateText):  # the opt-out the docs describe
        kind = "rate_text_barrier"
        row_local = False

    register_stage(RateAtOnce)
    module.RateAtOnce = RateAtOnce
    yield module
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)
    for kind in ("rate_text", "rate_text_barrier"):
        STAGES._items.pop(kind, None)  # so a re-run of this module can register them again


def run_rate(tmp_path: Path, cls: type, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Path, list[int]]:
    """Run load → rate (stage class `cls`, six rows, chunk_rows=2) through the CLI entry point
    on the scripted REPLIES: (exit code, run dir, the size of every frame the stage ran on)."""
    chunks: list[int] = []
    real = cls.process

    async def counting(self: Any, df: Any) -> Any:
        chunks.append(len(df))
        return await real(self, df)

    monkeypatch.setattr(cls, "process", counting)
    run_dir = tmp_path / "run"
    args = [
        "run",
        *TINY_CLI,
        "model=test",
        f"plugins=[{MODULE}]",
        "pipeline.order=[load,rate]",
        f"+pipeline.stages.rate.kind={cls.kind}",
        "+pipeline.stages.rate.prompt=tiny/answer",
        "+pipeline.stages.rate.min_rating=5",
        "+pipeline.stages.rate.retries=0",
        "chunk_rows=2",
        f"hydra.run.dir={run_dir}",
    ]
    return main(args), run_dir, chunks


def test_the_docs_example_is_a_complete_stage_of_at_most_40_lines(plugin: ModuleType) -> None:
    assert len(docs_example().strip().splitlines()) <= 40
    assert plugin.RateText.row_local  # never declared: row-wise stages are row-local by default
    assert not hasattr(Stage, "rowwise")  # one name for it: row_local / is_row_local()


def test_the_docs_example_runs_as_a_plugin_streams_and_counts_drops_by_reason(
    plugin: ModuleType, tmp_path: Path, test_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_model.queue(*REPLIES)
    code, run_dir, chunks = run_rate(tmp_path, plugin.RateText, monkeypatch)
    assert code == 0
    rows = [json.loads(x) for x in (run_dir / "dataset.jsonl").read_text().splitlines()]
    assert sorted(r["rating"] for r in rows) == [6.0, 7.0, 8.0, 9.0]
    assert chunks == [2, 2, 2]  # streamed: chunk_rows=2 over six rows
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (stage,) = [s for s in manifest["stages"] if s["name"] == "rate"]
    assert stage["drops"] == {"low_rating": 1, "parse:no_score": 1} and stage["rows_out"] == 4
    rejected = [json.loads(x) for x in (run_dir / "rejected.jsonl").read_text().splitlines()]
    by_reason = {r["reason"]: r for r in rejected if r["stage"] == "rate"}
    assert Counter(r["stage"] for r in rejected) == {"rate": 2}
    assert by_reason["low_rating"]["raw"] == "Score: 2"  # a stage's own drop keeps the reply
    assert by_reason["parse: no_score"]["raw"] == "I cannot rate this."


def test_row_local_false_makes_it_a_barrier(
    plugin: ModuleType, tmp_path: Path, test_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    test_model.queue(*REPLIES)
    code, _, chunks = run_rate(tmp_path, plugin.RateAtOnce, monkeypatch)
    assert code == 0 and chunks == [6]  # all rows at once


def test_a_column_the_stage_did_not_declare_is_an_error(
    plugin: ModuleType, ctx: Any, test_model: Any
) -> None:
    import asyncio

    import pandas as pd

    class Sloppy(plugin.RateText):
        def columns(self, row: dict[str, Any], outcome: Any) -> dict[str, Any]:
            return {"rating": outcome.value, "confidence": 1.0}  # not in writes()

    stage = Sloppy("rate", plugin.RateParams(prompt="tiny/answer"), ctx)
    test_model.queue("Score: 9")
    with pytest.raises(RuntimeError, match=r"undeclared column\(s\) \['confidence'\]"):
        asyncio.run(stage.run(pd.DataFrame({"row_id": ["0"], "question": ["Why?"]})))
