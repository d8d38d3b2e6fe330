"""A deterministic offline model for tests (`model=test`): replies come from regex → Jinja rules.

The same request and sample index always give the same reply, so tests can assert on outputs.
Rule files in conf/test_model/*.yaml teach it the output shapes the shipped prompts expect
(a score line, a numbered list, JSON …); `model.rules` adds rules tried first.

Scripted replies and the request history
----------------------------------------
A test can also say exactly what the model answers, without crafting input text that happens
to match a rule, and see exactly what was asked. While a `Script` is active (the `test_model`
pytest fixture activates a fresh one per test; `scripted()` does the same as a context manager),
every TestModel client:

* answers from the script's queue first: `script.queue("a", "b")` makes the next two calls
  answer "a" then "b", in the order the calls reach the model; `queue(..., model="judge")`
  fills a queue only the test model named "judge" (`ModelConfig.name`) takes from, tried before
  the shared one; `queue(..., stage="j", row="0")` fills a queue only the calls of stage "j"
  for row "0" take from (either alone works too), so a test says what each row's calls get
  whatever order the rows run in. A call takes from the most specific non-empty queue (model,
  then stage, then row). When the queues are empty the rules answer, as without a script;
* records every call in `script.requests`, in order: a `Recorded` with the model name, stage,
  row_id, sample index, the messages (role/content dicts), the sampling params, the reply and
  whether it came from the queue. `script.for_stage(name)` filters by stage.

```python
def test_fallback_label(ctx, test_model):
    test_model.queue("I am not sure.")
    out = run_stage(make_stage("classify_text", ctx, "c"), df)
    assert out.category[0] == "default"
    assert "Task type:" in test_model.requests[0].user
```

Only calls that reach the model are seen: a response-cache hit (an identical request within
the same test, or `cache.enabled=true` across runs) consumes no reply and is not recorded.
The hook lives here only: `open_client` builds TestModel as before and the active script is
looked up at each call, so clients reused across runs (session._OPEN) follow it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Recorded:
    """One call that reached a test model, as the script saw it."""

    model: str  # ModelConfig.name of the test model
    stage: str
    row_id: str
    sample: int
    messages: list[dict[str, str]]
    params: dict[str, Any]
    reply: str
    scripted: bool  # the reply came from a queue (else from the rules)

    @property
    def system(self) -> str | None:
        return next((m["content"] for m in self.messages if m["role"] == "system"), None)

    @property
    def user(self) -> str:
        """The last user message."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


@dataclass
class Script:
    """Queued replies for the test models and the history of their requests."""

    requests: list[Recorded] = field(default_factory=list)
    # keyed by (model, stage, row_id); None in a place = any
    _queues: dict[tuple[str | None, str | None, str | None], deque[str]] = field(default_factory=dict)

    def queue(
        self, *replies: str, model: str | None = None, stage: str | None = None, row: str | None = None
    ) -> Script:
        """Answer the next calls with `replies`, in order; `model`, `stage` and `row` (a row_id)
        limit them to the calls of that model, stage and row."""
        for text in replies:
            if not isinstance(text, str):
                raise TypeError(f"a scripted reply must be a str, not {type(text).__name__}")
        self._queues.setdefault((model, stage, row), deque()).extend(replies)
        return self

    def pending(self, model: str | None = None, stage: str | None = None, row: str | None = None) -> int:
        """Replies still queued in exactly that queue (the shared one by default)."""
        return len(self._queues.get((model, stage, row), ()))

    def for_stage(self, stage: str) -> list[Recorded]:
        return [r for r in self.requests if r.stage == stage]

    def clear(self) -> None:
        self.requests.clear()
        self._queues.clear()

    def take(self, model: str, stage: str = "", row: str = "") -> str | None:
        """The next queued reply for this call: the most specific non-empty queue that matches
        (the model's own before the shared ones, then by stage, then by row)."""
        for m in (model, None):
            for s in (stage, None):
                for r in (row, None):
                    q = self._queues.get((m, s, r))
                    if q:
                        return q.popleft()
        return None


_ACTIVE: Script | None = None


def active_script() -> Script | None:
    return _ACTIVE


@contextmanager
def scripted(script: Script | None = None) -> Iterator[Script]:
    """Activate `script` (a new one by default) for every TestModel until the block ends."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, script if script is not None else Script()
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = previous


class TestModel:
    """Offline, deterministic; concurrency-limited like a real backend."""

    __test__ = False  # not a pytest test class
    supports_json_schema = True

    def __init__(self, cfg: ModelConfig, rules_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.identity = f"test/{cfg.name or 'default'}"
        self.rules = list(cfg.rules) + (_rules_from_dir(rules_dir) if rules_dir else [])
        self._compiled = [(re.compile(r["match"], re.S), r["reply"]) for r in self.rules]
        self._env = jinja2.Environment(autoescape=False, keep_trailing_newline=False)
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self.calls = 0
        self._templates: dict[str, jinja2.Template] = {}

    def _template(self, source: str) -> jinja2.Template:
        """A reply rule's template, compiled once (compiling is most of a call's CPU time)."""
        if source not in self._templates:
            self._templates[source] = self._env.from_string(source)
        return self._templates[source]

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
                    self._template(reply)
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
        # The script is read and the call recorded before any await: queued replies go out,
        # and `script.requests` lists the calls, in the order the calls were made.
        script = _ACTIVE
        queued = script.take(self.cfg.name, request.stage, request.row_id) if script is not None else None
        text = queued if queued is not None else self.reply(request)
        if script is not None:
            script.requests.append(
                Recorded(
                    model=self.cfg.name,
                    stage=request.stage,
                    row_id=request.row_id,
                    sample=request.sample,
                    messages=request.message_dicts,
                    params=request.param_dict,
                    reply=text,
                    scripted=queued is not None,
                )
            )
        async with self._sem:
            if self.cfg.latency_s:
                await asyncio.sleep(self.cfg.latency_s)
            self.calls += 1
        n_in = sum(len(c.split()) for _, c in request.messages)
        return ChatResult(
            text=text, prompt_tokens=n_in, completion_tokens=len(text.split()), model=self.identity
        )

    async def aclose(self) -> None:
        return None
