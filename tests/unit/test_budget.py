"""The budget cap: reservations before dispatch, settlement after, the stop (exit 4, manifest
"stopped", nothing counted as failed) and the resume that repeats no completed call.

Counts, not times: every assertion is on requests that reached the test model (`test_model`
fixture) or on the $ / tokens recorded, which the priced test model makes exact."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import TINY, TINY_DIRS

from selfalign import api
from selfalign.errors import EXIT_BUDGET, ConfigError, ValidationFailed
from selfalign.llm.base import ChatRequest
from selfalign.llm.budget import (
    Budget,
    BudgetExceeded,
    BudgetRecordError,
    BudgetSettings,
    completion_bound,
    prices,
    prompt_token_bound,
)
from selfalign.llm.config import ModelConfig, Price

# $1 per 1000 tokens, so $ and tokens are the same figure / 1000
PRICED = [
    "model=test",
    *TINY,
    "model.price={input_per_mtok: 1000, output_per_mtok: 1000}",
]
TINY_CALLS = 20  # 5 rows: 10 answers (n=2) + 10 judgements


def test_reserve_refuses_past_the_cap_and_stays_stopped() -> None:
    b = Budget(BudgetSettings(max_usd=1.0))
    first = b.reserve(0.6, 10)
    with pytest.raises(BudgetExceeded, match=r"budget reached at \$0\.0000 of \$1\.0000"):
        b.reserve(0.5, 10)  # 0.6 reserved + 0.5 > 1.0, though nothing is spent yet
    b.settle(first, 0.1, 5)
    assert (b.spent_usd, b.spent_tokens, b.reserved_usd) == (0.1, 5, 0.0)
    with pytest.raises(BudgetExceeded):  # sticky: once refused, dispatch has stopped
        b.reserve(0.01, 1)


def test_token_cap_and_message() -> None:
    b = Budget(BudgetSettings(max_tokens=100))
    b.settle(b.reserve(0.0, 60), 0.0, 60)
    with pytest.raises(BudgetExceeded, match="at 60 of 100 tokens .*budget.max_tokens=200"):
        b.reserve(0.0, 41)


def test_spent_is_kept_across_attempts(tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    b = Budget(BudgetSettings(max_usd=1.0), path)
    b.settle(b.reserve(0.5, 10), 0.25, 10)
    b.save()
    again = Budget(BudgetSettings(max_usd=2.0), path)
    assert (again.spent_usd, again.spent_tokens) == (0.25, 10)
    assert again.to_json()["spent_usd_this_attempt"] == 0.0


def test_a_killed_attempt_leaves_every_call_it_sent_in_the_record(tmp_path: Path) -> None:
    """No save() (as after kill -9): the ledger alone counts the settled call at its cost and
    the one still in flight at its worst case, so a crash can only over-count."""
    path = tmp_path / "budget.json"
    b = Budget(BudgetSettings(max_usd=1.0), path)
    b.settle(b.reserve(0.5, 100), 0.25, 10)
    b.reserve(0.3, 50)  # sent, never settled: the process dies here
    again = Budget(BudgetSettings(max_usd=1.0), path)
    assert (again.spent_usd, again.spent_tokens) == (pytest.approx(0.55), 60)
    again.save()  # compacted to one line, the same total
    assert len((tmp_path / "budget.ledger").read_text().splitlines()) == 1
    assert Budget(BudgetSettings(max_usd=1.0), path).spent_usd == pytest.approx(0.55)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("budget.json", "{not json"),
        ("budget.json", '{"spent_usd": NaN, "spent_tokens": 0}'),
        ("budget.ledger", '["s", 0.1\n["r", 0.1, 5]\n'),
        ("budget.ledger", '["r", -1, 5]\n'),
    ],
)
def test_an_unreadable_record_is_an_error_not_a_fresh_budget(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(BudgetRecordError, match=rf"{re.escape(str(tmp_path / name))}: unreadable") as err:
        Budget(BudgetSettings(max_usd=1.0), tmp_path / "budget.json")
    assert err.value.exit_code == 2 and "to start this run dir's budget from 0 knowingly" in str(err.value)


def test_a_stop_is_kept_until_a_cap_is_raised(tmp_path: Path) -> None:
    """docs/cost.md: a re-run with the same (or a lower) budget stops at its first call; a
    higher one continues."""
    path = tmp_path / "budget.json"
    b = Budget(BudgetSettings(max_usd=1.0), path)
    b.settle(b.reserve(0.5, 10), 0.2, 10)
    with pytest.raises(BudgetExceeded):
        b.reserve(0.9, 10)  # 0.2 + 0.9 > 1.0, though 0.1 would still fit
    for cap in (1.0, 0.8):
        with pytest.raises(BudgetExceeded):
            Budget(BudgetSettings(max_usd=cap), path).reserve(0.1, 1)
    Budget(BudgetSettings(max_usd=1.5), path).reserve(0.1, 1)  # raised: dispatch again


def test_bounds_cover_the_reported_usage() -> None:
    req = ChatRequest.make([{"role": "user", "content": "héllo wörld, three words"}], {"max_tokens": 64})
    assert prompt_token_bound(req) >= len("héllo wörld, three words".encode())
    assert completion_bound(req, ModelConfig(provider="test")) == 64
    no_max = ChatRequest.make([("user", "x")])
    assert completion_bound(no_max, ModelConfig(provider="test", extra_params={"max_tokens": 9})) == 9


def test_settings_reject_a_non_positive_cap() -> None:
    with pytest.raises(ValueError, match="max_usd must be > 0"):
        BudgetSettings(max_usd=0)


def test_prices_from_config_and_free_local_endpoints() -> None:
    models = {
        "default": ModelConfig(provider="test", price=Price(1.0, 2.0)),
        "srv": ModelConfig(provider="litellm", name="m", api_base="http://127.0.0.1:1/v1"),
    }
    got = prices(models, need=True)
    assert got["default"].cost(1e6, 1e6) == 3.0
    assert got["srv"].cost(1e6, 1e6) == 0.0  # an api_base endpoint is free unless priced


def test_hosted_model_without_a_price_is_a_config_error() -> None:
    models = {"default": ModelConfig(provider="litellm", name="no-such-hosted-model-xyz")}
    with pytest.raises(
        ConfigError,
        match=r"model: litellm's price map has no price .*"
        r"model\.price=\{input_per_mtok",
    ):
        prices(models, need=True)
    assert prices(models, need=False) == {}  # without a $ budget nothing is looked up


def _run(run_dir: Path, *extra: str, cache: Path | None = None) -> dict:
    args = [*PRICED, *extra] + ([f"cache.path={cache}"] if cache else [])
    return api.run(args, run_dir, config_dirs=TINY_DIRS)[1]


@pytest.mark.parametrize("concurrency", [1, 16])
def test_stop_then_resume_repeats_no_call(tmp_path: Path, test_model, concurrency: int) -> None:
    full_df, _ = api.run(
        [*PRICED, f"cache.path={tmp_path / 'other.sqlite'}"], tmp_path / "full", config_dirs=TINY_DIRS
    )
    assert len(test_model.requests) == TINY_CALLS
    test_model.clear()

    run_dir, conc = tmp_path / "run", f"model.concurrency={concurrency}"
    with pytest.raises(BudgetExceeded) as stop:
        _run(run_dir, conc, "budget.max_usd=0.5")
    first = len(test_model.requests)
    assert 0 < first < TINY_CALLS
    assert stop.value.exit_code == EXIT_BUDGET
    assert "re-run with a higher budget to continue" in str(stop.value)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["exit_code"] == EXIT_BUDGET
    assert manifest["budget"]["stopped"] and manifest["budget"]["spent_usd"] <= 0.5
    assert all(s.get("failed_calls", 0) == 0 for s in manifest["stages"])  # not "failures"
    spent = manifest["llm_attempt"]["prompt_tokens"] + manifest["llm_attempt"]["completion_tokens"]
    assert manifest["budget"]["spent_tokens"] == spent  # settled to the usage reported
    # load streams its rows into the segment after it: they were checkpointed as they were read
    assert (run_dir / "stages" / "00_load.jsonl.part").stat().st_size > 0

    with pytest.raises(BudgetExceeded):  # the same budget: already used up, nothing is sent
        _run(run_dir, conc, "budget.max_usd=0.5")
    assert len(test_model.requests) == first

    df, manifest = api.run([*PRICED, conc, "budget.max_usd=100"], run_dir, config_dirs=TINY_DIRS)
    assert len(test_model.requests) == TINY_CALLS  # the rest, and no call twice
    assert manifest["status"] == "ok" and not manifest["budget"]["stopped"]
    assert list(df.answer) == list(full_df.answer)


def test_token_budget_stops_too(tmp_path: Path, test_model) -> None:
    with pytest.raises(BudgetExceeded, match="tokens"):
        _run(tmp_path / "run", "model.concurrency=1", "budget.max_tokens=400")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert 0 < len(test_model.requests) < TINY_CALLS
    assert manifest["budget"]["spent_tokens"] <= 400


def test_unpriced_hosted_model_fails_validation(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="no price"):
        api.validate(
            [
                *TINY,
                "model=openai",
                "model.name=no-such-hosted-model-xyz",
                "budget.max_usd=1",
            ],
            config_dirs=TINY_DIRS,
        )


def test_cli_exits_4_and_shows_the_spend(tmp_path: Path) -> None:
    from helpers import cli

    got = cli(
        "run",
        "--config-dir",
        TINY_DIRS[0],
        *PRICED,
        "budget.max_usd=0.5",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"SELFALIGN_CACHE": str(tmp_path / "c")},
    )
    assert got.returncode == EXIT_BUDGET, got.stderr[-2000:]
    assert "budget reached at $" in got.stderr and "stopped by the budget" in got.stderr
    assert "spent $" in got.stderr


def _float_keys(schema: type) -> list[tuple[str, dict]]:
    """(dotted key, raw mapping that sets it to NaN) for every float field of `schema`, inside
    nested params too (X, X | None, list[X], dict[str, X]): float, list[float], dict[str, float]."""
    import dataclasses
    import typing

    from selfalign.config import _nested_schema

    nan = float("nan")
    out = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        tp, key = hints[f.name], f.name
        args = typing.get_args(tp) or (tp,)
        kinds = {typing.get_origin(a): typing.get_args(a)[-1:] for a in args}
        if nested := _nested_schema(tp):
            inner, how = nested[0], nested[1][:1]  # "", "[" (a list of them) or "." (a dict)
            at = {"": key, "[": f"{key}[0]", ".": f"{key}.k"}[how]
            for sub, raw in _float_keys(inner):
                out.append((f"{at}.{sub}", {f.name: {"": raw, "[": [raw], ".": {"k": raw}}[how]}))
        elif float in args:
            out.append((key, {f.name: nan}))
        elif kinds.get(list) == (float,):
            out.append((f"{key}[0]", {f.name: [nan]}))
        elif kinds.get(dict) == (float,):
            out.append((f"{key}.k", {f.name: {"k": nan}}))
    return out


def _schemas() -> list[tuple[str, type]]:
    from selfalign.settings import CacheSettings, RunSettings
    from selfalign.stages import STAGES

    found = [("model", ModelConfig), ("budget", BudgetSettings), ("config", RunSettings)]
    found += [("cache", CacheSettings)]
    return found + [(f"pipeline.stages.{kind}", cls.Params) for kind, cls in STAGES.items()]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_every_float_in_the_config_refuses_nan_and_inf(bad: float) -> None:
    """Walks every registered stage's Params and the model, budget and run settings: a float
    given NaN or ±inf is a ConfigError naming its key (a NaN cap or price turned the budget
    off). A new float param is covered by this walk as soon as it exists."""
    import dataclasses

    from selfalign.config import parse_params

    def with_bad(raw: Any) -> Any:  # the NaN the walk put in, replaced by `bad`
        if isinstance(raw, dict):
            return {k: with_bad(v) for k, v in raw.items()}
        return [with_bad(v) for v in raw] if isinstance(raw, list) else bad

    checked = []
    for where, schema in _schemas():
        for key, raw in _float_keys(schema):
            field = dataclasses.fields(schema)
            meta = next(f.metadata for f in field if f.name == key.split(".")[0].split("[")[0])
            if meta.get("nonfinite"):
                continue  # its doc says what NaN / inf mean there
            with pytest.raises(ConfigError, match=rf"^{re.escape(where)}\.{re.escape(key)}: .*not a finite"):
                parse_params(schema, with_bad(raw), where)
            checked.append(f"{where}.{key}")
    for key in (
        "model.price.input_per_mtok",
        "model.price.output_per_mtok",
        "model.timeout_s",
        "budget.max_usd",
        "config.progress_every_s",
        "pipeline.stages.generate_text.temperature",
    ):
        assert key in checked, key  # the walk really reached the floats that matter
