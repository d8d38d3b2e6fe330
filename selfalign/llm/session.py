"""LLMSession: named model clients for a run, wrapped with the response cache and accounting."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfalign.errors import ConfigError
from selfalign.llm.accounting import Accounting
from selfalign.llm.base import ChatRequest, ChatResult, LLMClient
from selfalign.llm.cache import ResponseCache
from selfalign.llm.config import ModelConfig
from selfalign.llm.local import SHA256 as EMBEDDED_SHA256
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
        from selfalign.llm.litellm_client import LiteLLMClient

        client = LiteLLMClient(cfg)
    _OPEN[key] = client
    return client


async def close_all() -> None:
    for client in list(_OPEN.values()):
        await client.aclose()
    _OPEN.clear()


class LLMSession:
    """What stages call: `await session.complete(stage, model_ref, requests, on_result)`."""

    def __init__(
        self,
        models: dict[str, ModelConfig],
        run_dir: Path,
        cache: ResponseCache | None,
        refresh_stages: set[str] | None = None,
    ) -> None:
        self.models = models
        self.run_dir = run_dir
        self.cache = cache
        self.refresh_stages = refresh_stages or set()
        self.accounting = Accounting()
        self._clients: dict[str, LLMClient] = {}

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
        """Part of every cache key: what decides the outputs, never a port or a secret."""
        cfg = self.model_config(ref)
        ident = f"{cfg.provider}:{cfg.name}@{cfg.api_base or ''}:{cfg.path or ''}"
        if cfg.provider == "local" and not cfg.path:
            ident += f"sha256={EMBEDDED_SHA256[:16]}"  # new bundled weights → new answers
        if cfg.extra_params:  # they change outputs; hashed, so nothing in them gets written
            blob = json.dumps(cfg.extra_params, sort_keys=True, default=str)
            ident += f"|xp={hashlib.sha256(blob.encode()).hexdigest()[:12]}"
        return ident

    async def _one(self, stage: str, ref: str | None, req: ChatRequest) -> ChatResult:
        ident = self.identity(ref)
        key = req.cache_key(ident)
        use_cache = self.cache is not None
        if use_cache and not req.refresh and stage not in self.refresh_stages:
            hit = self.cache.get(key)  # type: ignore[union-attr]
            if hit is not None:
                text, meta = hit
                return ChatResult(text=text, cached=True, model=ident,
                                  prompt_tokens=meta.get("prompt_tokens", 0),
                                  completion_tokens=meta.get("completion_tokens", 0))
        result = await self.client(ref).complete(req)
        result.model = ident
        if use_cache and result.ok:
            meta: dict[str, Any] = {"prompt_tokens": result.prompt_tokens,
                                    "completion_tokens": result.completion_tokens}
            self.cache.put(key, ident, result.text or "", meta)  # type: ignore[union-attr]
        return result

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

    async def call(self, stage: str, ref: str | None, req: ChatRequest) -> ChatResult:
        """One request through the cache, counted in the accounting."""
        res = await self._one(stage, ref, req)
        self.accounting.record(stage, res.model, res)
        return res
