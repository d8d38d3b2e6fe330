"""The per-row-call path (issue 21 §7), by counts: a session works out a model's cache-key
identity once, not on every call; the row-wise base's output frame is the same whether every row
is kept in order (its shortcut) or not."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pandas as pd
import pytest

import selfalign.llm.session as session_mod
from selfalign.llm.base import ChatRequest
from selfalign.llm.config import ModelConfig
from selfalign.llm.session import LLMSession, close_all
from selfalign.stages.llm import out_frame


def test_identity_is_worked_out_once_per_model_config(monkeypatch, tmp_path):
    seen: list[str] = []

    def counting(text: str) -> str:
        seen.append(text)
        return text

    monkeypatch.setattr(session_mod, "redact_text", counting)
    s = LLMSession({"default": ModelConfig(provider="test", name="t")}, tmp_path, None)
    reqs = [ChatRequest.make([{"role": "user", "content": f"q{i}"}]) for i in range(20)]
    try:
        asyncio.run(s.complete("gen", None, reqs))
    finally:
        asyncio.run(close_all())
    first = s.identity(None)
    assert len(seen) == 1  # 20 calls, one identity
    # a ref given a new config (a Ray worker's shared server) gets that config's identity
    s.models["default"] = replace(s.models["default"], name="other")
    assert s.identity(None) != first and len(seen) == 2


def test_out_frame_keeping_every_row_matches_the_general_path():
    df = pd.DataFrame({"row_id": ["a", "b", "c"], "n": [1, 2, 3], "text": ["x", "y", "z"]})
    values = [{"text": "X", "new": 1.5}, {"new": 2.5}, {"text": "Z", "new": None}]
    fast = out_frame(df, [0, 1, 2], values, ["new", "text"], "s")
    # the same rows reached by the general path (a take by position), built the same way
    general = out_frame(df.iloc[[2, 1, 0]], [2, 1, 0], values, ["new", "text"], "s")
    pd.testing.assert_frame_equal(fast, general)
    assert list(fast.columns) == ["row_id", "n", "text", "new"]
    assert str(fast["n"].dtype) == "int64" and fast["text"].tolist() == ["X", "y", "Z"]
    fast.loc[0, "n"] = 99  # the output is its own frame: the input is left as it was
    assert df["n"].tolist() == [1, 2, 3] and df["text"].tolist() == ["x", "y", "z"]


def test_pipelines_are_registered_as_omegaconf_reads_them():
    """setup() parses the shipped pipelines with libyaml under OmegaConf's rules: the same
    configs, and a repeated key is still refused."""
    from omegaconf import OmegaConf

    from selfalign.hydra_setup import load_yaml
    from selfalign.paths import resource_dir

    paths = sorted(resource_dir("pipelines").glob("*.yaml"))
    assert paths
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert OmegaConf.structured(load_yaml(text)) == OmegaConf.create(text), path.name
    text = "a: 1e3\nb: 2001-01-01\nc: 1_000\nd: ${oc.env:X}\n"
    assert load_yaml(text) == OmegaConf.to_container(OmegaConf.create(text))
    with pytest.raises(Exception, match="duplicate key a"):
        load_yaml("a: 1\na: 2\n")
