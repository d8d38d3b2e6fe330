"""EndpointClient: one model's endpoints behind retries, backoff and a circuit breaker.

Below it (docs/architecture.md, "LLM layer"): endpoints.py picks the URL, limits.py holds its
slots and RPM/TPM buckets, a transport sends the bytes (transport.py direct, or litellm_adapter.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from selfalign import aio
from selfalign.errors import LLMError
from selfalign.llm.base import EMPTY_REPLY, ChatRequest, ChatResult
from selfalign.llm.config import ModelConfig, cache_url, endpoint_urls
from selfalign.llm.endpoints import Endpoint, EndpointPool, Sender
from selfalign.llm.failures import NO_KEY, describe, fatal_message, scrub
from selfalign.llm.limits import AdaptiveLimit, estimate_tokens, load_signal, tokens_used
from selfalign.llm.server_handle import ServerHandle
from selfalign.llm.transport import DirectTransport, Reply, TransportError

MAX_RETRY_AFTER_S = 600.0  # a Retry-After beyond this is a server bug, not a plan


class EndpointClient:
    """Any litellm model or OpenAI-compatible endpoint(s), `cfg.concurrency` calls in flight each.

    The API key is read from `os.environ[cfg.api_key_env]` at each call and is never stored on
    the object, so it cannot leak through repr, identity or pickled state. `server`: the embedded
    server this client talks to (stopped with the client when this run owns it).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        *,
        api_base: str | None = None,
        identity: str | None = None,
        transport: str | None = None,
        server: ServerHandle | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,  # tests record or skip backoffs
    ) -> None:
        from selfalign.llm.litellm_adapter import LiteLLMTransport, transport_kind

        self.cfg, self.server, self._sleep = cfg, server, sleep
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

        def make(url: str | None) -> Sender:
            if self.transport_kind == "direct":
                return DirectTransport(str(url), name)
            return LiteLLMTransport(dataclasses.replace(cfg, api_base=url))

        self.pool = EndpointPool(cfg, urls or [None], make)  # type: ignore[list-item]
        self.identity = identity or f"{self.transport_kind}:{cfg.name}@{self.api_base or ''}"
        self.supports_json_schema = cfg.supports_json_schema
        self.in_flight = 0  # across endpoints (each endpoint's own count is its limit's)
        self.max_in_flight = 0
        self.active = 0  # requests inside complete(), backoff included
        self.wanting = 0  # requests choosing an endpoint, waiting for a slot, or in flight
        self.unreachable = 0  # connection failures (refused / unknown host) since the last reply
        self._room: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __repr__(self) -> str:
        return f"EndpointClient({self.identity!r}, concurrency={self.cfg.concurrency})"

    def _key(self) -> str | None:
        if self.server is not None:  # the embedded server's per-run key
            return self.server.api_key
        if self.cfg.api_key_env:
            return os.environ.get(self.cfg.api_key_env) or None
        if self.api_base and self.transport_kind == "litellm":
            return NO_KEY  # the openai SDK under litellm refuses to run without one
        return None  # hosted via litellm: it reads its provider's own env var

    @property
    def limit(self) -> AdaptiveLimit:  # the (first) endpoint's
        return self.pool.endpoints[0].limit

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
                where = f"{self.label} (stage '{request.stage}')" if request.stage else self.label
                raise LLMError(fatal_message(where, failure, self._key(), self.cfg.api_key_env)) from None
            error = describe(failure, self._key())
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
            await self._sleep(delay)
            return
        if delay <= 0:
            return
        timer = asyncio.ensure_future(self._sleep(delay))
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
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
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
                f"{self.label}: unexpected {type(exc).__name__}: {scrub(str(exc), self._key())}"
            ) from None
        finally:
            self.in_flight -= 1
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
            many = len(self.pool) > 1
            where = f"any of its {len(self.pool)} endpoints" if many else self.api_base or self.cfg.name
            raise LLMError(
                f"{self.label}: cannot reach {where} ({self.unreachable} connection "
                f"failures in a row: {error}). Start the server or fix model.api_base "
                "/ model.name, then re-run into the same run dir to resume."
            )

    async def aclose(self) -> None:
        await self.pool.aclose()
        if self.server is not None:  # stops it only when this run owns it (ServerHandle.owner)
            self.server.stop()
