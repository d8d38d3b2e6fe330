"""The LLM-stage base: shared params, named templates, the variable check and prompt hashes.

A concrete LLM stage declares its templates (`templates = {"prompt": "prompt"}`: role → the
params field naming the template), the variables it fills in itself (`injected`), and implements
`process(df)`, handing its jobs to `self.engine` (selfalign/engine.py), which sends, retries,
counts and rejects. No LLM stage renders, retries or writes rejected rows itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.engine import Engine, messages
from selfalign.errors import ConfigError
from selfalign.prompts import Prompt
from selfalign.stages.base import Stage, StageSpec

if TYPE_CHECKING:
    from selfalign.context import RunContext


@dataclass
class LLMParams:
    """Params every LLM stage shares: model, sampling, failure policy, system prompt, vars."""

    model: str | None = doc("named model from `models:` (null = the run's `model`)", None)
    temperature: float | None = doc("sampling temperature (null = backend default)", None)
    top_p: float | None = doc("nucleus sampling (null = backend default)", None)
    max_tokens: int = doc("completion token limit (always sent)", 256)
    stop: list[str] = doc("stop sequences", factory=list)
    seed: int | None = doc("backend sampling seed, where supported", None)
    extra: dict[str, Any] = doc("extra backend params, e.g. {repetition_penalty: 2}", factory=dict)
    retries: int = doc("new samples to try when the output cannot be parsed", 2)
    retry_temperature: float | None = doc(
        "temperature of those new samples (null = same as the first try)", None
    )
    on_failure: Literal["drop", "fail"] = doc("after retries: drop row (to rejected) or fail", "drop")
    json_schema: dict[str, Any] | None = doc("JSON schema for response_format (if supported)", None)
    system_prompt: str | None = doc("system prompt template name", None)
    vars: dict[str, Any] = doc("constants visible to the templates", factory=dict)
    max_failure_rate: float = doc(
        "stop the run when more than this share of the stage's calls "
        "failed (LLM error, or unparsable after every retry)",
        0.25,
    )
    batch: bool = doc(
        "send this stage's calls through the provider's batch API (OpenAI, Anthropic): "
        "half price, results within 24 h (docs/cost.md)",
        False,
    )
    batch_poll_s: float = doc("batch: seconds between status polls", 30.0)
    batch_max_wait_s: float | None = doc(
        "batch: stop waiting after this many seconds (exit 3; a re-run re-attaches); null = until it ends",
        None,
    )

    def __post_init__(self) -> None:
        if self.batch_poll_s <= 0:
            raise ValueError(f"`batch_poll_s` must be > 0 (got {self.batch_poll_s})")
        if self.batch_max_wait_s is not None and self.batch_max_wait_s < 0:
            raise ValueError(f"`batch_max_wait_s` must be >= 0 or null (got {self.batch_max_wait_s})")
        if self.retries < 0:
            raise ValueError("`retries` must be >= 0")
        if self.max_tokens < 1:
            raise ValueError("`max_tokens` must be >= 1")
        if self.temperature is not None and self.temperature < 0:
            raise ValueError(f"`temperature` must be >= 0 (got {self.temperature})")
        if self.retry_temperature is not None and self.retry_temperature < 0:
            raise ValueError(f"`retry_temperature` must be >= 0 (got {self.retry_temperature})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1] (got {self.top_p})")
        if not 0 <= self.max_failure_rate <= 1:
            raise ValueError(f"`max_failure_rate` must be between 0 and 1 (got {self.max_failure_rate})")

    def sampling(self, supports_json_schema: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.stop:
            out["stop"] = list(self.stop)
        if self.json_schema and supports_json_schema:
            out["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": self.json_schema},
            }
        out.update(self.extra)
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class PromptParams(LLMParams):
    """LLMParams for the common case of one user prompt."""

    prompt: str = doc("prompt template name, e.g. wizardlm_aaa/generate_instruction", "")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.prompt:
            raise ValueError("`prompt` is required (a template name)")


class Templates:
    """A stage's named templates plus its system prompt, rendered with the same values.

    Used by LLMStage, and by components that call a model for a stage (the judge's Scorer)."""

    def __init__(
        self,
        ctx: RunContext,
        params: Any,
        where: str,
        roles: dict[str, str],
        injected: frozenset[str] = frozenset(),
    ) -> None:
        get = ctx.prompts.get
        self.vars: dict[str, Any] = dict(getattr(params, "vars", {}) or {})
        self.injected = injected
        self.user: dict[str, Prompt] = {
            role: get(getattr(params, f), f"{where}.{f}") for role, f in roles.items()
        }
        name = getattr(params, "system_prompt", None)
        self.system: Prompt | None = get(name, f"{where}.system_prompt") if name else None
        ctx.llm.check_ref(getattr(params, "model", None), f"{where}.model")

    def all(self) -> list[Prompt]:
        return [*self.user.values(), *([self.system] if self.system else [])]

    def variables(self) -> set[str]:
        """Columns the templates read: their variables less vars, injected names and `row`."""
        names: set[str] = set()
        for p in self.all():
            names |= p.variables
        return names - set(self.vars) - self.injected - {"row"}

    def hashes(self) -> dict[str, str]:
        return {p.name: p.sha256 for p in self.all()}

    def render(self, role: str, row: dict[str, Any] | None = None, **extra: Any) -> list[dict[str, str]]:
        row = row or {}
        values = {**row, **self.vars, "row": row, **extra}
        system = self.system.render(**values) if self.system else None
        return messages(self.user[role].render(**values), system)


class LLMStage(Stage):
    """Base of every stage that calls a model. Subclasses set `templates`, `injected` and
    implement `process(df)` using `self.templates.render(...)` and `self.engine`."""

    uses_llm = True
    templates_of: ClassVar[dict[str, str]] = {"prompt": "prompt"}  # role → params field
    injected: ClassVar[frozenset[str]] = frozenset()  # variables the stage fills in itself

    def rowwise(self) -> bool:
        # a batched stage sends its requests as one provider batch: it needs all rows at once
        return super().rowwise() and not getattr(self.params, "batch", False)

    def __init__(
        self, name: str, params: Any, ctx: RunContext, peers: dict[str, StageSpec] | None = None
    ) -> None:
        super().__init__(name, params, ctx, peers)
        self.templates = Templates(ctx, params, self.where, self.templates_of, self.injected)
        self._engine: Engine | None = None
        self._running = 0  # chunks in process() now
        if getattr(params, "batch", False):
            from selfalign.llm.batch_api import batch_problem

            problem = batch_problem(ctx.llm.model_config(params.model))
            if problem:
                raise ConfigError(f"{self.where}.batch: {problem}")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError(f"{self.name}: the engine exists only while the stage runs")
        return self._engine

    def render(self, row: dict[str, Any], role: str = "prompt", **extra: Any) -> list[dict[str, str]]:
        return self.templates.render(role, row, **extra)

    def reads(self) -> set[str]:
        return self.templates.variables()

    def prompt_hashes(self) -> dict[str, str]:
        return self.templates.hashes()

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        return [self.render(row) for row in io.records(df.head(k))]

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        # A streamed segment runs this stage on several chunks at once: they share one engine,
        # which lives while any of them runs.
        with self.ctx.progress(self.name, 0) as prog:
            if self._engine is None:
                self._engine = Engine(self.ctx, self.name, self.params, prog)
            self._running += 1
            try:
                return await self.process(df)
            finally:
                self._running -= 1
                if not self._running:
                    self._engine = None
                    self.ctx.llm.batchers.pop(self.name, None)

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError
