"""The providers' batch APIs, called directly over HTTP (aiohttp, like transport.py).

OpenAI: upload a JSONL file (POST /files, purpose=batch), create the batch (POST /batches),
poll GET /batches/{id}, download the output and error files (GET /files/{id}/content).
Anthropic: POST /messages/batches with every request inline, poll GET /messages/batches/{id},
read the JSONL at its `results_url`.

Why not litellm's batch functions: they cover OpenAI-style files + batches, but Anthropic message
batches only in part (no inline create, results in OpenAI's shape), and they would load litellm
(seconds of import) for six plain HTTP calls that are easier to test against a mock directly.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from selfalign.errors import LLMError
from selfalign.llm.base import ChatRequest
from selfalign.llm.budget import DEFAULT_MAX_TOKENS
from selfalign.llm.config import ModelConfig
from selfalign.llm.transport import Reply, _error_text

BASES = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1"}
KEY_ENVS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
MAX_REQUESTS = {"openai": 50_000, "anthropic": 100_000}  # per batch, the providers' limits
ANTHROPIC_VERSION = "2023-06-01"
TIMEOUT_S = 300.0  # one upload / download; large files take a while
# statuses, normalised: 'running', or how it ended
_OPENAI_ENDED = {"completed": "completed", "failed": "failed", "expired": "expired", "cancelled": "cancelled"}
REASONING = ("o1", "o3", "o4", "gpt-5")  # OpenAI models that take max_completion_tokens
# what a request that never ran says (OpenAI error codes, Anthropic result types)
UNFINISHED = {"batch_expired", "batch_cancelled", "expired", "canceled"}


def batch_api(cfg: ModelConfig) -> str | None:
    """'openai' or 'anthropic' when the model's provider has a batch API we speak, else None."""
    if cfg.provider != "litellm":
        return None
    prefix, _, rest = cfg.name.partition("/")
    if rest:
        return prefix if prefix in BASES else None
    if cfg.api_base:  # a bare name at an OpenAI-compatible server: it may have no /batches
        return None
    if cfg.name.startswith("claude"):
        return "anthropic"
    return "openai" if cfg.name.startswith(("gpt-", "o1", "o3", "o4", "chatgpt")) else None


def batch_problem(cfg: ModelConfig) -> str | None:
    """Why `batch: true` cannot work for this model (a sentence with the fix), or None."""
    if batch_api(cfg) is not None:
        return None
    return (
        f"model '{cfg.name}' (provider {cfg.provider}) has no batch API that selfalign speaks; "
        "batching works for OpenAI (name openai/… or gpt-…) and Anthropic (anthropic/… or "
        "claude-…) models. Set batch: false, or name an OpenAI-compatible server that "
        "implements /v1/batches as openai/NAME."
    )


@dataclass
class State:
    """A batch as last polled: normalised status, counts, and where the results are."""

    id: str
    status: str  # the provider's own word
    ended: str | None = None  # completed | expired | cancelled | failed, once it has ended
    done: int = 0
    total: int = 0
    files: list[str] = field(default_factory=list)  # OpenAI file ids / Anthropic results url
    errors: str = ""  # why a batch failed as a whole


@dataclass
class Item:
    """One request's result: a reply, an error (the request ran and failed), or unfinished."""

    key: str
    reply: Reply | None = None
    error: str | None = None
    unfinished: bool = False


class BatchAPI:
    def __init__(self, cfg: ModelConfig) -> None:
        kind = batch_api(cfg)
        if kind is None:
            raise LLMError(batch_problem(cfg) or "")
        self.kind, self.cfg = kind, cfg
        base = cfg.api_base[0] if isinstance(cfg.api_base, list) else cfg.api_base
        self.base = (base or BASES[kind]).rstrip("/")
        self.model = cfg.name.split("/", 1)[1] if "/" in cfg.name else cfg.name
        self.max_requests = MAX_REQUESTS[kind]
        env = cfg.api_key_env or KEY_ENVS[kind]
        self._env = env
        if not os.environ.get(env):
            raise LLMError(f"model '{cfg.name}': batch submission needs the key in ${env}; export it.")

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self._env, "")
        if self.kind == "anthropic":
            return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
        return {"Authorization": f"Bearer {key}"}

    async def _http(
        self, method: str, url: str, body: Any = None, upload: tuple[bytes, str] | None = None
    ) -> bytes:
        """One API call, retried with backoff on 429/5xx (and, for a GET, on connection errors:
        a POST that may have reached the server is not sent again, so no batch is made twice)."""
        url = url if url.startswith("http") else self.base + url
        for attempt in range(self.cfg.max_retries + 1):
            kw: dict[str, Any] = {"json": body} if body is not None else {}
            if upload is not None:  # a FormData is spent once sent: a new one per attempt
                form = aiohttp.FormData()
                form.add_field("purpose", "batch")
                form.add_field("file", upload[0], filename=upload[1], content_type="application/jsonl")
                kw["data"] = form
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http,
                    http.request(method, url, headers=self._headers(), **kw) as r,
                ):
                    raw, status = await r.read(), r.status
            except (aiohttp.ClientError, OSError) as exc:
                raw, status = f"{type(exc).__name__}: {exc}".encode(), 0
                if method != "GET":
                    break
            if status == 200:
                return raw
            if status and not (status == 429 or status >= 500):
                break
            if attempt < self.cfg.max_retries:
                await asyncio.sleep(min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2**attempt))
        said = _error_text(raw).replace(os.environ.get(self._env) or "\0", "***")
        raise LLMError(f"batch API {method} {url}: {f'HTTP {status}' if status else 'no answer'}: {said}")

    # ---- request bodies -----------------------------------------------------------------
    def body(self, req: ChatRequest) -> dict[str, Any]:
        params = {**self.cfg.extra_params, **req.param_dict}
        if not self.cfg.supports_json_schema or self.kind == "anthropic":
            params.pop("response_format", None)
        if self.kind == "openai":
            if self.model.startswith(REASONING) and "max_tokens" in params:
                params["max_completion_tokens"] = params.pop("max_tokens")  # what they accept
            return {"model": self.model, "messages": req.message_dicts, **params}
        params.pop("seed", None)  # Anthropic has no sampling seed
        if "stop" in params:
            params["stop_sequences"] = params.pop("stop")
        params.setdefault("max_tokens", DEFAULT_MAX_TOKENS)  # Anthropic requires it
        system = "\n\n".join(c for r, c in req.messages if r == "system")
        msgs = [{"role": r, "content": c} for r, c in req.messages if r != "system"]
        return {"model": self.model, "messages": msgs, **({"system": system} if system else {}), **params}

    # ---- submit / poll / results ---------------------------------------------------------
    async def submit(self, requests: dict[str, ChatRequest], stage: str) -> str:
        """Create a batch of `requests` (custom_id = cache key); returns the batch id."""
        if self.kind == "anthropic":
            reqs = [{"custom_id": k, "params": self.body(r)} for k, r in requests.items()]
            got = json.loads(await self._http("POST", "/messages/batches", {"requests": reqs}))
            return str(got["id"])
        lines = [
            json.dumps(
                {"custom_id": k, "method": "POST", "url": "/v1/chat/completions", "body": self.body(r)}
            )
            for k, r in requests.items()
        ]
        jsonl = ("\n".join(lines) + "\n").encode()
        upload = json.loads(await self._http("POST", "/files", upload=(jsonl, f"{stage}.jsonl")))
        create = {
            "input_file_id": upload["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"selfalign_stage": stage},
        }
        return str(json.loads(await self._http("POST", "/batches", create))["id"])

    async def poll(self, batch_id: str) -> State:
        if self.kind == "anthropic":
            b = json.loads(await self._http("GET", f"/messages/batches/{batch_id}"))
            counts = b.get("request_counts") or {}
            state = State(batch_id, b["processing_status"], total=sum(counts.values()))
            state.done = state.total - int(counts.get("processing", 0))
            if state.status == "ended":
                state.ended = (
                    "expired"
                    if counts.get("expired")
                    else "cancelled"
                    if counts.get("canceled")
                    else "completed"
                )
                state.files = [b.get("results_url") or f"/messages/batches/{batch_id}/results"]
            return state
        b = json.loads(await self._http("GET", f"/batches/{batch_id}"))
        counts = b.get("request_counts") or {}
        state = State(
            batch_id, b["status"], _OPENAI_ENDED.get(b["status"]), total=int(counts.get("total", 0))
        )
        state.done = int(counts.get("completed", 0)) + int(counts.get("failed", 0))
        state.files = [f for f in (b.get("output_file_id"), b.get("error_file_id")) if f]
        errs = (b.get("errors") or {}).get("data") or []
        state.errors = "; ".join(
            f"{e.get('code')}: {e.get('message')} (line {e.get('line')})" for e in errs[:5]
        )
        return state

    async def results(self, state: State) -> list[Item]:
        items: list[Item] = []
        for ref in state.files:
            url = ref if self.kind == "anthropic" else f"/files/{ref}/content"
            for line in (await self._http("GET", url)).decode().splitlines():
                if line.strip():
                    items.append(self._item(json.loads(line)))
        return items

    def _item(self, line: dict[str, Any]) -> Item:
        key = str(line.get("custom_id"))
        if self.kind == "anthropic":
            res = line.get("result") or {}
            if res.get("type") == "succeeded":
                msg = res.get("message") or {}
                text = "".join(b.get("text", "") for b in msg.get("content") or [] if b.get("type") == "text")
                usage = msg.get("usage") or {}
                return Item(key, Reply(text, usage.get("input_tokens", 0), usage.get("output_tokens", 0)))
            err = ((res.get("error") or {}).get("error")) or {}
            kind = str(res.get("type"))
            if kind in UNFINISHED:
                return Item(key, error=kind, unfinished=True)
            return Item(key, error=f"{err.get('type', kind)}: {err.get('message', '')}")
        if line.get("error"):
            code = str(line["error"].get("code"))
            return Item(
                key, error=f"{code}: {line['error'].get('message', '')}", unfinished=code in UNFINISHED
            )
        resp = line.get("response") or {}
        body = resp.get("body") or {}
        if resp.get("status_code") != 200:
            msg = (body.get("error") or {}).get("message", body)
            return Item(key, error=f"HTTP {resp.get('status_code')}: {msg}")
        try:
            choice = body["choices"][0]
            usage = body.get("usage") or {}
            reply = Reply(
                choice["message"].get("content"),
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                choice.get("finish_reason"),
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            return Item(key, error=f"malformed result line: {str(body)[:120]}")
        return Item(key, reply)
