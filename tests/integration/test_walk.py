"""The one segment walk (selfalign/walk.py) that both executors consume: which stages each leg
runs, what it gets after checkpoint reuse, and the one output type (Stored) a run returns."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT, TINY_DIRS, tiny_questions
from helpers import TINY as TINY_ARGS

from selfalign import aio, api
from selfalign.checkpoint import Stored
from selfalign.hydra_setup import compose_config
from selfalign.runner import Built, build
from selfalign.segments import split

TINY = [*TINY_ARGS, "model=test"]
DIRS = TINY_DIRS


@pytest.fixture
def questions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tiny_questions(tmp_path / "q.jsonl", 12)
    monkeypatch.setenv("TINY_DATA", str(data))
    return data


def built_in(run_dir: Path, *overrides: str) -> Built:
    return build(compose_config([*TINY, *overrides], DIRS), run_dir, show_progress=False)


def walk_through(built: Built, sources: bool) -> list[tuple[list[str], bool, int]]:
    """(steps, led by a chunked source, input rows) per leg, handing back each leg's input as
    every step's output (nothing runs)."""
    from selfalign.walk import Walk

    walk, legs = Walk(built, split(built.stages), sources), []
    for leg in walk:
        legs.append(([s.stage.name for s in leg.steps], leg.source is not None, len(leg.input)))
        walk.ran(leg, [Stored.kept(s.ck, leg.input) for s in leg.steps])
    return legs


def test_a_fresh_run_dir_runs_every_stage_and_the_local_walk_streams_the_load(tmp_path, questions):
    streamed = ["load", "clean", "answer", "judge", "best"]
    local = walk_through(built_in(tmp_path / "a"), sources=True)
    assert local == [(streamed, True, 0), (["export"], False, 0)]
    # the Ray executor loads on the driver: the same walk without a chunked source
    assert walk_through(built_in(tmp_path / "b"), sources=False) == [
        (["load"], False, 0),
        (streamed[1:], False, 0),
        (["export"], False, 0),
    ]


def test_a_rerun_gets_the_reused_rows_and_runs_from_the_first_changed_stage(tmp_path, questions):
    run = tmp_path / "run"
    api.run([*TINY], run, DIRS)
    assert walk_through(built_in(run), sources=True) == []  # every stage reused
    answers = pd.read_json(next((run / "stages").glob("*_answer.jsonl")), lines=True)
    legs = walk_through(built_in(run, "pipeline.stages.judge.temperature=0.5"), sources=True)
    # the segment's head is reused; the rest of it runs on the reused answers, then export
    # gets what the leg before handed back (here: its input, as nothing ran)
    assert legs == [(["judge", "best"], False, len(answers)), (["export"], False, len(answers))]


def test_the_executor_must_hand_back_each_legs_outputs(tmp_path, questions):
    from selfalign.walk import Walk

    built = built_in(tmp_path / "run")
    walk = Walk(built, split(built.stages), sources=True)
    with pytest.raises(RuntimeError, match="Walk.ran"):
        for _ in walk:
            pass


@pytest.mark.parametrize("order", ["load,clean,answer,judge,best,export", "load,clean,answer,judge,best"])
def test_every_run_returns_one_output_type(tmp_path, questions, order):
    """A run ending in a barrier keeps its output in memory, a streamed one leaves it on disk:
    both are a Stored, and both give the rows dataset.jsonl holds."""
    from selfalign.executors.local import execute

    built = built_in(tmp_path / "run", f"pipeline.order=[{order}]")
    out = aio.run(execute(built))
    assert isinstance(out, Stored)
    assert (out.df is None) == (not order.endswith("export"))  # streamed last: not in memory
    assert len(out) == len(out.frame()) == len(pd.concat(list(out.frames(5)))) > 0


def test_only_the_walk_decides_reuse():
    """No executor re-implements checkpoint reuse: walk.py is the only module that imports what
    it takes (fingerprint, Checkpoint, restore)."""
    users = set()
    for path in sorted((ROOT / "selfalign").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.ImportFrom) and node.module == "selfalign.checkpoint"):
                continue
            if {a.name for a in node.names} & {"fingerprint", "Checkpoint", "restore"}:
                users.add(str(path.relative_to(ROOT)))
    assert users == {"selfalign/walk.py"}
