"""Runs you can trust: exit codes, preflight, circuit breaker, failure limits, re-runs that keep
the record and retry what failed, typos, bad values, secrets, logs and checkpoint size.

Each test is one scenario of docs/failures.md. Mock endpoints run on 127.0.0.1 only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from helpers import ROOT, TINY, TINY_DIRS, cli

from selfalign import api
from selfalign.errors import (
    EXIT_RUN_FAILED,
    LLMError,
    PreflightFailed,
    RunFailed,
    SelfAlignError,
    ValidationFailed,
)

sys.path.insert(0, str(ROOT / "tests"))
from mockserver import MockServer  # noqa: E402

DEAD = ["model=openai_compatible", "model.name=x", "model.api_base=http://127.0.0.1:1/v1"]
FAST = ["model.max_retries=0", "model.backoff_base_s=0.01", "model.backoff_max_s=0.01"]


def on_mock(server: MockServer) -> list[str]:
    return ["model=openai_compatible", "model.name=mock", f"model.api_base={server.url}", *FAST]


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def rejected(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "rejected.jsonl").read_text().splitlines()]


# ---- 1. the exit status tells the truth ---------------------------------------------------
def test_dead_endpoint_fails_at_preflight_with_exit_3(tmp_path):
    res = cli("run", "pipeline=realign", *DEAD, f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == EXIT_RUN_FAILED
    assert "http://127.0.0.1:1/v1" in res.stderr and "cannot reach" in res.stderr
    m = manifest(tmp_path / "run")
    assert m["status"] == "failed" and m["exit_code"] == EXIT_RUN_FAILED
    assert all(s["status"] == "not run" for s in m["stages"])


def test_validate_runs_the_preflight_too():
    res = cli("validate", "pipeline=realign", *DEAD)
    assert res.returncode == EXIT_RUN_FAILED and "preflight" in res.stderr


def test_circuit_breaker_stops_a_run_whose_endpoint_is_gone(tmp_path):
    # preflight off: the endpoint "dies" after it; the breaker must stop the run, not every row
    with pytest.raises(LLMError, match="cannot reach") as exc:
        api.run(["pipeline=realign", *DEAD, *FAST, "preflight=false"], tmp_path / "run")
    assert exc.value.exit_code == EXIT_RUN_FAILED
    m = manifest(tmp_path / "run")
    assert m["status"] == "failed" and "cannot reach" in m["error"]
    assert [s["status"] for s in m["stages"]].count("not run") >= 5  # it stopped at once


def test_too_many_failed_calls_stop_the_run(tmp_path, test_model):
    test_model.queue(*["no score here"] * 100)  # every reply, so every judge reply, is unparsable
    with pytest.raises(RunFailed, match=r"judge: .*of .* model calls failed .*max_failure_rate"):
        api.run(
            [
                *TINY,
                "model=test",
                "pipeline.stages.judge.retries=0",
                "pipeline.order=[load,clean,answer,judge,export]",
            ],
            tmp_path / "run",
            config_dirs=TINY_DIRS,
        )
    m = manifest(tmp_path / "run")
    stages = {s["name"]: s for s in m["stages"]}
    assert m["status"] == "failed" and stages["judge"]["failed_calls"] == stages["judge"]["calls"]
    assert stages["export"]["status"] == "not run"
    # a looser limit accepts the same failures
    _, ok = api.run(
        [
            *TINY,
            "model=test",
            "pipeline.stages.judge.retries=0",
            "pipeline.stages.judge.max_failure_rate=1.0",
            "allow_empty=true",
            "pipeline.order=[load,clean,answer,judge,export]",
        ],
        tmp_path / "run2",
        config_dirs=TINY_DIRS,
    )
    assert ok["status"] == "ok"


def test_a_run_with_no_rows_is_not_a_success(tmp_path):
    drop_all = "pipeline.stages.clean.rules=[{column: question, op: min_words, value: 99}]"
    with pytest.raises(RunFailed, match="0 rows"):
        api.run([*TINY, "model=test", drop_all], tmp_path / "run", config_dirs=TINY_DIRS)
    assert manifest(tmp_path / "run")["status"] == "failed"
    assert (tmp_path / "run" / "dataset.jsonl").exists()  # what it made is still written
    _, m = api.run(
        [*TINY, "model=test", drop_all, "allow_empty=true"], tmp_path / "ok", config_dirs=TINY_DIRS
    )
    assert m["status"] == "ok" and m["rows"] == 0


@pytest.mark.parametrize("stream", ["true", "false"])
def test_a_stage_that_drops_every_row_passes_an_empty_table_on(tmp_path, stream):
    """A filter that drops every row mid-pipeline: later stages (an LLM judge, dedup, export)
    read their columns even from an empty table. They used to get one without columns and
    fail with a KeyError traceback; now the run ends with its usual "0 rows" exit (3)."""
    drop_all = "pipeline.stages.check_instruction.rules=[{column: instruction, op: min_words, value: 999}]"
    args = ["pipeline=backtranslation", "model=test", f"stream={stream}", drop_all]
    with pytest.raises(RunFailed, match="0 rows") as err:
        api.run(args, tmp_path / "run")
    assert err.value.exit_code == 3
    _, m = api.run([*args, "allow_empty=true"], tmp_path / "ok")
    assert m["status"] == "ok" and m["rows"] == 0
    dedup = next(st for st in m["stages"] if st["name"] == "dedup_instructions")
    assert dedup["status"] == "ran" and dedup["rows_in"] == 0


# ---- 2. re-runs keep the record and retry what failed ---------------------------------------
def test_rerun_retries_only_the_failed_calls_and_keeps_the_history(tmp_path, mock_server):
    mock_server.configure(fail_when={"plants": "500"})  # one of the five questions always fails
    args = [*TINY, *on_mock(mock_server), "pipeline.order=[load,clean,answer]"]
    run_dir = tmp_path / "run"
    df, m1 = api.run(args, run_dir, config_dirs=TINY_DIRS)
    answer = {s["name"]: s for s in m1["stages"]}["answer"]
    assert answer["failed_calls"] == 2 and answer["drops"] == {"llm_error": 2}
    assert len(df) == 8 and m1["attempt"] == 1  # 5 questions × 2 samples, 2 failed
    first = rejected(run_dir)
    assert len(first) == 2 and all(r["attempt"] == 1 for r in first)
    assert {r["sample"] for r in first} == {0, 1} and {r["row_id"] for r in first} == {"1"}

    mock_server.configure(fail_when={})  # the endpoint recovered
    mock_server.reset()
    df2, m2 = api.run(args, run_dir, config_dirs=TINY_DIRS)
    assert mock_server.requests == 2  # only the two failed calls; the cache answered the rest
    assert len(df2) == 10 and m2["attempt"] == 2 and m2["llm_attempt"]["sent"] == 2
    assert [r["attempt"] for r in rejected(run_dir)] == [1, 1]  # history kept, nothing new

    mock_server.reset()
    _, m3 = api.run(args, run_dir, config_dirs=TINY_DIRS)  # nothing left to retry: all reused
    assert mock_server.requests == 0 and all(s["reused"] for s in m3["stages"])
    kept = {s["name"]: s for s in m3["stages"]}
    assert kept["clean"]["drops"] == {"too_short": 1}  # reused stages keep their stats
    assert m3["llm_totals"]["requests"] >= 8


def test_retry_failed_false_keeps_the_partial_stage(tmp_path, mock_server):
    mock_server.configure(fail_when={"plants": "500"})
    args = [*TINY, *on_mock(mock_server), "pipeline.order=[load,clean,answer]"]
    api.run(args, tmp_path / "run", config_dirs=TINY_DIRS)
    mock_server.configure(fail_when={})
    mock_server.reset()
    df, _ = api.run([*args, "retry_failed=false"], tmp_path / "run", config_dirs=TINY_DIRS)
    assert mock_server.requests == 0 and len(df) == 8


def test_rejected_attempts_agree_with_the_reason(tmp_path, test_model):
    test_model.queue(*["still no score"] * 30)
    api.run(
        [
            *TINY,
            "model=test",
            "pipeline.stages.judge.retries=2",
            "pipeline.stages.judge.max_failure_rate=1.0",
            "allow_empty=true",
            "pipeline.order=[load,clean,answer,judge]",
        ],
        tmp_path / "run",
        config_dirs=TINY_DIRS,
    )
    recs = rejected(tmp_path / "run")
    assert recs and all(r["attempts"] == 3 and r["samples_tried"] == 3 for r in recs)
    assert all(r["reason"] == "parse: no_score" for r in recs)


# ---- 3. typos are never silently ignored ----------------------------------------------------
@pytest.mark.parametrize(
    ("override", "text"),
    [
        ("pipeline.stages.laod.path=my.jsonl", "no stage 'laod' in this pipeline. Did you mean 'load'"),
        ("num_instruction=3", "Did you mean 'num_instructions'"),
        ("+num_instruction=3", "Did you mean 'num_instructions'"),
        ("aaa.enabledd=false", "Did you mean 'enabled'"),
        ("pipeline.stages.gen_instructions.tempreature=1", "Did you mean 'temperature'"),
    ],
)
def test_typos_are_errors_with_did_you_mean(override, text):
    with pytest.raises(SelfAlignError, match=text.replace("(", r"\(").replace(".", r"\.")):
        api.validate(["pipeline=wizardlm_aaa", "model=test", override])


def test_an_error_names_the_root_key_the_user_typed():
    with pytest.raises(ValidationFailed, match=r"`n` must be >= 1 \(the value comes from `num_instructions`"):
        api.validate(["pipeline=wizardlm_aaa", "model=test", "num_instructions=0"])


# ---- 4. values ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "text"),
    [
        ("temperature=-1", "`temperature` must be >= 0"),
        ("pipeline.stages.gen_instructions.top_p=2", "`top_p` must be in (0, 1]"),
        ("model.timeout_s=0", "timeout_s must be > 0"),
        ("model.backoff_base_s=-1", "backoff_base_s must be > 0"),
        ("model.timeoutt_s=5", "Did you mean 'timeout_s'"),
        ("seed=abc", "config.seed: expected int"),
        ("n_rows=-1", "load.limit"),
    ],
)
def test_bad_values_are_clear_errors(override, text):
    with pytest.raises(SelfAlignError) as exc:
        api.validate(["pipeline=wizardlm_aaa", "model=test", override])
    assert text in str(exc.value)


def test_best_of_one_works(run_pipeline):
    df, m, _ = run_pipeline("pipeline=wizardlm_aaa", "num_instructions=1", "num_responses=1", "n_rows=1")
    assert len(df) == 1 and m["status"] == "ok"


def test_a_missing_column_is_reported_once_with_the_rename_hint(tmp_path):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"q": "hi", "a": "yo"}\n')
    with pytest.raises(ValidationFailed) as exc:
        api.validate(["pipeline=realign", "model=test", f"input_path={data}"])
    problems = exc.value.problems
    assert len([p for p in problems if "'instruction'" in p]) == 1
    assert "needed by classify, retrieve, reformat" in str(exc.value)
    assert "pipeline.stages.load.rename={YOUR_COLUMN: instruction}" in str(exc.value)


# ---- 5. secrets -----------------------------------------------------------------------------
def test_a_key_in_api_key_env_is_refused_and_never_written(tmp_path):
    secret = "sk-live-0123456789abcdefghijklmnopqrstuv"
    res = cli(
        "run",
        "pipeline=realign",
        "model=openai",
        f"model.api_key_env={secret}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert res.returncode == 2 and "looks like a key" in res.stderr
    assert secret not in res.stderr + res.stdout
    assert not (tmp_path / "run").exists()  # no config.yaml, .hydra/ or manifest holds it


def test_an_unset_key_variable_fails_validate(monkeypatch):
    monkeypatch.delenv("SELFALIGN_TEST_UNSET_KEY", raising=False)
    with pytest.raises(PreflightFailed, match=r"\$SELFALIGN_TEST_UNSET_KEY is not set"):
        built = api.validate(
            ["pipeline=realign", "model=openai", "model.api_key_env=SELFALIGN_TEST_UNSET_KEY"]
        )
        from selfalign.runner import check_endpoints

        check_endpoints(built)


# ---- 6. logs and disk -----------------------------------------------------------------------
def test_run_log_holds_the_run_and_progress_lines_without_a_tty(tmp_path):
    res = cli(
        "run",
        *TINY,
        "model=test",
        "progress_every_s=0",
        "--config-dir",
        TINY_DIRS[0],
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert res.returncode == 0, res.stderr
    log = (tmp_path / "run" / "run.log").read_text()
    assert "load (load): reading its input" in log and "answer: 10 rows out" in log
    assert "answer: 10/10 calls" in log  # a progress line, since stderr is not a terminal
    assert "done: 5 rows" in log


def test_checkpoints_store_a_long_text_once(tmp_path, monkeypatch):
    text = "word " * 200_000  # 1 MB, through six stages
    data = tmp_path / "big.jsonl"
    data.write_text(json.dumps({"question": "Why? " + text}) + "\n")
    monkeypatch.setenv("TINY_DATA", str(data))
    df, _ = api.run([*TINY, "model=test"], tmp_path / "run", config_dirs=TINY_DIRS)
    stage_bytes = sum(p.stat().st_size for p in (tmp_path / "run" / "stages").rglob("*") if p.is_file())
    assert stage_bytes < 2.5 * len(text)  # not six copies of it
    again, m = api.run([*TINY, "model=test"], tmp_path / "run", config_dirs=TINY_DIRS)
    assert all(s["reused"] for s in m["stages"]) and again.equals(df)


@pytest.mark.parametrize(
    ("order", "calls"),
    [("[load,clean,answer]", 10), ("[load,clean,answer,judge]", 20)],  # one stage; a segment of two
    ids=["mid_stage", "mid_segment"],
)
def test_kill_9_then_resume_repeats_no_completed_call(tmp_path, mock_server, order, calls):
    # (the judge keeps the mock's reply as text: the score parser would reject it)
    import os
    import signal
    import sqlite3
    import subprocess
    import time

    mock_server.configure(latency_s=0.3)
    cache = tmp_path / "cache.sqlite"
    env = {**os.environ, "SELFALIGN_CACHE": str(cache)}
    args = [
        sys.executable,
        "-m",
        "selfalign",
        "run",
        *TINY,
        *on_mock(mock_server),
        "model.concurrency=2",
        f"pipeline.order={order}",
        "~pipeline.stages.judge.parser",
        "chunk_rows=1",
        "--config-dir",
        TINY_DIRS[0],
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):  # bounded wait (≤ 60 s) until some, not all, calls were answered
        if mock_server.requests >= 5 or proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with sqlite3.connect(cache) as db:
        done = db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert 0 < done < calls  # killed in the middle
    mock_server.configure(latency_s=0.0)
    mock_server.reset()
    res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert mock_server.requests == calls - done  # nothing that had completed was sent again
    m = manifest(tmp_path / "run")
    assert m["rows"] == 10 and m["attempt"] == 2


def test_a_file_a_later_stage_reads_is_checked_in_full_before_any_call(tmp_path):
    seed = tmp_path / "seed.jsonl"
    good = '{"instruction": "a", "response": "b"}\n'
    seed.write_text(good * 6 + "{bad json\n")  # line 7: past the rows a header check reads
    with pytest.raises(ValidationFailed, match=r"seed\.jsonl:7: line 7 is not valid JSON"):
        api.validate(["pipeline=backtranslation", "model=test", "mix_seed=true", f"seed_data.path={seed}"])
