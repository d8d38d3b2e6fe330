"""The client interface every model backend implements, and the request/result records."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make.

    `params` are sampling params in OpenAI names (temperature, top_p, max_tokens, stop, seed,
    response_format, plus backend extras such as repetition_penalty). `sample` is the sample
    index: sample i of the same request is always sample i (it is part of the cache key).
    `stage` and `row_id` are for accounting and errors only, never part of the cache key.
    """

    messages: tuple[tuple[str, str], ...]
    params: tuple[tuple[str, Any], ...] = ()
    sample: int = 0
    stage: str = ""
    row_id: str = ""
    refresh: bool = False

    @staticmethod
    def make(
        messages: list[dict[str, str]] | list[tuple[str, str]],
        params: dict[str, Any] | None = None,
        sample: int = 0,
        stage: str = "",
        row_id: str = "",
        refresh: bool = False,
    ) -> ChatRequest:
        msgs = tuple((m["role"], m["content"]) if isinstance(m, dict) else (m[0], m[1]) for m in messages)
        items = tuple(sorted((k, _freeze(v)) for k, v in (params or {}).items() if v is not None))
        return ChatRequest(msgs, items, sample, stage, row_id, refresh)

    @property
    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    @property
    def param_dict(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.params}

    def cache_key(self, model_identity: str) -> str:
        """Content address: model identity + messages + sampling params + sample index."""
        payload = json.dumps(
            [model_identity, self.messages, self.param_dict, self.sample],
            sort_keys=True,
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return ("__dict__", tuple(sorted((k, _freeze(x)) for k, x in v.items())))
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "__dict__":
        return {k: _thaw(x) for k, x in v[1]}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


EMPTY_REPLY = "empty reply (no text)"


def blank(text: str | None) -> bool:
    """No answer: missing, empty or whitespace-only text. Such a reply is a failed attempt and is
    never cached (a greedy stage would otherwise get the same nothing back on every re-run)."""
    return text is None or not text.strip()


@dataclass
class ChatResult:
    """What came back: `text` on success, else `error` (the row goes to the rejected table)."""

    text: str | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    attempts: int = 1
    retries: int = 0
    latency_s: float = 0.0
    cost: float | None = None
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


@runtime_checkable
class LLMClient(Protocol):
    """An async chat backend. Implementations enforce their own concurrency limit.

    `complete` never raises for transient failures: after its retry budget it returns a
    ChatResult with `error` set. It raises LLMError only for failures no retry can fix
    (authentication, a malformed request, a server that will not start).
    """

    identity: str  # stable model identity, part of the cache key (never contains a secret)
    supports_json_schema: bool

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    async def aclose(self) -> None: ...
