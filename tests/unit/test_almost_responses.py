"""generate_responses on the test model: the grid, per-config sampling, the turn cut, config errors."""

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError, PromptError
from selfalign.stages.methods.almost.responses import ResponseConfig


def capture(ctx):
    """Record every request the stage sends (it still goes to the test model)."""
    seen = []
    real = ctx.llm.call

    async def call(stage, ref, req, *rest):
        seen.append(req)
        return await real(stage, ref, req, *rest)

    ctx.llm.call = call
    return seen


CONFIGS = [
    {"name": "faithful-2shot", "demos": "almost/demos_faithful", "n_shot": 2, "max_tokens": 768},
    {"name": "hhh-0shot", "demos": "almost/demos_hhh", "n_shot": 0},
    {"name": "hhh-1shot-hot", "demos": "almost/demos_hhh", "n_shot": 1, "temperature": 1.4},
]


def prompts_frame():
    return pd.DataFrame({"row_id": ["a", "b"], "prompt": ["How do tides work?", "Suggest a name for a cat."]})


def test_one_response_per_prompt_per_config(ctx):
    out = run_stage(make_stage("generate_responses", ctx, "rg", configs=CONFIGS), prompts_frame())
    assert list(out.row_id) == [
        "a.faithful-2shot",
        "a.hhh-0shot",
        "a.hhh-1shot-hot",
        "b.faithful-2shot",
        "b.hhh-0shot",
        "b.hhh-1shot-hot",
    ]
    assert list(out.parent_id) == ["a"] * 3 + ["b"] * 3
    assert list(out.config[:3]) == [c["name"] for c in CONFIGS]
    assert all(out.bad == out.bad_reason.notna())
    counts = ctx.stats.stage("rg").counts
    assert sum(counts.values()) == out.bad.sum() and not ctx.stats.stage("rg").drops


def test_n_shot_and_sampling_per_config(ctx):
    seen = capture(ctx)
    run_stage(make_stage("generate_responses", ctx, "rg", configs=CONFIGS), prompts_frame())
    by_shots = {}
    for req in seen:
        user = req.message_dicts[-1]["content"]
        assert user.endswith("Human: " + user.split("Human: ")[-1]) and user.endswith("Assistant:")
        by_shots.setdefault(user.count("Human:") - 1, []).append(req.param_dict)
    assert sorted(by_shots) == [0, 1, 2]  # n_shot=0 really means no demonstrations
    assert by_shots[2][0] == {"temperature": 1.0, "top_p": 0.9, "max_tokens": 768}
    assert by_shots[0][0] == {"temperature": 1.0, "top_p": 0.9, "max_tokens": 384}
    assert by_shots[1][0] == {"temperature": 1.4, "top_p": 0.9, "max_tokens": 384}


def test_keep_raw_and_turn_cut(ctx):
    ctx.llm.models["default"].rules.append(
        {
            "match": "tides",
            "reply": "Assistant: The moon pulls the oceans, which makes tides "
            "rise and fall twice a day.\n\nHuman: thanks",
        }
    )
    ctx.llm._clients.clear()
    stage = make_stage(
        "generate_responses",
        ctx,
        "rg",
        keep_raw=True,
        configs=[{"name": "x", "demos": "almost/demos_hhh", "n_shot": 0}],
    )
    out = run_stage(stage, prompts_frame()[:1])
    assert out.response[0] == ("The moon pulls the oceans, which makes tides rise and fall twice a day.")
    assert out.response_raw[0].endswith("Human: thanks") and not out.bad[0]


@pytest.mark.parametrize(
    "configs, error, message",
    [
        (
            [{"name": "x", "demos": "almost/demos_hhh", "n_shot": 9}],
            ConfigError,
            r"configs\[0\]\.n_shot: n_shot=9, but the set has 5 dialogue\(s\).*use 0\.\.5",
        ),
        ([{"name": "x"}, {"name": "x"}], ConfigError, r"configs\[1\]\.name: 'x' is used twice"),
        (
            [{"name": "x", "demos": "almost/demos_nope"}],
            PromptError,
            r"configs\[0\]\.demos: unknown prompt 'almost/demos_nope'",
        ),
        ([{"name": "x", "model": "big"}], ConfigError, r"configs\[0\]\.model: unknown model 'big'"),
        (
            [{"name": "x", "nshot": 1}],
            ConfigError,
            r"configs\[0\]\.nshot: unknown key\. Did you mean 'n_shot'\?",
        ),
        ([{"name": "x", "n_shot": "two"}], ConfigError, r"configs\[0\]\.n_shot: expected int"),
        ([{"demos": "almost/demos_hhh"}], ConfigError, r"configs\[0\]\.name: required key"),
        ([{"name": "x", "demos": "almost/respond"}], ConfigError, r"must be plain text"),
        ([], ConfigError, "`configs` is empty"),
    ],
)
def test_generate_responses_config_errors(ctx, configs, error, message):
    with pytest.raises(error, match=message):
        make_stage("generate_responses", ctx, "rg", configs=configs)


def test_configs_are_typed_and_documented(ctx):
    stage = make_stage("generate_responses", ctx, "rg", configs=CONFIGS)
    assert all(isinstance(c, ResponseConfig) for c in stage.params.configs)
    assert stage.params.configs[1].n_shot == 0 and stage.params.configs[1].max_tokens is None
    from selfalign.commands.listing import stage_yaml

    assert "configs: []  # list[" in stage_yaml("generate_responses")


def test_every_config_model_is_a_model_ref(ctx):
    ctx.llm.models["small"] = ctx.llm.models["default"]
    stage = make_stage(
        "generate_responses", ctx, "rg", configs=[{"name": "a"}, {"name": "b", "model": "small"}]
    )
    assert stage.model_refs() == {None, "small"}
