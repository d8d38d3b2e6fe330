"""Typed model config (conf/model/*.yaml) shared by every provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from selfalign.config import FieldError, doc
from selfalign.redact import looks_like_secret


def endpoint_urls(api_base: str | list[str] | None) -> list[str]:
    """`model.api_base` as a list (empty for none)."""
    if api_base is None:
        return []
    return [api_base] if isinstance(api_base, str) else list(api_base)


def cache_url(api_base: str | list[str] | None) -> str:
    """The endpoint part of a model's cache identity. A list serves one model N times, so it is
    the first URL whichever endpoint answered: adding or removing other endpoints keeps the cache,
    and a one-URL list keys like the plain string."""
    urls = endpoint_urls(api_base)
    return urls[0] if urls else ""


def check_api_base(api_base: str | list[str] | None) -> None:
    """A list must be non-empty, of http(s) URLs with a host, without duplicates."""
    if api_base is None or isinstance(api_base, str):
        return  # one URL: as before (the preflight tells if nothing listens there)
    if not api_base:
        raise FieldError("api_base", "empty list. Give one URL or a list of URLs, or null.")
    seen: dict[str, int] = {}
    for i, url in enumerate(api_base):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FieldError(f"api_base[{i}]", f"{url!r} is not an http(s) URL, e.g. http://gpu1:8000/v1.")
        norm = url.rstrip("/")
        if norm in seen:
            raise FieldError(
                f"api_base[{i}]",
                f"{url!r} repeats api_base[{seen[norm]}]. List each endpoint once "
                "(raise model.concurrency for more requests in flight per endpoint).",
            )
        seen[norm] = i


@dataclass
class Price:
    """Dollars per million tokens; overrides litellm's price map for budgets and estimates."""

    input_per_mtok: float = doc("$ per 1M prompt tokens")
    output_per_mtok: float = doc("$ per 1M completion tokens")

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ValueError("price: input_per_mtok and output_per_mtok must be >= 0")

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


@dataclass
class ModelConfig:
    provider: Literal["local", "litellm", "test"] = doc("backend: local | litellm | test")
    name: str = doc("litellm model string (e.g. openai/gpt-4o-mini) or a label", "")
    api_base: str | list[str] | None = doc(
        "OpenAI-compatible base URL (vLLM, Ollama, llama.cpp …), or a list of URLs serving the "
        "same model: requests are balanced across them (docs/endpoints.md)",
        None,
    )
    api_key_env: str | None = doc("name of the env var holding the API key (never the key)", None)
    concurrency: int = doc(
        "requests kept in flight at once against this endpoint (the ceiling when min_concurrency is set)", 8
    )
    min_concurrency: int | None = doc(
        "adaptive concurrency (AIMD) floor: cut on 429/timeout, grow on success; null = fixed at concurrency",
        None,
    )
    rpm: float | None = doc("requests per minute this endpoint allows (null = no limit)", None)
    tpm: float | None = doc(
        "tokens per minute (prompt + max_tokens, corrected by the usage reported; null = no limit)", None
    )
    price: Price | None = doc(
        "{input_per_mtok, output_per_mtok} in $: overrides litellm's "
        "price map (null = the map for hosted models, free otherwise)",
        None,
    )
    batch_price_factor: float = doc(
        "share of the list price a batch-API call costs (stages with batch: true); "
        "OpenAI and Anthropic both charge half",
        0.5,
    )
    timeout_s: float = doc("per-request timeout in seconds", 120.0)
    max_retries: int = doc("retries on 429/5xx/timeouts/connection errors", 5)
    backoff_base_s: float = doc(
        "backoff once the endpoint fails answers in a row or a request fails a third time (a "
        "request's first two failures among successes are retried at once); doubles with either, with jitter",
        1.0,
    )
    backoff_max_s: float = doc("cap on one backoff delay", 60.0)
    circuit_breaker: int = doc(
        "connection failures in a row (refused, unknown host) that stop the run; 0 = never stop", 5
    )
    endpoint_failures: int = doc(
        "several api_base: connection failures in a row that take one endpoint out", 3
    )
    endpoint_retry_s: float = doc(
        "several api_base: first cool-down before a taken-out endpoint is probed; doubles per failed probe",
        10.0,
    )
    endpoint_retry_max_s: float = doc("several api_base: cap on one cool-down", 300.0)
    transport: Literal["auto", "litellm", "direct"] = doc(
        "auto: direct HTTP for an api_base endpoint, litellm otherwise", "auto"
    )
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
        if self.min_concurrency is not None and not 1 <= self.min_concurrency <= self.concurrency:
            raise ValueError(
                f"min_concurrency must be between 1 and concurrency "
                f"({self.concurrency}), got {self.min_concurrency}"
            )
        for name in ("rpm", "tpm"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 (null = no limit)")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        check_api_base(self.api_base)
        if not 0 <= self.batch_price_factor <= 1:
            raise ValueError(f"batch_price_factor must be between 0 and 1 (got {self.batch_price_factor})")
        if self.endpoint_failures < 1:
            raise ValueError("endpoint_failures must be >= 1")
        for name in (
            "timeout_s",
            "backoff_base_s",
            "backoff_max_s",
            "startup_timeout_s",
            "endpoint_retry_s",
            "endpoint_retry_max_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.circuit_breaker < 0:
            raise ValueError("circuit_breaker must be >= 0 (0 = off)")
        if self.latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        if self.api_key_env and looks_like_secret(self.api_key_env):
            # never echo it: the message, config.yaml and the manifest would all carry the key
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (e.g. "
                "OPENAI_API_KEY), but the value given looks like a key itself. "
                "Export the key (export MY_KEY=...) and set api_key_env=MY_KEY."
            )

    @property
    def total_concurrency(self) -> int:
        """Requests in flight at most across all endpoints: `concurrency` per endpoint."""
        return self.concurrency * max(1, len(endpoint_urls(self.api_base)))
