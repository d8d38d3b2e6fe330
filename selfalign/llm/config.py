"""Typed model config (conf/model/*.yaml) shared by every provider."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from selfalign.config import doc

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def looks_like_secret(value: str) -> bool:
    """An env var name is short and [A-Za-z0-9_]; a key has dashes, is long, or starts sk-."""
    return value.startswith(("sk-", "sk_", "key-")) or not _ENV_NAME.match(value) \
        or (len(value) >= 32 and any(c.isdigit() for c in value) and any(c.islower() for c in value))


@dataclass
class ModelConfig:
    provider: Literal["local", "litellm", "test"] = doc("backend: local | litellm | test")
    name: str = doc("litellm model string (e.g. openai/gpt-4o-mini) or a label", "")
    api_base: str | None = doc("OpenAI-compatible base URL (vLLM, Ollama, llama.cpp …)", None)
    api_key_env: str | None = doc("name of the env var holding the API key (never the key)", None)
    concurrency: int = doc("requests kept in flight at once against this endpoint", 8)
    timeout_s: float = doc("per-request timeout in seconds", 120.0)
    max_retries: int = doc("retries on 429/5xx/timeouts/connection errors", 5)
    backoff_base_s: float = doc("first backoff delay; doubles each retry, with jitter", 1.0)
    backoff_max_s: float = doc("cap on one backoff delay", 60.0)
    circuit_breaker: int = doc("connection failures in a row (refused, unknown host) that stop "
                               "the run; 0 = never stop", 5)
    transport: Literal["auto", "litellm", "direct"] = doc(
        "auto: direct HTTP for an api_base endpoint, litellm otherwise", "auto")
    supports_json_schema: bool = doc("send JSON-schema response_format where a stage asks", False)
    extra_params: dict[str, Any] = doc("extra params sent with every call", factory=dict)
    # embedded llama.cpp server (provider=local)
    path: str | None = doc("GGUF file for provider=local; null = the embedded model", None)
    n_ctx: int = doc("local: total context, split across n_parallel slots", 8192)
    n_parallel: int = doc("local: parallel decoding slots", 4)
    threads: int | None = doc("local: CPU threads (null = all cores)", None)
    startup_timeout_s: float = doc("local: seconds to wait for the server to be healthy", 180.0)
    # deterministic offline test model (provider=test)
    latency_s: float = doc("test: simulated latency per call", 0.0)
    rules: list[dict[str, Any]] = doc("test: extra {match, reply} rules tried first", factory=list)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        for name in ("timeout_s", "backoff_base_s", "backoff_max_s", "startup_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.circuit_breaker < 0:
            raise ValueError("circuit_breaker must be >= 0 (0 = off)")
        if self.latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if self.api_key_env and looks_like_secret(self.api_key_env):
            # never echo it: the message, config.yaml and the manifest would all carry the key
            raise ValueError("api_key_env must be the NAME of an environment variable (e.g. "
                             "OPENAI_API_KEY), but the value given looks like a key itself. "
                             "Export the key (export MY_KEY=...) and set api_key_env=MY_KEY.")
