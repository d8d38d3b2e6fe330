"""How the endpoint client words a failed call: the server's words, scrubbed of secrets and of
litellm's stacked class names, and what to check for a failure no retry can fix."""

from __future__ import annotations

import re

from selfalign.llm.transport import TransportError
from selfalign.redact import redact_text

NO_KEY = "no-key"  # OpenAI-compatible local servers ignore the key, but some clients want one
# litellm stacks class names in front of the server's words ("litellm.BadRequestError:
# ContextWindowExceededError: OpenAIException - request (1530 tokens) exceeds …"): keep the words.
_PREFIXES = re.compile(r"^(?:litellm\.\w+:\s*|\w+(?:Error|Exception)(?::|\s+-)\s*)+")


def scrub(text: str, key: str | None) -> str:
    """`text` without the key in use, key-shaped strings or litellm's prefixes; 600 chars at most."""
    if key and key != NO_KEY:
        text = text.replace(key, "***")
    return _PREFIXES.sub("", redact_text(text))[:600]


def describe(failure: TransportError, key: str | None) -> str:
    """One line for the rejected table: the HTTP status and the server's (scrubbed) words."""
    head = f"HTTP {failure.status} " if failure.status else ""
    return f"{head}{scrub(failure.message, key)[:300]}"


def fatal_message(where: str, failure: TransportError, key: str | None, key_env: str | None) -> str:
    """A failure that stops the run (auth, not found, a rejected request) and what to fix."""
    said, status = scrub(failure.message, key), failure.status
    if status in (401, 403):
        hint = (
            f"check the key in ${key_env}"
            if key_env
            else "set model.api_key_env to the name of the env var that holds the key"
        )
        return f"{where}: authentication failed (HTTP {status}) — {hint}. Server said: {said}"
    if status == 404:
        return f"{where}: not found (HTTP 404) — check model.name and model.api_base. Server said: {said}"
    return (
        f"{where}: the server rejected the request (HTTP {status}) — check the sampling "
        f"params and model.extra_params. Server said: {said}"
    )
