"""LiteLLMClient: the only module that imports litellm — concurrency limit, retries, timeouts, cost."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import time
from typing import Any

# Without this, importing litellm fetches a price list from the internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

from selfalign.errors import LLMError  # noqa: E402
from selfalign.llm.base import ChatRequest, ChatResult  # noqa: E402
from selfalign.llm.config import ModelConfig  # noqa: E402

# litellm's own chatter (feedback banners, debug logs, "event loop changed" warnings) stays off:
# its logs could echo request details, and our errors carry everything the user needs.
litellm.suppress_debug_info = True
litellm.set_verbose = False
litellm.telemetry = False
for _name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)

NO_KEY = "no-key"  # OpenAI-compatible local servers ignore the key, but the SDK wants one
MAX_RETRY_AFTER_S = 600.0  # a Retry-After beyond this is a server bug, not a plan
_FATAL = (litellm.AuthenticationError, litellm.PermissionDeniedError, litellm.NotFoundError,
          litellm.BadRequestError, litellm.UnprocessableEntityError)
_SECRETS = (re.compile(r"(Bearer\s+)\S+", re.I), re.compile(r"\b(sk-)[A-Za-z0-9_\-]{6,}"))


def model_string(cfg: ModelConfig) -> str:
    """litellm model string: an `api_base` endpoint is OpenAI-compatible unless a provider is named."""
    name = cfg.name
    if cfg.api_base and name.split("/", 1)[0] not in litellm.provider_list:
        return f"openai/{name}"
    return name


class LiteLLMClient:
    """Any litellm-supported model or OpenAI-compatible endpoint, `cfg.concurrency` calls in flight.

    The API key is read from `os.environ[cfg.api_key_env]` at each call and is never stored on
    the object, so it cannot leak through repr, identity, or pickled state.
    """

    def __init__(self, cfg: ModelConfig, *, api_base: str | None = None,
                 identity: str | None = None) -> None:
        self.cfg = cfg
        self.api_base = api_base or cfg.api_base
        self.model = model_string(cfg) if not api_base else f"openai/{cfg.name}"
        self.identity = identity or f"litellm:{self.model}@{self.api_base or ''}"
        self.supports_json_schema = cfg.supports_json_schema
        self.label = f"model '{cfg.name}'" + (f" at {self.api_base}" if self.api_base else "")
        if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
            raise LLMError(
                f"{self.label}: the environment variable {cfg.api_key_env} (named by "
                f"model.api_key_env) is not set or empty. Export it before the run, e.g. "
                f"`export {cfg.api_key_env}=...`; keys are never read from config files."
            )
        # asyncio primitives bind to one event loop; a multirun may run jobs in fresh loops.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self.in_flight = 0
        self.max_in_flight = 0

    def __repr__(self) -> str:
        return f"LiteLLMClient({self.identity!r}, concurrency={self.cfg.concurrency})"

    # ---- helpers --------------------------------------------------------------------------
    def _key(self) -> str | None:
        if self.cfg.api_key_env:
            return os.environ.get(self.cfg.api_key_env) or None
        return NO_KEY if self.api_base else None  # hosted: litellm reads its provider's env var

    def _scrub(self, text: str) -> str:
        key = self._key()
        if key and key != NO_KEY:
            text = text.replace(key, "***")
        for pattern in _SECRETS:
            text = pattern.sub(r"\1***", text)
        return text[:600]

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._sem = loop, asyncio.Semaphore(self.cfg.concurrency)
        return self._sem

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        params = {**self.cfg.extra_params, **request.param_dict}
        if not self.supports_json_schema:
            params.pop("response_format", None)
        kw: dict[str, Any] = {
            "model": self.model, "messages": request.message_dicts,
            "timeout": self.cfg.timeout_s,
            "max_retries": 0,  # retries are ours (Retry-After, jitter, accounting)
            "num_retries": 0,
            **params,
        }
        if self.api_base:
            kw["api_base"] = self.api_base
        key = self._key()
        if key:
            kw["api_key"] = key
        return kw

    def _backoff(self, retry: int, exc: BaseException | None) -> float:
        after = retry_after_s(exc) if exc is not None else None
        if after is not None:
            return min(after, MAX_RETRY_AFTER_S) * random.uniform(1.0, 1.1)
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** retry)
        return random.uniform(0, cap)  # full jitter: spreads a burst of retries

    # ---- the call -------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> ChatResult:
        kwargs = self._kwargs(request)
        sem = self._semaphore()
        start = time.perf_counter()
        last_error = ""
        attempts = 0
        for retry in range(self.cfg.max_retries + 1):
            attempts += 1
            exc: BaseException | None = None
            async with sem:  # held only while a call is in flight, not while backing off
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                t0 = time.perf_counter()
                try:
                    # litellm's own timeout covers the HTTP call; this one also covers the
                    # rest (a stuck connect or DNS lookup), with a grace second so litellm's
                    # clearer error usually fires first.
                    resp = await asyncio.wait_for(litellm.acompletion(**kwargs),
                                                  self.cfg.timeout_s + 1.0)
                except Exception as e:  # noqa: BLE001 — classified just below
                    exc = e
                finally:
                    self.in_flight -= 1
                latency = time.perf_counter() - t0
            if exc is None:
                return self._result(resp, attempts, latency, start)
            kind = self._classify(exc, request)
            if kind == "row":
                return ChatResult(text=None, error=self._describe(exc),
                                  attempts=attempts, retries=attempts - 1, latency_s=latency)
            last_error = self._describe(exc)
            if retry < self.cfg.max_retries:
                await asyncio.sleep(self._backoff(retry, exc))
        return ChatResult(
            text=None, attempts=attempts, retries=attempts - 1,
            error=f"gave up after {attempts} attempts: {last_error}",
            latency_s=time.perf_counter() - start,
        )

    def _result(self, resp: Any, attempts: int, latency: float, start: float) -> ChatResult:
        try:
            choice = resp.choices[0]
            text = choice.message.content
            finish = getattr(choice, "finish_reason", None)
        except (AttributeError, IndexError, TypeError):
            text, finish = None, None
        usage = getattr(resp, "usage", None)
        hidden = getattr(resp, "_hidden_params", {}) or {}
        cost = hidden.get("response_cost") if "response_cost" in hidden else _cost(resp)
        return ChatResult(
            text=text,
            error=None if text is not None else "empty response (no message content)",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            attempts=attempts, retries=attempts - 1, latency_s=latency,
            cost=float(cost) if cost is not None else None,
            extra={"finish_reason": finish, "elapsed_s": time.perf_counter() - start},
        )

    def _classify(self, exc: BaseException, request: ChatRequest) -> str:
        """'retry' (transient), 'row' (only this row is bad), or raise LLMError (fix config)."""
        if isinstance(exc, litellm.ContextWindowExceededError):
            return "row"  # one over-long row should be rejected, not stop the run
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError, litellm.Timeout,
                            litellm.APIConnectionError)):
            return "retry"
        status = getattr(exc, "status_code", None)
        if isinstance(exc, _FATAL) or status in (400, 401, 403, 404, 422):
            raise LLMError(self._fatal_message(exc, status, request)) from None
        if isinstance(exc, (litellm.APIError, litellm.RateLimitError)) or isinstance(status, int):
            return "retry"  # 429, 5xx, malformed bodies (litellm maps those to 500)
        # Not an API error at all (a bug, a bad param type): retrying cannot fix it.
        raise LLMError(f"{self.label}: unexpected {type(exc).__name__}: "
                       f"{self._scrub(str(exc))}") from None

    def _fatal_message(self, exc: BaseException, status: Any, request: ChatRequest) -> str:
        where = f"{self.label} (stage '{request.stage}')" if request.stage else self.label
        said = self._scrub(str(exc))
        if isinstance(exc, (litellm.AuthenticationError, litellm.PermissionDeniedError)) \
                or status in (401, 403):
            env = self.cfg.api_key_env
            hint = (f"check the key in ${env}" if env else
                    "set model.api_key_env to the name of the env var that holds the key")
            return f"{where}: authentication failed (HTTP {status}) — {hint}. Server said: {said}"
        if isinstance(exc, litellm.NotFoundError) or status == 404:
            return (f"{where}: not found (HTTP 404) — check model.name and model.api_base. "
                    f"Server said: {said}")
        return (f"{where}: the server rejected the request (HTTP {status}) — check the sampling "
                f"params and model.extra_params. Server said: {said}")

    def _describe(self, exc: BaseException) -> str:
        status = getattr(exc, "status_code", None)
        head = f"HTTP {status} " if isinstance(status, int) else ""
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError, litellm.Timeout)):
            return f"timeout after {self.cfg.timeout_s:g}s"
        return f"{head}{type(exc).__name__}: {self._scrub(str(exc))[:300]}"

    async def aclose(self) -> None:
        # litellm caches its HTTP clients process-wide and closes them itself at exit (atexit);
        # closing them here would break other clients still using the same cache.
        return None


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds from a Retry-After (or retry-after-ms) header on an error, if it has one."""
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None),
                    getattr(exc, "headers", None)):
        if not headers:
            continue
        try:
            ms = headers.get("retry-after-ms")
            if ms is not None:
                return max(0.0, float(ms) / 1000)
            value = headers.get("retry-after")
        except (AttributeError, TypeError, ValueError):
            continue
        if value is None:
            continue
        parsed = parse_retry_after(str(value))
        if parsed is not None:
            return parsed
    return None


def parse_retry_after(value: str) -> float | None:
    """`Retry-After: 3` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` → seconds from now."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _cost(resp: Any) -> float | None:
    try:
        return float(litellm.completion_cost(completion_response=resp))
    except Exception:  # noqa: BLE001 — unknown price is normal (local / custom models)
        return None
