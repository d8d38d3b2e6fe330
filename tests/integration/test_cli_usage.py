"""CLI usage: --help for every command, `list` with --config-dir / overrides / plugins / one stage,
and one code path for `selfalign run` and `selfalign.api.run`."""

import json
import os

import pytest
from helpers import FIXTURES, ROOT, TINY_CLI, TINY_DIRS, TINY_PROMPTS, cli

from selfalign import api

CONF = TINY_CLI[:2]  # --config-dir tests/fixtures/conf
TINY = [*TINY_CLI, "model=test"]
WIDE = {"COLUMNS": "200"}  # rich wraps tables at 80 columns when not on a terminal


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"]])
def test_top_level_help(args):
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "usage: selfalign COMMAND" in res.stdout and "--config-dir" in res.stdout
    assert "-m for a sweep" in res.stdout and "exit codes: 0 ok; 2 bad config" in res.stdout


@pytest.mark.parametrize("command", ["run", "validate", "preview", "list"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_command_help(command, flag):
    # after other args too: a help flag anywhere wins, before Hydra or the override parser
    res = cli(command, "pipeline=tiny", flag)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "LexerNoViableAlt" not in res.stderr
    out = flat(res.stdout)
    assert out.startswith(f"usage: selfalign {command}")
    assert "--config-dir DIR" in out and "exit codes: 0 ok" in out and "2 bad config" in out
    if command != "list":
        assert "pipeline.stages.NAME.PARAM=v" in out and "key=value" in out
    if command == "run":
        assert "-m, --multirun" in out and "sweep_summary.csv" in out


def test_help_command_names_a_command():
    res = cli("help", "preview")
    assert res.returncode == 0 and "-k N" in res.stdout


def test_unknown_command_suggests():
    res = cli("valdate", "pipeline=tiny")
    assert res.returncode == 2 and "Did you mean 'validate'?" in res.stderr


def test_unknown_option_is_named():
    res = cli("validate", *TINY, "--verbose")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "validate: unknown option '--verbose'" in flat(res.stderr)
    assert "selfalign validate --help" in flat(res.stderr)


def test_config_dir_without_folder():
    res = cli("validate", "pipeline=tiny", "--config-dir")
    assert res.returncode == 2 and "--config-dir: missing folder" in res.stderr


def test_missing_config_dir_fails_run_before_hydra(tmp_path):
    res = cli("run", "--config-dir", str(tmp_path / "nope"), "pipeline=tiny", "model=test")
    assert res.returncode == 2 and "--config-dir: folder not found" in res.stderr


def test_list_pipelines_honours_config_dir():
    res = cli("list", "pipelines", *CONF, env=WIDE)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    tiny = next(line for line in lines if " tiny " in line)
    assert "runner test pipeline" in tiny and str(FIXTURES / "conf") in tiny
    assert any(" wizardlm_aaa " in line and "shipped" in line for line in lines)
    assert " tiny " not in cli("list", "pipelines", env=WIDE).stdout


def test_list_models_honours_config_dir(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("provider: test\nname: my-name\n")
    res = cli("list", "models", "--config-dir", str(tmp_path), env=WIDE)
    assert res.returncode == 0, res.stderr
    assert any(" mine " in line and "my-name" in line for line in res.stdout.splitlines())


def test_list_prompts_honours_search_path():
    res = cli("list", "prompts", TINY_PROMPTS, env=WIDE)
    assert res.returncode == 0, res.stderr
    judge = next(line for line in res.stdout.splitlines() if "tiny/judge" in line)
    assert "answer, question" in judge and str(FIXTURES / "prompts") in judge
    assert "tiny/judge" not in cli("list", "prompts", env=WIDE).stdout


def test_list_bad_override_is_a_config_error():
    res = cli("list", "prompts", "prompt.search_path=[x]")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "prompt.search_path" in res.stderr


def test_list_one_stage():
    res = cli("list", "stages", "select_best", env=WIDE)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("select_best — ") and "generate_text" not in out
    row = next(line for line in out.splitlines() if " group_by " in line)
    assert "str" in row and "'parent_id'" in row and "rows compared together" in row
    assert "(required)" in next(line for line in out.splitlines() if " mode " in line)


def test_list_unknown_stage_suggests():
    res = cli("list", "stages", "select_bst")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    msg = flat(res.stderr)
    assert "list stages: unknown stage kind 'select_bst'. Did you mean 'select_best'?" in msg
    assert "Available:" in msg


def test_list_takes_one_name():
    res = cli("list", "pipelines", "tiny")
    assert res.returncode == 2 and "list pipelines: unexpected 'tiny'" in res.stderr


def test_list_stages_with_plugins():
    path = os.pathsep.join(filter(None, [str(FIXTURES / "plugins"), os.environ.get("PYTHONPATH")]))
    env = {**WIDE, "PYTHONPATH": path}
    res = cli("list", "stages", "plugins=[my_stages]", env=env)
    assert res.returncode == 0, res.stderr
    assert "shout_text — Upper-case a column" in res.stdout and "(plugin my_stages)" in res.stdout
    assert "generate_text" in res.stdout  # and the built-in ones
    one = cli("list", "stages", "shout_text", "plugins=[my_stages]", env=env)
    assert one.returncode == 0 and "column to upper-case" in one.stdout
    assert "shout_text" not in cli("list", "stages", env=WIDE).stdout


def test_list_missing_plugin_is_a_config_error():
    res = cli("list", "stages", "plugins=[no_such_module]")
    assert res.returncode == 2 and "plugins[0]: cannot import 'no_such_module'" in res.stderr


def test_cli_run_and_api_run_write_the_same_run_dir(tmp_path):
    """Both go through api.run_config: same files, same manifest keys, same data."""
    res = cli("run", *TINY, f"hydra.run.dir={tmp_path / 'cli'}", cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    df, manifest = api.run(
        ["pipeline=tiny", "model=test", TINY_PROMPTS], tmp_path / "api", config_dirs=TINY_DIRS
    )
    from_cli = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert set(from_cli) == set(manifest) and from_cli["status"] == manifest["status"] == "ok"
    assert from_cli["rows"] == manifest["rows"] == len(df)
    assert from_cli["score_means"] == manifest["score_means"]
    for name in ("dataset.jsonl", "config.yaml", "sft.jsonl"):
        assert (tmp_path / "cli" / name).read_text() == (tmp_path / "api" / name).read_text()


def test_api_run_failure_writes_failed_manifest(tmp_path):
    """Like a CLI job, the API leaves a manifest with status "failed" when the run fails."""
    data = tmp_path / "n.jsonl"
    data.write_text('{"question": "What is rain?"}\n{"question": ""}\n')
    from selfalign.errors import SelfAlignError

    with pytest.raises(SelfAlignError, match="is empty in 1 row"):
        api.run(
            [
                "pipeline=tiny",
                "model=test",
                TINY_PROMPTS,
                f"pipeline.stages.load.path={data}",
                "pipeline.stages.load.on_missing=fail",
            ],
            tmp_path / "run",
            config_dirs=TINY_DIRS,
        )
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "is empty in 1 row" in manifest["error"]


def test_sweep_columns_constant_is_gone():
    import selfalign.sweep as sweep

    assert not hasattr(sweep, "COLUMNS")  # it was never read: summarize() builds the columns


def test_run_takes_several_config_dirs_like_validate(tmp_path):
    """`run` passes --config-dir to Hydra as the same search path validate and the API use."""
    (tmp_path / "pipeline").mkdir()
    text = (FIXTURES / "conf" / "pipeline" / "tiny.yaml").read_text()
    (tmp_path / "pipeline" / "tiny2.yaml").write_text(text.replace("name: tiny", "name: tiny2"))
    args = [*CONF, "-cd", str(tmp_path), "pipeline=tiny2", "model=test"]
    res = cli("run", *args, "--cfg", "job")  # a Hydra flag after the overrides
    assert res.returncode == 0, res.stderr[-2000:]
    assert "name: tiny2" in res.stdout
    assert cli("validate", *args, TINY_PROMPTS).returncode == 0
