"""The test scaffold itself: every shipped pipeline has golden files, test modules share their
support through helpers/conftest (never by importing each other), the tiny pipeline's
arguments and the mock server are defined once."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import GOLDEN, PIPELINES, ROOT, missing_goldens, shipped_pipelines

TESTS = ROOT / "tests"
MODULES = sorted(p for p in TESTS.rglob("test_*.py") if p != Path(__file__).resolve())  # not this one


def _imported(path: Path) -> set[str]:
    """Top-level names of the modules `path` imports, function-level imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_pipelines_are_the_shipped_yaml_files():
    assert sorted(p.stem for p in (ROOT / "pipelines").glob("*.yaml")) == PIPELINES
    assert len(PIPELINES) >= 5


def test_every_shipped_pipeline_has_golden_outputs_and_prompts():
    assert missing_goldens(PIPELINES) == [], (
        "a pipeline without golden files: run tests/integration/test_golden_outputs.py and "
        "test_golden_prompts.py with SELFALIGN_UPDATE_GOLDEN=1 and review what they write"
    )
    # and no golden folder outlives its pipeline (config/: each pipeline's composed config)
    folders = {p.name for p in GOLDEN.iterdir() if p.is_dir()} - {"outputs", "config"}
    assert folders == set(PIPELINES)
    assert {p.stem for p in (GOLDEN / "config").glob("*.yaml")} == set(PIPELINES)
    assert {p.name for p in (GOLDEN / "outputs").iterdir() if p.is_dir()} == set(PIPELINES)


def test_a_new_pipeline_without_goldens_is_named(tmp_path: Path):
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    for name in ("old", "new"):
        (pipelines / f"{name}.yaml").write_text("name: x\n")
    (tmp_path / "golden" / "outputs" / "old").mkdir(parents=True)
    (tmp_path / "golden" / "outputs" / "old" / "dataset.jsonl").write_text("{}\n")
    (tmp_path / "golden" / "old").mkdir()
    (tmp_path / "golden" / "old" / "gen.prompt.txt").write_text("x")
    names = shipped_pipelines(pipelines)
    assert names == ["new", "old"]
    assert missing_goldens(names, tmp_path / "golden") == ["outputs/new/dataset.jsonl", "new/*.txt"]


def test_no_test_module_imports_another():
    offenders = {
        str(p.relative_to(TESTS)): sorted(n for n in _imported(p) if n.startswith("test_")) for p in MODULES
    }
    assert {k: v for k, v in offenders.items() if v} == {}, "move what is shared to tests/helpers.py"


def test_the_tiny_pipeline_arguments_are_defined_once():
    # helpers.TINY / TINY_CLI / TINY_DIRS; a module that spells them out drifts from the others
    spelled = [
        str(p.relative_to(TESTS))
        for p in MODULES
        if "prompts.search_path=[{FIXTURES / 'prompts'}]" in p.read_text()
        or 'config_dirs=[str(FIXTURES / "conf")]' in p.read_text()
    ]
    assert spelled == []


# several OpenAI-compatible servers at once (an endpoint pool); servers of other APIs are
# other classes (MockBatchServer, MockSerper, hubstub)
OWN_SERVERS = {"unit/test_endpoints.py", "integration/test_endpoints_run.py"}


def test_the_mock_openai_server_comes_from_the_fixture():
    started = [
        str(p.relative_to(TESTS))
        for p in MODULES
        if "MockServer(" in p.read_text() and str(p.relative_to(TESTS)) not in OWN_SERVERS
    ]
    assert started == [], "use the `mock_server` fixture (conftest.py) and a mock_faults marker"
