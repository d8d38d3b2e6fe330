"""How a chat request reaches an endpoint: the neutral reply/error records, and the lean direct
transport (aiohttp) used for OpenAI-compatible endpoints given by `model.api_base`.

Why a direct path beside litellm: litellm spends ~5 ms of CPU per call (param mapping, logging,
cost lookup, the openai SDK and httpx) against ~0.3 ms for a plain aiohttp POST. On a 2-core machine
that caps a run at ~200 calls/s and costs several % of wall time even at 1 s latency (see
benchmarks/README.md). A local vLLM or llama.cpp server speaks plain OpenAI JSON, so nothing of
litellm's translation is needed there; hosted providers still go through litellm.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

# Phrases servers use when a prompt does not fit (llama.cpp, vLLM, OpenAI, TGI): a per-row
# problem, not a reason to stop the run.
_CONTEXT_WORDS = (
    "context size",
    "context length",
    "context_length",
    "maximum context",
    "too many tokens",
    "exceeds the available context",
)


@dataclass
class Reply:
    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    cost: float | None = None


class TransportError(Exception):
    """A failed call, classified: kind is 'retry' (transient), 'unreachable' (connection refused
    or unknown host: retried, but it trips the client's circuit breaker), 'row' (only this
    request is bad) or 'fatal' (configuration: key, model name, params). `message` may hold
    server text; `body` the start of a 200's body that could not be read (for the rejected table)."""

    def __init__(
        self,
        kind: str,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind, self.status, self.message, self.retry_after = kind, status, message, retry_after
        self.body = body


# what a refused connection or a failed DNS look-up says, through litellm/httpx/openai
_UNREACHABLE = re.compile(
    r"connection refused|cannot connect to host|name or service not known|"
    r"nodename nor servname|getaddrinfo failed|name resolution|"
    r"no address associated|errno 111|errno -[23]\b",
    re.I,
)


def unreachable(exc: BaseException) -> bool:
    """True when an exception (or one it was raised from) says nobody listens at the address."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or _UNREACHABLE.search(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def classify_status(status: int, message: str) -> str:
    if status in (408, 409, 425, 429) or status >= 500:
        return "retry"
    if status in (400, 413, 422) and any(w in message.lower() for w in _CONTEXT_WORDS):
        return "row"
    return "fatal"


def parse_retry_after(value: str) -> float | None:
    """`Retry-After: 3` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` → seconds from now."""
    import email.utils
    import time

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


def retry_after_from(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI) or `Retry-After`, if the headers carry one."""
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
    except (AttributeError, TypeError, ValueError):
        return None
    return parse_retry_after(str(value)) if value is not None else None


def _error_text(raw: bytes) -> str:
    try:
        data = json.loads(raw)
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    except (ValueError, AttributeError):
        return raw[:300].decode(errors="replace")


MAX_RAW_BODY = 2000  # bytes of an unreadable body kept with the failure

_OPEN: weakref.WeakSet[DirectTransport] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    """Close pools a caller left open (e.g. no close_all()), so exit prints no aiohttp warnings."""
    for t in list(_OPEN):
        http, loop = t._http, t._loop
        if http is None or http.closed:
            continue
        if loop is not None and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(http.close())
        else:
            http.detach()


def split_headers(params: dict[str, Any], key: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """(body params, HTTP headers), as litellm reads `model.extra_params`: `api_key` is the key
    (the one from `api_key_env` wins, as there) and `headers` / `extra_headers` are HTTP
    headers, not body fields (which the server would log with the rest of the body)."""
    body = {k: v for k, v in params.items() if k not in ("api_key", "headers", "extra_headers")}
    key = key or params.get("api_key")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for name in ("headers", "extra_headers"):
        headers.update({str(k): str(v) for k, v in (params.get(name) or {}).items()})
    return body, headers


class DirectTransport:
    """POST {api_base}/chat/completions with aiohttp; one connection pool per event loop."""

    def __init__(self, api_base: str, model: str) -> None:
        self.url = api_base.rstrip("/") + "/chat/completions"
        self.model = model
        self._http: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        _OPEN.add(self)

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.closed:
            if self._http is not None and not self._http.closed:
                self._http.detach()  # its loop is gone; the sockets went with it
            # No pool limit: the client's semaphore already bounds connections in flight.
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            self._loop = loop
        return self._http

    async def send(
        self, messages: list[dict[str, str]], params: dict[str, Any], key: str | None, timeout_s: float
    ) -> Reply:
        params, headers = split_headers(params, key)
        body = {"model": self.model, "messages": messages, **params}
        try:
            async with self._session().post(
                self.url,
                json=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as r:
                raw = await r.read()
                status, resp_headers = r.status, r.headers
        except aiohttp.ClientConnectorError as exc:  # refused, no such host: nobody to talk to
            raise TransportError("unreachable", f"cannot connect: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:  # reset, disconnected …
            raise TransportError("retry", f"connection error: {type(exc).__name__}: {exc}") from None
        if status != 200:
            msg = _error_text(raw)
            raise TransportError(classify_status(status, msg), msg, status, retry_after_from(resp_headers))
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = choice["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            body = raw[:MAX_RAW_BODY].decode(errors="replace")
            raise TransportError("retry", f"malformed response body: {raw[:120]!r}", body=body) from None
        usage = data.get("usage") or {}
        return Reply(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
        )

    async def aclose(self) -> None:
        if self._http is not None and not self._http.closed:
            try:
                if self._loop is asyncio.get_running_loop():
                    await self._http.close()
                else:
                    self._http.detach()
            except RuntimeError:
                self._http.detach()
        self._http = None
