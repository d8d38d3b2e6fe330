"""Startup: a command imports only what it needs. Each command runs in a fresh interpreter,
which then says which of the heavy packages it loaded (membership, not timing)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, ROOT

sys.path.insert(0, str(ROOT / "tests"))
from mockserver import MockServer  # noqa: E402

HEAVY = [
    "litellm",
    "torch",
    "sentence_transformers",
    "transformers",
    "pandas",
    "pyarrow",
    "hydra",
]
DRIVER = """
import contextlib, io, json, sys
from selfalign.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "loaded": [m for m in HEAVY if m in sys.modules]}))
"""


def loaded(*args: str, watch: list[str] = HEAVY) -> list[str]:
    """The `watch` modules (HEAVY packages) in sys.modules after `selfalign ARGS`, which must
    exit 0."""
    code = f"HEAVY = {watch!r}\n{DRIVER}"
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0, proc.stderr[-2000:]
    return out["loaded"]


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["list"], ["list", "models"]])
def test_help_and_listing_files_import_nothing_heavy(args: list[str]) -> None:
    assert loaded(*args) == []


def test_list_stages_needs_no_model_library() -> None:
    # every stage's params are documented, so every stage module is imported (and pandas with
    # them), but no model library: those load when a stage runs; and no config is composed
    got = set(loaded("list", "stages"))
    assert "pandas" in got and not {"litellm", "torch", "sentence_transformers", "hydra"} & got


def test_the_shipped_config_names_no_plugin() -> None:
    # why `list stages` without overrides or --config-dir composes no config: nothing to import
    from selfalign.hydra_setup import compose_config

    assert list(compose_config(["~pipeline"]).plugins) == []


def test_a_run_on_an_openai_compatible_endpoint_imports_no_litellm_nor_torch(tmp_path: Path) -> None:
    mock = MockServer().start()
    try:
        got = loaded(
            "run",
            "--config-dir",
            str(FIXTURES / "conf"),
            "pipeline=tiny",
            "pipeline.order=[load,clean,answer,export]",  # the mock answers no score: no judge
            f"prompts.search_path=[{FIXTURES / 'prompts'}]",
            "model=openai_compatible",
            f"model.api_base={mock.url}",
            "model.name=mock",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"cache.path={tmp_path / 'cache.sqlite'}",
        )
        assert mock.requests > 0  # it did run its model calls
    finally:
        mock.stop()
    assert "pandas" in got  # the rows are a DataFrame: the check is not vacuous
    assert not {"litellm", "torch", "sentence_transformers", "transformers"} & set(got)


def test_the_stage_table_names_what_each_module_registers() -> None:
    # every module under selfalign/stages, listed in the table or not: a new stage whose kind
    # is missing from kinds.py would be unknown to a run, and fails here
    import selfalign.stages as package
    from selfalign.stages import STAGES
    from selfalign.stages.kinds import KINDS

    for info in pkgutil.walk_packages(package.__path__, "selfalign.stages."):
        importlib.import_module(info.name)
    builtin = {k: cls.__module__ for k, cls in STAGES.items() if cls.__module__.startswith("selfalign.")}
    assert builtin == KINDS


def test_the_report_reads_only_the_run_dir(run_pipeline, tmp_path: Path) -> None:
    # `selfalign report` of a run dir or a sweep dir composes no config and needs no settings:
    # the prompts come from the run dir's own copy (prompts.json)
    _, _, run_dir = run_pipeline(
        "pipeline=tiny", f"prompts.search_path=[{FIXTURES / 'prompts'}]", config_dirs=[str(FIXTURES / "conf")]
    )
    (tmp_path / "multirun.yaml").write_text("hydra: {}\n")  # tmp_path holds run/: a sweep dir
    watch = ["hydra", "selfalign.settings", "selfalign.hydra_setup", "selfalign.sweep"]
    for target in (run_dir, tmp_path):
        (target / "report.html").unlink(missing_ok=True)  # the run wrote one already
        assert loaded("report", str(target), watch=watch) == []
        assert (target / "report.html").is_file()
