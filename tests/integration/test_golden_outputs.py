"""Golden outputs: each shipped pipeline, run on the test model with its default params (the
shipped sample), writes `dataset.jsonl` and training views byte-identical to the files under
tests/golden/outputs/<pipeline>/.

Compared: every *.jsonl / *.json file at the top of the run directory except manifest.json
(versions, timings), rejected.jsonl and prompts.json. A view that appears or disappears fails too. The files
were made by the code before the stages/runner refactor; a refactor that means to change no
behaviour must leave them as they are. To accept an intended change, run
`SELFALIGN_UPDATE_GOLDEN=1 pytest tests/integration/test_golden_outputs.py` and review the diff.
The aligners pipeline's similarity filter loads MiniLM (the `embeddings` extra). Its float32
cosine values can differ in the last bits between CPUs (BLAS kernels), so when the bytes differ
that one column is compared to 1e-6 and everything else must still be equal, key order included.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from helpers import GOLDEN, PIPELINES, check_golden, check_no_stale_golden, update_golden

from selfalign import api

# prompts.json: the run's copy of its prompt files (test_golden_prompts checks the prompts)
SKIP = {"manifest.json", "rejected.jsonl", "prompts.json"}
OUTPUTS = GOLDEN / "outputs"
# columns computed by a float32 model on the CPU: equal to this tolerance is equal
NUMERIC_NOISE = {"aligners": {"similarity"}}
TOLERANCE = 1e-6


def same_up_to_noise(expected: bytes, actual: bytes, columns: set[str]) -> bool:
    """Line by line: the same JSON objects, keys in the same order, every value equal except
    floats in `columns`, which may differ by TOLERANCE."""
    exp_lines, act_lines = expected.splitlines(), actual.splitlines()
    if len(exp_lines) != len(act_lines):
        return False
    for e_line, a_line in zip(exp_lines, act_lines, strict=True):
        e, a = json.loads(e_line), json.loads(a_line)
        if not isinstance(e, dict) or not isinstance(a, dict) or list(e) != list(a):
            return False
        for key, ev in e.items():
            av: Any = a[key]
            if key in columns and isinstance(ev, float) and isinstance(av, float):
                if not math.isclose(ev, av, rel_tol=0, abs_tol=TOLERANCE):
                    return False
            elif ev != av or type(ev) is not type(av):
                return False
    return True


def compared_files(run_dir: Path) -> list[Path]:
    return sorted(
        p for p in run_dir.iterdir() if p.is_file() and p.suffix in (".jsonl", ".json") and p.name not in SKIP
    )


# streamed one row per chunk, and stage by stage: the same bytes as the default (8-row chunks)
EXECUTIONS = {"default": [], "chunk1": ["chunk_rows=1"], "stage_by_stage": ["stream=false"]}


@pytest.mark.parametrize("execution", list(EXECUTIONS))
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_golden_outputs(pipeline: str, execution: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    api.run([f"pipeline={pipeline}", "model=test", *EXECUTIONS[execution]], run_dir)
    files = compared_files(run_dir)
    assert "dataset.jsonl" in {p.name for p in files}
    folder = OUTPUTS / pipeline
    noisy = NUMERIC_NOISE.get(pipeline, set())
    for path in files:
        golden, actual = folder / path.name, path.read_bytes()
        tolerated = (
            noisy
            and path.suffix == ".jsonl"
            and golden.exists()
            and not update_golden()
            and same_up_to_noise(golden.read_bytes(), actual, noisy)
        )
        if not tolerated:
            check_golden(golden, actual)
    check_no_stale_golden(folder, {p.name for p in files}, "*.json*")


def test_same_up_to_noise_tolerates_only_the_named_float_columns() -> None:
    base = b'{"a": "x", "similarity": 0.20727261900901794, "n": 1}\n'
    near = b'{"a": "x", "similarity": 0.2072726190090181, "n": 1}\n'
    cols = {"similarity"}
    assert same_up_to_noise(base, near, cols)
    assert not same_up_to_noise(base, b'{"a": "x", "similarity": 0.2073, "n": 1}\n', cols)
    assert not same_up_to_noise(base, near.replace(b'"x"', b'"y"'), cols)
    assert not same_up_to_noise(base, b'{"similarity": 0.20727261900901794, "a": "x", "n": 1}\n', cols)
    assert not same_up_to_noise(base, b'{"a": "x", "similarity": 0.20727261900901794, "n": 1.0}\n', cols)
    assert not same_up_to_noise(base, base + base, cols)
    assert not same_up_to_noise(base, near, set())
