"""LLMSession: a run's named model clients behind the response cache, the budget and the accounting."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from selfalign.errors import ConfigError
from selfalign.llm.accounting import Accounting
from selfalign.llm.base import EMPTY_REPLY, ChatRequest, ChatResult, LLMClient, blank
from selfalign.llm.budget import Budget, BudgetSettings, completion_bound, prompt_token_bound
from selfalign.llm.cache import ResponseCache
from selfalign.llm.config import ModelConfig, Price, cache_url
from selfalign.llm.local import SHA256 as EMBEDDED_SHA256
from selfalign.redact import redact_text
from selfalign.registry import did_you_mean

DEFAULT = "default"
_OPEN: dict[tuple[str, str], LLMClient] = {}  # reused across the jobs of a multirun


def open_client(cfg: ModelConfig, run_dir: Path) -> LLMClient:
    """Make (or reuse) the client for a model config. Local servers start once per process."""
    key = (cfg.provider, repr(cfg))
    if key in _OPEN:
        return _OPEN[key]
    client: LLMClient
    if cfg.provider == "test":
        from selfalign.llm.testmodel import TestModel
        from selfalign.paths import resource_dir

        client = TestModel(cfg, resource_dir("conf") / "test_model")
    elif cfg.provider == "local":
        from selfalign.llm.local import start_local_client

        client = start_local_client(cfg, run_dir)
    else:
        from selfalign.llm.client import EndpointClient

        client = EndpointClient(cfg)
    _OPEN[key] = client
    return client


async def close_all() -> None:
    for client in list(_OPEN.values()):
        await client.aclose()
    _OPEN.clear()


class Batched(Protocol):
    """Where a batched stage's cache misses go (llm/batch.py's Batcher, owned by the engine)."""

    async def send(self, ref: str | None, req: ChatRequest, key: str) -> ChatResult: ...


def _checked(result: ChatResult) -> ChatResult:
    """Every reply passes here: an empty or whitespace-only completion is a failed attempt
    (the engine asks for a new sample), so it is never cached nor taken as an answer."""
    if result.error is None and blank(result.text):
        result.error = EMPTY_REPLY  # the text stays: the rejected table keeps what came back
    return result


class LLMSession:
    """What the engine (selfalign/engine.py) calls for each request, `await session.call(stage,
    model_ref, request)`; stages never call it. `complete` sends a list at once (the estimate)."""

    def __init__(
        self,
        models: dict[str, ModelConfig],
        run_dir: Path,
        cache: ResponseCache | None,
        refresh_stages: set[str] | None = None,
        budget: Budget | None = None,
        prices: dict[str, Price] | None = None,
    ) -> None:
        self.models = models
        self.run_dir = run_dir
        self.cache = cache
        self.refresh_stages = refresh_stages or set()
        self.accounting = Accounting()
        self.budget = budget or Budget(BudgetSettings())
        self.prices = prices or {}  # per model ref; fills in the cost a backend did not report
        self._clients: dict[str, LLMClient] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0  # calls sent (reserved) and not yet settled
        self.spent_usd = 0.0  # this attempt, for the progress bar
        self._identities: dict[str, tuple[ModelConfig, str]] = {}  # ref → (its config, identity)

    def check_ref(self, ref: str | None, where: str) -> None:
        name = ref or DEFAULT
        if name not in self.models:
            raise ConfigError(
                f"{where}: unknown model '{name}'.{did_you_mean(name, list(self.models))} "
                f"Define it under `models:` in the config, or use one of: {', '.join(self.models)}."
            )

    def model_config(self, ref: str | None) -> ModelConfig:
        return self.models[ref or DEFAULT]

    def client(self, ref: str | None) -> LLMClient:
        name = ref or DEFAULT
        if name not in self._clients:
            self._clients[name] = open_client(self.models[name], self.run_dir)
        return self._clients[name]

    def identity(self, ref: str | None) -> str:
        """Part of every cache key: what decides the outputs, never a port or a secret. Worked
        out once per model config (every call asks, and redacting the URL was a tenth of a
        cached call); a ref given a new config, as a Ray worker does, is worked out again."""
        cfg = self.model_config(ref)
        known = self._identities.get(ref or DEFAULT)
        if known is None or known[0] is not cfg:
            known = self._identities[ref or DEFAULT] = (cfg, self._identity(cfg))
        return known[1]

    @staticmethod
    def _identity(cfg: ModelConfig) -> str:
        url = redact_text(cache_url(cfg.api_base))  # a token in the URL is no part of the answer
        ident = f"{cfg.provider}:{cfg.name}@{url}:{cfg.path or ''}"
        if cfg.provider == "local" and not cfg.path:
            ident += f"sha256={EMBEDDED_SHA256[:16]}"  # new bundled weights → new answers
        if cfg.extra_params:  # they change outputs; hashed, so nothing in them gets written
            blob = json.dumps(cfg.extra_params, sort_keys=True, default=str)
            ident += f"|xp={hashlib.sha256(blob.encode()).hexdigest()[:12]}"
        return ident

    async def _one(
        self, stage: str, ref: str | None, req: ChatRequest, batcher: Batched | None
    ) -> ChatResult:
        ident = self.identity(ref)
        key = req.cache_key(ident)
        use_cache = self.cache is not None
        if use_cache and not req.refresh and stage not in self.refresh_stages:
            hit = self.cache.get(key)  # type: ignore[union-attr]
            # an empty answer stored by an older version is no answer: ask again (a usable
            # reply then replaces it)
            if hit is not None and not blank(hit[0]):
                text, meta = hit
                return ChatResult(
                    text=text,
                    cached=True,
                    model=ident,
                    prompt_tokens=meta.get("prompt_tokens", 0),
                    completion_tokens=meta.get("completion_tokens", 0),
                )
        if batcher is not None:  # batch: true — it caches what comes back itself
            return _checked(await batcher.send(ref, req, key))
        result = _checked(await self._send(ref, req))
        result.model = ident
        if use_cache and result.ok:
            meta: dict[str, Any] = {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
            }
            self.cache.put(key, ident, result.text or "", meta)  # type: ignore[union-attr]
        return result

    async def _send(self, ref: str | None, req: ChatRequest) -> ChatResult:
        """A cache miss: reserve its worst case, send it, settle to what it really used."""
        name = ref or DEFAULT
        if not self.budget.active:
            return self._priced(name, await self.client(ref).complete(req))
        # Reserve only once a concurrency slot is free: requests still queued for a slot hold
        # no reservation, so the budget is not used up by calls that have not been sent.
        async with self._slot(name):
            res = self.budget.reserve(*self._worst(name, req))
            self.in_flight += 1
            try:
                result = self._priced(name, await self.client(ref).complete(req))
            except BaseException:
                self.budget.settle(res, 0.0, 0)
                raise
            finally:
                self.in_flight -= 1
            self.budget.settle(res, result.cost or 0.0, result.prompt_tokens + result.completion_tokens)
            return result

    def _slot(self, name: str) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop is not self._slots_loop:  # asyncio primitives bind to one event loop
            self._slots, self._slots_loop = {}, loop
        if name not in self._slots:
            self._slots[name] = asyncio.Semaphore(self.models[name].total_concurrency)
        return self._slots[name]

    def _worst(self, name: str, req: ChatRequest) -> tuple[float, int]:
        prompt, completion = prompt_token_bound(req), completion_bound(req, self.models[name])
        price = self.prices.get(name)
        return (price.cost(prompt, completion) if price else 0.0), prompt + completion

    def _priced(self, name: str, result: ChatResult) -> ChatResult:
        price = self.prices.get(name)
        if result.cost is None and price is not None:
            result.cost = price.cost(result.prompt_tokens, result.completion_tokens)
        return result

    async def drain(self) -> None:
        """Wait until every call already sent has come back (after a budget stop)."""
        while self.in_flight:
            await asyncio.sleep(0.02)

    def spare(self) -> int:
        """Slots the clients could fill now while their requests wait out backoffs (the
        streaming runner admits that many more rows; stream.py says why)."""
        return sum(self._ask("spare"))

    def _ask(self, method: str) -> list[Any]:
        """What each client that has `method` answers (the test and local clients lack some)."""
        return [m() for c in self._clients.values() if callable(m := getattr(c, method, None))]

    def endpoint_stats(self) -> dict[str, dict[str, Any]]:
        """Per model ref with several endpoints: per URL counts of this attempt (the manifest)."""
        out = {}
        for name, client in self._clients.items():
            stats = getattr(client, "endpoint_stats", None)
            if callable(stats) and (found := stats()):
                out[name] = found
        return out

    def status(self) -> str:
        """Live figures for the progress bar: $ spent (and the budget), current concurrency."""
        parts = [
            self.budget.status()
            if self.budget.active
            else (f"${self.spent_usd:.4f}" if self.spent_usd else "")
        ]
        parts += self._ask("concurrency_status")
        return " · ".join(p for p in parts if p)

    async def complete(
        self,
        stage: str,
        ref: str | None,
        requests: list[ChatRequest],
        on_result: Callable[[ChatResult], None] | None = None,
    ) -> list[ChatResult]:
        """Submit every request at once; the client's own limit keeps the backend saturated."""

        async def run(req: ChatRequest) -> ChatResult:
            res = await self.call(stage, ref, req)
            if on_result is not None:
                on_result(res)
            return res

        return list(await asyncio.gather(*(run(r) for r in requests)))

    async def call(
        self, stage: str, ref: str | None, req: ChatRequest, batcher: Batched | None = None
    ) -> ChatResult:
        """One request through the cache, counted in the accounting; a cache miss goes to
        `batcher` when the stage's engine has one (batch: true), else to the model's client."""
        res = await self._one(stage, ref, req, batcher)
        self.spent_usd += res.cost or 0.0
        self.accounting.record(stage, res.model, res)
        return res
