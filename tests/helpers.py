"""Helpers shared by the test modules (`from helpers import ...`); fixtures live in conftest.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# The tiny fixture pipeline (tests/fixtures/conf/pipeline/tiny.yaml: 5 rows, answer n=2 + judge).
# api.run / validate / estimate: TINY with config_dirs=TINY_DIRS; the command line: TINY_CLI.
TINY_DIRS = [str(FIXTURES / "conf")]
TINY_PROMPTS = f"prompts.search_path=[{FIXTURES / 'prompts'}]"
TINY = ["pipeline=tiny", TINY_PROMPTS]
TINY_CLI = ["--config-dir", TINY_DIRS[0], *TINY]
# ... on the mock server (add f"model.api_base={server.url}"): it answers no score, so no judge
TINY_ON_MOCK = ["pipeline.order=[load,clean,answer,export]", "model=openai_compatible", "model.name=mock"]


def tiny_questions(path: Path, n: int, text: str = "what is item {i}?") -> Path:
    """The tiny pipeline's input (point TINY_DATA at it): n JSONL rows {"question": text}."""
    import json

    path.write_text("".join(json.dumps({"question": text.format(i=i)}) + "\n" for i in range(n)))
    return path


def make_stage(kind: str, ctx: Any, name: str = "s", **params: Any) -> Any:
    """Build a registered stage from keyword params, as the runner would."""
    from selfalign.config import parse_params
    from selfalign.stages import STAGES

    cls = STAGES.get(kind)
    return cls(name, parse_params(cls.Params, params, f"pipeline.stages.{name}"), ctx)


def make_ctx(tmp_path: Path, rules: list | None = None, **model: Any) -> Any:
    """A RunContext on the test model (named after tmp_path, JSON schema on) and the shipped
    prompts; `rules` are extra reply rules tried before the shipped ones (prefer the
    `test_model` fixture's queue: it needs no text that happens to match)."""
    from selfalign.context import Rejected, RunContext
    from selfalign.llm.cache import ResponseCache
    from selfalign.llm.config import ModelConfig
    from selfalign.llm.session import LLMSession
    from selfalign.paths import resource_dir
    from selfalign.prompts import PromptLibrary

    cfg = ModelConfig(
        provider="test", name=tmp_path.name, rules=rules or [], supports_json_schema=True, **model
    )  # type: ignore[arg-type]
    session = LLMSession({"default": cfg}, tmp_path, ResponseCache(tmp_path / "c.sqlite"))
    ctx = RunContext(
        run_dir=tmp_path,
        prompts=PromptLibrary([resource_dir("prompts")]),
        llm=session,
        show_progress=False,
    )
    ctx.rejected = Rejected(tmp_path / "rejected.jsonl")
    return ctx


def run_stage(stage: Any, df: pd.DataFrame) -> pd.DataFrame:
    """Run one stage on a frame in the process's event loop."""
    from selfalign import aio

    return aio.run(stage.run(df))


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m selfalign ARGS` in a subprocess (Hydra's run mode configures logging globally,
    so runs through `selfalign run` are kept out of the test process)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "selfalign", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def shipped_pipelines(folder: Path = ROOT / "pipelines") -> list[str]:
    """The pipelines a user can name (`pipeline=NAME`): one per pipelines/*.yaml."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


PIPELINES = shipped_pipelines()
GOLDEN = ROOT / "tests" / "golden"


def missing_goldens(pipelines: list[str], golden: Path = GOLDEN) -> list[str]:
    """What each pipeline lacks of its golden files: outputs/<p>/dataset.jsonl (written by
    test_golden_outputs) and at least one rendered prompt <p>/*.txt (test_golden_prompts)."""
    missing = []
    for name in pipelines:
        if not (golden / "outputs" / name / "dataset.jsonl").is_file():
            missing.append(f"outputs/{name}/dataset.jsonl")
        if not any((golden / name).glob("*.txt")):
            missing.append(f"{name}/*.txt")
    return missing


UPDATE_ENV = "SELFALIGN_UPDATE_GOLDEN"


def update_golden() -> bool:
    """True when golden files are to be rewritten (SELFALIGN_UPDATE_GOLDEN=1)."""
    return os.environ.get(UPDATE_ENV) == "1"


def check_golden(path: Path, actual: bytes) -> None:
    """Compare `actual` with the golden file byte for byte, or rewrite it under the update flag."""
    if update_golden():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
    rel = path.relative_to(ROOT)
    assert path.exists(), f"{rel} missing: run with {UPDATE_ENV}=1 to create it, and review it"
    expected = path.read_bytes()
    if expected != actual:
        import difflib

        diff = difflib.unified_diff(
            expected.decode("utf-8", "replace").splitlines(),
            actual.decode("utf-8", "replace").splitlines(),
            "golden",
            "now",
            lineterm="",
            n=1,
        )
        shown = "\n".join(list(diff)[:40])
        raise AssertionError(
            f"{rel} differs from what the code produces now. If the change is intended, rerun "
            f"with {UPDATE_ENV}=1 and review the diff like code.\n{shown}"
        )


def check_no_stale_golden(folder: Path, produced: set[str], pattern: str) -> None:
    """Golden files in `folder` matching `pattern` that nothing produces any more: removed under
    the update flag, else a failure (a stage or a view went away)."""
    stale = sorted(p.name for p in folder.glob(pattern) if p.name not in produced)
    if update_golden():
        for name in stale:
            (folder / name).unlink()
        return
    assert not stale, f"{folder.relative_to(ROOT)}: golden files nothing produces now: {stale}"


# Golden outputs: what is compared, and the columns a float32 model computes on the CPU, which
# may differ in the last bits between CPUs (used by test_golden_outputs, the Ray and streaming tests)
# prompts.json: the run's copy of its prompt files (test_golden_prompts checks the prompts)
GOLDEN_SKIP = {"manifest.json", "rejected.jsonl", "prompts.json"}
OUTPUTS = GOLDEN / "outputs"
NUMERIC_NOISE = {"aligners": {"similarity"}}
TOLERANCE = 1e-6


def same_up_to_noise(expected: bytes, actual: bytes, columns: set[str]) -> bool:
    """Line by line: the same JSON objects, keys in the same order, every value equal except
    floats in `columns`, which may differ by TOLERANCE."""
    import json
    import math

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
    """The files of a run compared with the golden outputs."""
    return sorted(
        p
        for p in run_dir.iterdir()
        if p.is_file() and p.suffix in (".jsonl", ".json") and p.name not in GOLDEN_SKIP
    )


def mock_config(server: Any, **kw: Any) -> Any:
    """A ModelConfig for the mock server (tests/mockserver.py) through the litellm provider;
    `kw` overrides any field (concurrency, retries, transport settings …)."""
    from selfalign.llm.config import ModelConfig

    base: dict[str, Any] = {"provider": "litellm", "name": "mock-model", "api_base": server.url}
    return ModelConfig(**{**base, **kw})


def mock_client(server: Any, transport: str | None = None, sleep: Any = asyncio.sleep, **kw: Any) -> Any:
    """An EndpointClient of the mock server on `mock_config(server, **kw)`; `sleep` is its
    backoff's sleep (no_sleep: none)."""
    from selfalign.llm.client import EndpointClient

    return EndpointClient(mock_config(server, **kw), transport=transport, sleep=sleep)


# METHODS §5.2: the 46 task names of the original's classifier prompt
_REALIGN_NAMES = """question_generation story_generation poem_generation email_generation data_generation
advice_giving recommendations how_to_generation planning instructional_rewriting language_polishing
paraphrasing text_correction code_correction code_simplification information_extraction
keywords_extraction table_extraction title_generation text_summarization note_summarization
explain_code explain_answer text_to_text_translation text_to_code_translation
code_to_code_translation code_to_text_translation open_qa closed_qa fill_in_the_blank
fact_verification math_puzzles language_learning_questions natural_language_learning_tutor
exam_problem_solving_tutor ml_ai_language_model_tutor general_classification ordering
sentiment_analysis code_language_classification language_classification topic_classification
value_judgement rejecting roleplay default"""
REALIGN_TASKS = _REALIGN_NAMES.split()


async def no_sleep(delay: float) -> None:
    """An EndpointClient's `sleep` (llm/client.py) for tests: backoffs take no time."""
    await asyncio.sleep(0)
