"""LiteLLMClient: concurrency limit, retries, timeouts and accounting for any model endpoint.

This is the only module that imports litellm (lazily: OpenAI-compatible endpoints given by
`api_base` use the lean direct transport of transport.py and never load it; see why there).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import random
import re
import time
from typing import Any

from selfalign import aio
from selfalign.errors import LLMError
from selfalign.llm.base import EMPTY_REPLY, ChatRequest, ChatResult
from selfalign.llm.config import ModelConfig, Price, cache_url, endpoint_urls
from selfalign.llm.endpoints import Endpoint, EndpointPool
from selfalign.llm.limits import AdaptiveLimit, estimate_tokens, load_signal, tokens_used
from selfalign.llm.transport import (
    DirectTransport,
    Reply,
    TransportError,
    classify_status,
    parse_retry_after,
    retry_after_from,
    unreachable,
)
from selfalign.redact import redact_text

# Without this, importing litellm fetches a price list from the internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__all__ = [
    "LiteLLMClient",
    "count_tokens",
    "litellm_price",
    "model_string",
    "parse_retry_after",
    "transport_kind",
]
NO_KEY = "no-key"  # OpenAI-compatible local servers ignore the key, but some clients want one
MAX_RETRY_AFTER_S = 600.0  # a Retry-After beyond this is a server bug, not a plan
# litellm stacks class names in front of the server's words ("litellm.BadRequestError:
# ContextWindowExceededError: OpenAIException - request (1530 tokens) exceeds …"): keep the words.
_PREFIXES = re.compile(r"^(?:litellm\.\w+:\s*|\w+(?:Error|Exception)(?::|\s+-)\s*)+")


@functools.cache  # configured once: setLevel clears every logger's cache on each call
def _litellm() -> Any:
    import logging

    import litellm

    # litellm's own chatter (banners, debug logs, "event loop changed" warnings) stays off: its
    # logs could echo request details, and our errors carry what the user needs.
    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


def transport_kind(cfg: ModelConfig) -> str:
    """'direct' for an OpenAI-compatible `api_base` (unless the name picks a litellm provider,
    e.g. ollama/…), else 'litellm'. `model.transport` (if the config has it) overrides."""
    chosen = getattr(cfg, "transport", "auto") or "auto"
    if chosen != "auto":
        return str(chosen)
    if not cfg.api_base:
        return "litellm"
    prefix = cfg.name.split("/", 1)[0] if "/" in cfg.name else ""
    if prefix in ("", "openai"):
        return "direct"
    return "litellm" if prefix in _litellm().provider_list else "direct"  # Qwen/… is a HF id


def litellm_price(name: str) -> Price | None:
    """$ per 1M tokens from litellm's bundled price map (offline), or None if it has none."""
    try:
        info = _litellm().get_model_info(model=name)
    except Exception:  # noqa: BLE001 — litellm raises several kinds for an unmapped model
        return None
    prompt, completion = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if prompt is None or completion is None:
        return None
    return Price(float(prompt) * 1e6, float(completion) * 1e6)


def count_tokens(name: str, messages: list[dict[str, str]]) -> int:
    """Prompt tokens of `messages` for model `name`, with litellm's offline tokenizers (its
    default one for a model it does not know)."""
    lt = _litellm()
    try:
        return int(lt.token_counter(model=name, messages=messages))
    except Exception:  # noqa: BLE001 — an unknown model name: the default tokenizer
        return int(lt.token_counter(messages=messages))


def model_string(cfg: ModelConfig) -> str:
    """litellm model string: an `api_base` endpoint is OpenAI-compatible unless a provider is named."""
    if cfg.api_base and (cfg.name.split("/", 1)[0] not in _litellm().provider_list):
        return f"openai/{cfg.name}"
    return cfg.name


class _LiteLLMTransport:
    def __init__(self, cfg: ModelConfig) -> None:
        from openai import APIConnectionError, OpenAIError  # litellm wraps all errors in these

        self.litellm = _litellm()
        self.model = model_string(cfg)
        self.api_base = cfg.api_base
        self._conn_errors, self._api_errors = APIConnectionError, OpenAIError

    async def send(
        self, messages: list[dict[str, str]], params: dict[str, Any], key: str | None, timeout_s: float
    ) -> Reply:
        lt = self.litellm
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "timeout": timeout_s,
            "max_retries": 0,
            "num_retries": 0,
            **params,
        }  # retries are ours
        if self.api_base:
            kw["api_base"] = self.api_base
        if key:
            kw["api_key"] = key
        try:
            resp = await lt.acompletion(**kw)
        except lt.ContextWindowExceededError as exc:
            raise TransportError("row", str(exc), 400) from None
        except self._conn_errors as exc:  # connection errors and timeouts
            raise TransportError("unreachable" if unreachable(exc) else "retry", str(exc)) from None
        except self._api_errors as exc:  # 4xx/5xx; litellm maps malformed bodies to 500
            status = getattr(exc, "status_code", None)
            msg = str(exc)
            if unreachable(exc):  # litellm wraps a refused connection as a 500 InternalServerError
                raise TransportError("unreachable", msg) from None
            kind = classify_status(status, msg) if isinstance(status, int) else "retry"
            raise TransportError(
                kind, msg, status if isinstance(status, int) else None, _retry_after(exc)
            ) from None
        choice = resp.choices[0] if getattr(resp, "choices", None) else None
        usage = getattr(resp, "usage", None)
        hidden = getattr(resp, "_hidden_params", {}) or {}
        return Reply(
            text=getattr(getattr(choice, "message", None), "content", None),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            finish_reason=getattr(choice, "finish_reason", None),
            cost=hidden.get("response_cost"),
        )

    async def aclose(self) -> None:
        # litellm caches its HTTP clients process-wide and closes them itself at exit; closing
        # them here would break other clients still using that cache.
        return None


def _retry_after(exc: BaseException) -> float | None:
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ):
        seconds = retry_after_from(headers)
        if seconds is not None:
            return seconds
    return None


class LiteLLMClient:
    """Any litellm model or OpenAI-compatible endpoint, `cfg.concurrency` calls in flight.

    The API key is read from `os.environ[cfg.api_key_env]` at each call and is never stored on
    the object, so it cannot leak through repr, identity or pickled state.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        api_base: str | None = None,
        identity: str | None = None,
        transport: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.cfg = cfg
        self._own_key = api_key  # the embedded server's per-run key (not from the environment)
        urls = [api_base] if api_base else endpoint_urls(cfg.api_base)
        self.api_base = urls[0] if len(urls) == 1 else (cache_url(urls) or None)
        self.transport_kind = transport or ("direct" if api_base else transport_kind(cfg))
        where = self.api_base if len(urls) <= 1 else f"{len(urls)} endpoints ({', '.join(urls)})"
        self.label = f"model '{cfg.name}'" + (f" at {where}" if where else "")
        if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
            raise LLMError(
                f"{self.label}: the environment variable {cfg.api_key_env} (named by "
                f"model.api_key_env) is not set or empty. Export it before the run, e.g. "
                f"`export {cfg.api_key_env}=...`; keys are never read from config files."
            )
        if self.transport_kind == "direct" and not urls:
            raise LLMError(f"{self.label}: the direct transport needs model.api_base.")
        name = cfg.name[len("openai/") :] if cfg.name.startswith("openai/") else cfg.name

        def make(url: str | None) -> DirectTransport | _LiteLLMTransport:
            if self.transport_kind == "direct":
                return DirectTransport(str(url), name)
            return _LiteLLMTransport(dataclasses.replace(cfg, api_base=url))

        self.pool = EndpointPool(cfg, urls or [None], make)  # type: ignore[list-item]
        self.identity = identity or f"{self.transport_kind}:{cfg.name}@{self.api_base or ''}"
        self.supports_json_schema = cfg.supports_json_schema
        self.in_flight = 0
        self.max_in_flight = 0
        self.active = 0  # requests inside complete(), backoff included
        self.wanting = 0  # requests choosing an endpoint, waiting for a slot, or in flight
        self.unreachable = 0  # connection failures (refused / unknown host) since the last reply
        self._room: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __repr__(self) -> str:
        return f"LiteLLMClient({self.identity!r}, concurrency={self.cfg.concurrency})"

    def _key(self) -> str | None:
        if self._own_key:
            return self._own_key
        if self.cfg.api_key_env:
            return os.environ.get(self.cfg.api_key_env) or None
        if self.api_base and self.transport_kind == "litellm":
            return NO_KEY  # the openai SDK under litellm refuses to run without one
        return None  # hosted via litellm: it reads its provider's own env var

    def _scrub(self, text: str) -> str:
        key = self._key()
        if key and key != NO_KEY:
            text = text.replace(key, "***")
        return _PREFIXES.sub("", redact_text(text))[:600]  # key-shaped strings too

    @property
    def limit(self) -> AdaptiveLimit:
        """The (first) endpoint's adaptive limit."""
        return self.pool.endpoints[0].limit

    @property
    def _send(self) -> Any:
        return self.pool.endpoints[0].send

    def endpoint_stats(self) -> dict[str, dict[str, Any]]:
        """Per endpoint counts, for the manifest (only with several endpoints)."""
        return self.pool.stats() if len(self.pool) > 1 else {}

    def concurrency_status(self) -> str:
        """'conc 12/64' while adaptive concurrency is on (for the progress bar); with several
        endpoints the sums, and how many are up when one is out."""
        eps = self.pool.endpoints
        if len(eps) == 1:
            return self.limit.status()
        up = sum(e.up for e in eps)
        conc = f"conc {sum(int(e.limit.limit) for e in eps)}/{sum(e.limit.ceiling for e in eps)} · "
        return (conc if self.limit.adaptive else "") + f"{up}/{len(eps)} endpoints up"

    def spare(self) -> int:
        """While requests are out: how many more could be started before as many want a slot
        as there are slots twice over (one round in flight, one queued behind it; the rest
        wait out backoffs). The streaming runner admits that many more rows."""
        if not self.active:
            return 0
        return max(0, 2 * self._slots() - self.wanting)

    def _slots(self) -> int:
        return sum(int(e.limit.limit) for e in self.pool.endpoints if e.up)

    def _backoff(self, retry: int, after: float | None, streak: int) -> float:
        """Retry-After if the server sent one. Else, a request's first two failures among
        successes (the endpoint's previous answer was a success: streak 1) are retried at once:
        our concurrency limit already bounds what the server sees, so a delay would protect
        nothing and only stretch the run's tail. Otherwise full jitter under base · 2^k, where k
        is the larger of the request's own failures − 3 and the endpoint's streak − 2 (at most
        the request's retries): a server that is down or overloaded is backed off from, and so
        is a request that keeps failing while others succeed. Three failures in a row of one
        request are rare bad luck (0.1% of calls at 10% faults) and more likely something that
        lasts (a burst of errors, a flaky replica). Without the request's own count, the
        others' successes kept the streak at 1 and every retry of an unlucky request went at
        once: all its attempts were spent within a few latencies, and one burst that long lost
        the row (issue 20, item 8)."""
        if after is not None:
            return min(after, MAX_RETRY_AFTER_S) * random.uniform(1.0, 1.1)
        if streak <= 1 and retry <= 1:
            return 0.0
        exponent = max(0, retry - 2, min(retry, streak - 2))
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2**exponent)
        return random.uniform(0, cap)  # full jitter: spreads a burst of retries

    async def complete(self, request: ChatRequest) -> ChatResult:
        self.active += 1
        try:
            return await self._complete(request)
        finally:
            self.active -= 1

    async def _complete(self, request: ChatRequest) -> ChatResult:
        params = {**self.cfg.extra_params, **request.param_dict}
        if not self.supports_json_schema:
            params.pop("response_format", None)
        messages, timeout = request.message_dicts, self.cfg.timeout_s
        start = time.perf_counter()
        self.pool.bind_loop()
        tokens = estimate_tokens(
            sum(len(c.encode()) for _, c in request.messages), int(params.get("max_tokens") or 0)
        )
        error = ""
        for retry in range(self.cfg.max_retries + 1):
            # A connection failure while another endpoint is up goes there at once, uncounted.
            tried: tuple[Endpoint, ...] = ()
            self.wanting += 1
            try:
                for _ in range(len(self.pool)):
                    ep = await self.pool.choose(avoid=tried)
                    tried += (ep,)
                    try:
                        reply, failure, latency = await self._attempt(ep, messages, params, tokens, timeout)
                    except BaseException:  # cancelled, or a bug: the slot is free, no verdict
                        self.pool.abandon(ep)
                        raise
                    moved = self.pool.done(ep, failure)
                    if not moved:
                        break
            finally:
                self.wanting -= 1
            if reply is not None:
                self.unreachable = 0
                if ep.streak == 0 and self.wanting < self._slots():
                    room = self._room_event()
                    room.set()  # a pulse: wakes the backoffs now waiting, and no later one
                    room.clear()
                return self._result(reply, retry + 1, latency, start)
            assert failure is not None
            if failure.kind == "fatal":
                raise LLMError(self._fatal_message(failure, request)) from None
            error = self._describe(failure)
            if failure.kind == "unreachable" and not moved:
                self._trip(error)
            if failure.kind == "row":
                return ChatResult(
                    text=None, error=error, attempts=retry + 1, retries=retry, latency_s=latency
                )
            if retry < self.cfg.max_retries:
                delay = self._backoff(retry, failure.retry_after, ep.streak)
                # Another request's success ends a wait the endpoint's streak asked for (it answers
                # again), not one this request's own failures among successes asked for.
                await self._pause(delay, failure, early=ep.streak >= retry)
        attempts = self.cfg.max_retries + 1
        return ChatResult(
            text=None,
            error=f"gave up after {attempts} attempts: {error}",
            attempts=attempts,
            retries=attempts - 1,
            latency_s=time.perf_counter() - start,
            extra={"raw_body": failure.body} if failure and failure.body else {},  # rejected table
        )

    def _room_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._room is None or self._room[0] is not loop:  # asyncio primitives bind to one loop
            self._room = (loop, asyncio.Event())
        return self._room[1]

    async def _pause(self, delay: float, failure: TransportError, early: bool = True) -> None:
        """A retry's backoff. One the server asked for (Retry-After) is waited out; our own
        ends early (if `early`) when another request succeeds while slots are idle: the endpoint
        is answering and has room, so waiting on would only leave the slots empty (the run's
        tail, once no new rows are left to send, is mostly such waits)."""
        if failure.retry_after is not None or not early:
            await asyncio.sleep(delay)
            return
        if delay <= 0:
            return
        timer = asyncio.ensure_future(asyncio.sleep(delay))
        room = asyncio.ensure_future(self._room_event().wait())
        try:
            await asyncio.wait({timer, room}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            room.cancel()

    async def _attempt(
        self,
        ep: Endpoint,
        messages: list[dict[str, str]],
        params: dict[str, Any],
        tokens: int,
        timeout: float,
    ) -> tuple[Reply | None, TransportError | None, float]:
        """One call to one endpoint: (reply, failure, latency); raises LLMError on a bug."""
        failure: TransportError | None = None
        reply: Reply | None = None
        charged = await ep.rates.acquire(tokens)  # before a slot: waiting here holds none
        epoch = await ep.limit.acquire()  # held only while a call is in flight, not in backoff
        self.in_flight += 1
        ep.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        ep.max_in_flight = max(ep.max_in_flight, ep.in_flight)
        t0 = time.perf_counter()
        try:
            # The transport has its own timeout; this one also covers a stuck connect,
            # with a grace second so the transport's clearer error usually fires first.
            reply = await aio.within(ep.send.send(messages, params, self._key(), timeout), timeout + 1.0)
        except TransportError as exc:
            failure = exc
        except (asyncio.TimeoutError, TimeoutError):
            failure = TransportError("retry", f"timeout after {timeout:g}s")
        except Exception as exc:  # noqa: BLE001 — a bug or a bad param type: no retry
            raise LLMError(
                f"{self.label}: unexpected {type(exc).__name__}: {self._scrub(str(exc))}"
            ) from None
        finally:
            self.in_flight -= 1
            ep.in_flight -= 1
            ep.limit.release(epoch, load_signal(failure))
            ep.rates.correct(charged, tokens_used(reply, charged))
        return reply, failure, time.perf_counter() - t0

    def _result(self, reply: Reply, attempts: int, latency: float, start: float) -> ChatResult:
        return ChatResult(
            text=reply.text,
            error=None if reply.text is not None else EMPTY_REPLY,  # content null: no answer
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            attempts=attempts,
            retries=attempts - 1,
            latency_s=latency,
            cost=float(reply.cost) if reply.cost is not None else None,
            extra={"finish_reason": reply.finish_reason, "elapsed_s": time.perf_counter() - start},
        )

    def _trip(self, error: str) -> None:
        """Circuit breaker: after `circuit_breaker` connection failures in a row nobody is
        listening, and retrying it for every row would only waste minutes: stop the run."""
        self.unreachable += 1
        limit = self.cfg.circuit_breaker
        if limit and self.unreachable >= limit:
            where = self.api_base or self.cfg.name
            if len(self.pool) > 1:
                where = f"any of its {len(self.pool)} endpoints"
            raise LLMError(
                f"{self.label}: cannot reach {where} ({self.unreachable} connection "
                f"failures in a row: {error}). Start the server or fix model.api_base "
                "/ model.name, then re-run into the same run dir to resume."
            )

    def _describe(self, failure: TransportError) -> str:
        head = f"HTTP {failure.status} " if failure.status else ""
        return f"{head}{self._scrub(failure.message)[:300]}"

    def _fatal_message(self, failure: TransportError, request: ChatRequest) -> str:
        where = f"{self.label} (stage '{request.stage}')" if request.stage else self.label
        said, status = self._scrub(failure.message), failure.status
        if status in (401, 403):
            env = self.cfg.api_key_env
            hint = (
                f"check the key in ${env}"
                if env
                else "set model.api_key_env to the name of the env var that holds the key"
            )
            return f"{where}: authentication failed (HTTP {status}) — {hint}. Server said: {said}"
        if status == 404:
            return f"{where}: not found (HTTP 404) — check model.name and model.api_base. Server said: {said}"
        return (
            f"{where}: the server rejected the request (HTTP {status}) — check the sampling "
            f"params and model.extra_params. Server said: {said}"
        )

    async def aclose(self) -> None:
        await self.pool.aclose()
