"""A deterministic offline model for tests (`model=test`): replies come from regex → Jinja rules.

The same request and sample index always give the same reply, so tests can assert on outputs.
Rule files in conf/test_model/*.yaml teach it the output shapes the shipped prompts expect
(a score line, a numbered list, JSON …); `model.rules` adds rules tried first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml

from selfalign.llm.base import ChatRequest, ChatResult
from selfalign.llm.config import ModelConfig

WORDS = [
    "river",
    "garden",
    "signal",
    "copper",
    "lantern",
    "harbor",
    "meadow",
    "quartz",
    "violin",
    "orbit",
    "canyon",
    "ember",
    "glacier",
    "thunder",
    "willow",
    "falcon",
    "prism",
    "marble",
    "compass",
    "summit",
]


def _rules_from_dir(rules_dir: Path) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted(rules_dir.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        rules.extend(data.get("rules", []))
    return rules


def _from_schema(schema: dict[str, Any], h: int) -> Any:
    """A value that satisfies a (simple) JSON schema, derived from the hash `h`."""
    if "enum" in schema:
        return schema["enum"][h % len(schema["enum"])]
    kind = schema.get("type", "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _from_schema(v, h // (i + 2) + i * 7919) for i, (k, v) in enumerate(props.items())}
    if kind == "array":
        return [_from_schema(schema.get("items", {}), h + i) for i in range(2)]
    if kind in ("integer", "number"):
        lo, hi = int(schema.get("minimum", 0)), int(schema.get("maximum", 100))
        return lo + h % (hi - lo + 1)
    if kind == "boolean":
        return bool(h % 2)
    return f"{WORDS[h % len(WORDS)]} {WORDS[(h // 7) % len(WORDS)]}"


class TestModel:
    """Offline, deterministic; concurrency-limited like a real backend."""

    supports_json_schema = True

    def __init__(self, cfg: ModelConfig, rules_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.identity = f"test/{cfg.name or 'default'}"
        self.rules = list(cfg.rules) + (_rules_from_dir(rules_dir) if rules_dir else [])
        self._compiled = [(re.compile(r["match"], re.S), r["reply"]) for r in self.rules]
        self._env = jinja2.Environment(autoescape=False, keep_trailing_newline=False)
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self.calls = 0

    def reply(self, request: ChatRequest) -> str:
        text = "\n".join(c for _, c in request.messages)
        last = next((c for r, c in reversed(request.messages) if r == "user"), text)
        digest = hashlib.sha256(f"{text}|{request.sample}|{request.params}".encode()).digest()
        h = int.from_bytes(digest[:8], "big")
        fmt = request.param_dict.get("response_format")
        for pattern, reply in self._compiled:
            m = pattern.search(text)
            if m:
                return (
                    self._env.from_string(reply)
                    .render(
                        h=h,
                        sample=request.sample,
                        prompt=last,
                        m=m,
                        words=WORDS,
                        word=lambda i=0: WORDS[(h // (i + 1)) % len(WORDS)],
                    )
                    .strip()
                )
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return json.dumps(_from_schema(fmt["json_schema"]["schema"], h))
        head = " ".join(last.split()[:12])
        return f"Test answer {h % 1000} ({WORDS[h % len(WORDS)]}): {head}."

    async def complete(self, request: ChatRequest) -> ChatResult:
        async with self._sem:
            if self.cfg.latency_s:
                await asyncio.sleep(self.cfg.latency_s)
            self.calls += 1
            text = self.reply(request)
        n_in = sum(len(c.split()) for _, c in request.messages)
        return ChatResult(
            text=text, prompt_tokens=n_in, completion_tokens=len(text.split()), model=self.identity
        )

    async def aclose(self) -> None:
        return None
