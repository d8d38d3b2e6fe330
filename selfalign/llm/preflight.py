"""Preflight: before stage 1, check every model endpoint the run will call.

For an OpenAI-compatible `api_base` it asks GET /models (no tokens spent): reachable, key
accepted, model served. For a hosted provider (no api_base) it checks offline that the key's env
var is set. The embedded and the test model need nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterable

from selfalign.llm.config import ModelConfig, endpoint_urls

TIMEOUT_S = 5.0
UNREACHABLE = "cannot reach the server"
log = logging.getLogger(__name__)


def _served_name(cfg: ModelConfig) -> str:
    return cfg.name.split("/", 1)[1] if cfg.name.startswith(("openai/", "hosted_vllm/")) else cfg.name


def _get_models(cfg: ModelConfig) -> tuple[int | None, bytes | str]:
    """(HTTP status, body) of GET {api_base}/models, or (None, why) when nothing answers."""
    url = str(cfg.api_base).rstrip("/") + "/models"
    req = urllib.request.Request(url)
    key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 — user's URL
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc))


def check_endpoint(label: str, cfg: ModelConfig) -> str | None:
    """One problem (a sentence naming the endpoint and the fix), or None when it looks fine."""
    if cfg.provider != "litellm":
        return None
    if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
        return (
            f"{label}: the API key variable ${cfg.api_key_env} is not set. Export it "
            f"(export {cfg.api_key_env}=...) before the run."
        )
    if not cfg.api_base:
        return None  # hosted: no free endpoint to ask; the key check above is what we can do
    status, body = _get_models(cfg)
    where = f"{label} at {cfg.api_base}"
    if status is None:
        return f"{where}: {UNREACHABLE} ({body}). Start it, or fix model.api_base. Nothing was called."
    if status in (401, 403):
        return (
            f"{where}: the server refused the key (HTTP {status}). Check "
            f"${cfg.api_key_env or '(no model.api_key_env set)'}."
        )
    if status != 200:
        return None  # no /models route (some servers): the run's first call will tell
    try:
        ids = [m.get("id") for m in json.loads(body).get("data", [])]
    except (ValueError, AttributeError):
        return None
    name = _served_name(cfg)
    if ids and name not in ids and cfg.name not in ids:
        return (
            f"{where}: model '{name}' is not served there. Served: "
            f"{', '.join(map(str, ids[:20]))}. Set model.name to one of them."
        )
    return None


async def preflight(models: Iterable[tuple[str, ModelConfig]]) -> list[str]:
    """Every endpoint's problem, checked concurrently (each at most TIMEOUT_S). Of a model with
    several `api_base` URLs, unreachable ones are only logged as warnings while one answers
    (the run takes them out); a wrong key or model at any of them is a problem."""
    seen: dict[tuple[str | None, str], tuple[str, ModelConfig]] = {}
    groups: list[list[tuple[str | None, str]]] = []
    for label, cfg in models:
        urls: list[str | None] = list(endpoint_urls(cfg.api_base)) or [None]
        keys = [(url, cfg.name) for url in urls]
        for url, key in zip(urls, keys, strict=True):
            seen.setdefault(key, (label, dataclasses.replace(cfg, api_base=url)))
        groups.append(keys)
    loop = asyncio.get_running_loop()
    checks = [loop.run_in_executor(None, check_endpoint, *seen[key]) for key in seen]
    found = dict(zip(seen, await asyncio.gather(*checks), strict=True))
    problems: list[str] = []
    for keys in groups:
        said = [found[k] for k in keys if found[k]]
        down = [p for p in said if UNREACHABLE in p]
        if len(keys) > 1 and len(down) < len(keys):
            for p in down:
                log.warning("%s The other endpoints take its share.", p.replace(" Nothing was called.", ""))
            said = [p for p in said if p not in down]
        problems += [p for p in said if p not in problems]
    return problems
