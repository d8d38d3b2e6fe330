"""The litellm adapter: the only module that imports litellm (lazily, at first use).

An endpoint given by an OpenAI-compatible `api_base` uses the lean direct transport of
transport.py and never loads litellm; hosted providers (and `model.transport: litellm`) go
through LiteLLMTransport here. Also litellm's offline price map and tokenizers, for the budget's
estimate, and the choice between the two transports.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from selfalign.llm.config import ModelConfig, Price
from selfalign.llm.transport import Reply, TransportError, classify_status, retry_after_from, unreachable

# Without this, importing litellm fetches a price list from the internet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__all__ = ["LiteLLMTransport", "count_tokens", "litellm_price", "model_string", "transport_kind"]


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


class LiteLLMTransport:
    """A transport (endpoints.Sender) over `litellm.acompletion`; retries are the client's."""

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
