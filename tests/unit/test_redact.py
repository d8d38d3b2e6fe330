"""selfalign/redact.py: what counts as a secret (by name, by shape, in URLs), what must stay
(hex digests, run ids, paths, model ids, ordinary text), and the writers that use it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from helpers import PIPELINES

from selfalign.llm.transport import split_headers
from selfalign.redact import (
    MASK,
    LogFilter,
    config_yaml,
    is_secret_name,
    looks_like_secret,
    redact,
    redact_text,
    redact_yaml_file,
)


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "API_KEY",
        "apiKey",
        "apikey",
        "x-api-key",
        "X-Api-Key",
        "Authorization",
        "token",
        "hf_token",
        "access_token",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "credentials",
        "Cookie",
        "aws_secret_access_key",
        "openai_api_key",
    ],
)
def test_key_like_names_are_secret(name: str) -> None:
    assert is_secret_name(name)
    assert redact({"a": {name: "value-of-any-shape"}}) == {"a": {name: MASK}}


@pytest.mark.parametrize(
    "name",
    ["api_key_env", "max_tokens", "tokens", "token_budget", "key", "author", "keywords", "name", "prompt"],
)
def test_ordinary_names_are_not(name: str) -> None:
    assert not is_secret_name(name)
    assert redact({name: "OPENAI_API_KEY"}) == {name: "OPENAI_API_KEY"}


def test_headers_inside_extra_params_and_lists() -> None:
    cfg = {
        "model": {
            "extra_params": {
                "headers": {"Authorization": "Bearer abc", "Accept": "application/json"},
                "top_k": 20,
            },
            "api_key_env": "OPENAI_API_KEY",
        },
        "models": [{"api_key": "plain-password-like"}],
        "empty": {"token": None},
    }
    out = redact(cfg)
    assert out["model"]["extra_params"] == {
        "headers": {"Authorization": MASK, "Accept": "application/json"},
        "top_k": 20,
    }
    assert out["model"]["api_key_env"] == "OPENAI_API_KEY"  # a variable's name is not a key
    assert out["models"] == [{"api_key": MASK}] and out["empty"] == {"token": None}
    assert cfg["models"] == [{"api_key": "plain-password-like"}]  # a copy: the input is untouched


def test_api_key_env_holding_the_key_itself_reuses_the_model_check() -> None:
    for key in ("sk-proj-abcdef123456", "key-1234", "a" * 20 + "B1" * 10):
        assert looks_like_secret(key)
        assert redact({"api_key_env": key}) == {"api_key_env": MASK}
    assert not looks_like_secret("OPENAI_API_KEY")


@pytest.mark.parametrize(
    "secret",
    [
        "sk-abcdefghijklmnop",
        "sk-proj-AbC123_xyz-987654321",
        "sk-ant-api03-abcdefghijkl",
        "sk-canary-0123456789abcdef0123456789abcdef",
        "hf_AbCdEfGhIjKlMnOpQrStUv",
        "ghp_abcdefghijklmnopqrstuvwxyz0123",
        "github_pat_11ABCDEFG0123456789_abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        "xoxb-1234567890-abcdefghij",
        "AIzaSyD-abcdefghijklmnopqrstuvwxyz012345",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.abcdefghijklmnop",
        "Zx9Qm2Lp7Rt4Vw8Ny3Kb6Hj1Gf5Dc0Sa",  # 32 mixed-case alphanumerics
    ],
)
def test_key_shaped_strings_anywhere(secret: str) -> None:
    text = f"the server said: invalid key {secret}, try again"
    assert redact_text(text) == f"the server said: invalid key {MASK}, try again"
    assert redact({"note": text, "list": [secret]}) == {"note": redact_text(text), "list": [MASK]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi_123", "Authorization: Bearer ***"),
        ("https://user:tok3n@host:8000/v1", "https://***@host:8000/v1"),
        ("https://tok3nonly@host/v1", "https://***@host/v1"),
        ("http://h/v1?api_key=abc&x=1&token=t", "http://h/v1?api_key=***&x=1&token=***"),
        ("https://g.com/v1?key=AIza123", "https://g.com/v1?key=***"),
        ("model.extra_params.api_key=hunter2", "model.extra_params.api_key=***"),
        ("model.extra_params={api_key: hunter2, top_k: 2}", "model.extra_params={api_key: ***, top_k: 2}"),
        ("{'password': 'hunter2', 'user': 'bob'}", "{'password': '***', 'user': 'bob'}"),
        ('"X-Api-Key": "hunter2"', '"X-Api-Key": "***"'),
    ],
)
def test_urls_headers_and_named_values_in_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # a prompt's sha256
        "9f86d081884c7d65",  # a fingerprint
        "0123456789abcdef0123456789abcdef",  # a uuid hex
        "outputs/wizardlm_aaa/2025-01-01_12-00-00",
        "/home/me/.cache/selfalign/responses.sqlite",
        "Qwen/Qwen2.5-7B-Instruct",
        "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct",
        "http://127.0.0.1:8000/v1",
        "model.api_key_env=OPENAI_API_KEY",
        "max_tokens=512 temperature=0.2,0.8",
        "The task-specific tokens: each token is a word piece.",
        "2025-01-01T12:00:00.123456+00:00",
        "sk-learn is a name, desk-lamp and task-list are words",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGH",  # long but one case only
    ],
)
def test_ordinary_text_hashes_paths_and_ids_stay(text: str) -> None:
    assert redact_text(text) == text


def test_log_filter_redacts_the_formatted_message() -> None:
    record = logging.LogRecord(
        "selfalign", logging.INFO, __file__, 1, "calling %s with %s", ("x", "sk-abcdefghijkl"), None
    )
    assert LogFilter().filter(record)
    assert record.getMessage() == f"calling x with {MASK}"


def test_run_log_is_redacted(tmp_path: Path) -> None:
    from selfalign.outputs import run_log

    with run_log(tmp_path):
        logging.getLogger("selfalign").error(
            "endpoint https://u:p4ss@h/v1 failed: %s", {"api_key": "hunter2"}
        )
    text = (tmp_path / "run.log").read_text()
    assert "p4ss" not in text and "hunter2" not in text and "https://***@h/v1" in text


def test_hydra_files_are_rewritten_redacted(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(["pipeline=tiny", "model.extra_params={api_key: hunter2}", "n=3"]))
    hydra = tmp_path / "hydra.yaml"
    hydra.write_text(
        "hydra:\n  run:\n    dir: out/${now:%H}\n  overrides:\n    task:\n    - +token=hunter2\n"
    )
    for path in (overrides, hydra):
        redact_yaml_file(path)
    assert yaml.safe_load(overrides.read_text()) == [
        "pipeline=tiny",
        "model.extra_params={api_key: ***}",
        "n=3",
    ]
    assert "hunter2" not in hydra.read_text() and "${now:%H}" in hydra.read_text()  # left unresolved
    redact_yaml_file(tmp_path / "absent.yaml")  # Hydra's output_subdir may be off: no error


def test_config_yaml_redacts_a_dictconfig() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {"model": {"extra_params": {"api_key": "hunter2"}, "name": "m"}, "t": "${model.name}"}
    )
    assert yaml.safe_load(config_yaml(cfg)) == {
        "model": {"extra_params": {"api_key": MASK}, "name": "m"},
        "t": "m",
    }


def test_direct_transport_sends_extra_params_keys_as_headers() -> None:
    body, headers = split_headers({"api_key": "k1", "headers": {"X-Api-Key": "k2"}, "top_k": 5}, None)
    assert body == {"top_k": 5}
    assert headers == {"Authorization": "Bearer k1", "X-Api-Key": "k2"}
    assert split_headers({"api_key": "k1"}, "env-key")[1] == {"Authorization": "Bearer env-key"}  # as litellm
    assert split_headers({"top_k": 5}, "env-key") == ({"top_k": 5}, {"Authorization": "Bearer env-key"})
    assert split_headers({}, None) == ({}, {})


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_nothing_is_redacted_from_an_ordinary_run(pipeline: str, run_pipeline) -> None:
    """The shipped pipelines hold no secret: their manifest (prompt hashes included), config,
    card and log come out with no *** (the golden outputs test covers their datasets)."""
    _, manifest, run_dir = run_pipeline(f"pipeline={pipeline}")
    for name in ("manifest.json", "config.yaml", "README.md", "run.log"):
        assert MASK not in (run_dir / name).read_text(encoding="utf-8"), name
    hashes = [h for s in manifest["stages"] for h in (s.get("prompts") or {}).values()]
    assert hashes and all(isinstance(h, str) and h == redact_text(h) for h in hashes)
    assert json.loads((run_dir / "manifest.json").read_text()) == manifest


def test_model_identity_and_cache_key_hold_no_token(tmp_path: Path) -> None:
    """The identity (cache key, manifest `models`, the cache's `model` column) of an endpoint
    with a token in its URL: no token, and the same for two tokens (a key decides no answer)."""
    from selfalign.llm.config import ModelConfig
    from selfalign.llm.session import LLMSession

    def identity(url: str) -> str:
        cfg = ModelConfig(provider="litellm", name="m", api_base=url)
        return LLMSession({"default": cfg}, tmp_path, None).identity(None)

    one = identity("https://u:t0ken1@h/v1?api_key=abc")
    assert "t0ken1" not in one and "abc" not in one
    assert one == identity("https://u:t0ken2@h/v1?api_key=xyz")
    assert identity("http://127.0.0.1:8000/v1") == "litellm:m@http://127.0.0.1:8000/v1:"  # as before
