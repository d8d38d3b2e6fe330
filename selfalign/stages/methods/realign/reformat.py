"""`reformat_response`: ReAlign's rewrite of each response into its task's format recipe (a Jinja
partial per task), with evidence when the row has some; n samples, keep the longest; rows whose
task has no recipe pass through without a model call."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from selfalign.config import doc
from selfalign.engine import Job, Outcome, Policy
from selfalign.errors import ConfigError
from selfalign.parsers.revised import parse_revised
from selfalign.prompts import Prompt
from selfalign.stages.base import register_stage
from selfalign.stages.llm import Columns, PromptParams, RowLLMStage
from selfalign.text import count_tokens

if TYPE_CHECKING:
    from selfalign.context import RunContext


@dataclass
class ReformatParams(PromptParams):
    prompt: str = doc("user prompt template", "realign/rewrite")
    system_prompt: str | None = doc("system prompt template (the rules)", "realign/rewrite_system")
    formats: str = doc("prompt folder of the per-task recipes: <formats>/<task>.j2", "realign/formats")
    question_column: str = doc("column with the query", "instruction")
    response_column: str = doc("column with the response to rewrite", "response")
    category_column: str = doc("column with the task label", "category")
    evidence_column: str = doc("column with evidence lists (optional: used when present)", "evidence")
    skip_categories: list[str] = doc(
        "labels never rewritten (the original skips default)", factory=lambda: ["default"]
    )
    adaptive: bool = doc(
        "ask the model first to judge whether the recipe fits (false = the original's non-adaptive ablation)",
        True,
    )
    n: int = doc("rewrites sampled per row", 2)
    pick: Literal["longest", "first"] = doc("which successful sample is kept (longest by tokens)", "longest")
    output: str = doc("column for the chosen rewrite (null for rows not rewritten)", "rewrite")
    keep_samples: bool = doc("also keep every parsed sample in <output>_samples", True)
    temperature: float | None = doc("sampling temperature", 0.3)
    top_p: float | None = doc("nucleus sampling", 1.0)
    max_tokens: int = doc("completion token limit", 512)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ValueError("`n` must be >= 1")


@register_stage
class ReformatResponse(RowLLMStage):
    """Per row: recipe for its task → n rewrites → longest kept; status says what happened."""

    kind = "reformat_response"
    Params = ReformatParams
    # the stage fills these from the row (by the *_column params) and from `adaptive`
    injected = frozenset({"question", "response", "category", "evidence", "format", "adaptive"})

    def __init__(self, name: str, params: ReformatParams, ctx: RunContext) -> None:
        super().__init__(name, params, ctx)
        self.formats = self._recipes(ctx, params.formats, f"{self.where}.formats")

    @staticmethod
    def _recipes(ctx: RunContext, folder: str, where: str) -> dict[str, Prompt]:
        """task → its recipe: every <folder>/<task>.j2 in the prompt folders."""
        prefix = folder.rstrip("/") + "/"
        found = {
            n[len(prefix) :]: ctx.prompts.get(n, where)
            for n in ctx.prompts.names()
            if n.startswith(prefix) and "/" not in n[len(prefix) :]
        }
        if not found:
            raise ConfigError(
                f"{where}: no recipe templates '{prefix}<task>.j2' in the prompt "
                "folders, so no row could be rewritten. Point it at a folder of "
                "recipes (the shipped one is realign/formats)."
            )
        return found

    def reads(self) -> set[str]:
        p: ReformatParams = self.params
        recipes = set().union(*(t.variables for t in self.formats.values()))
        extra = recipes - self.injected - set(p.vars) - {"row"}
        return {p.question_column, p.response_column, p.category_column} | (
            self.templates.variables() | extra
        )

    def writes(self) -> set[str]:
        return set(self.new_columns())

    def prompt_hashes(self) -> dict[str, str]:
        return {**self.templates.hashes(), **{t.name: t.sha256 for t in self.formats.values()}}

    def status(self, row: dict[str, Any]) -> str:
        """'todo' when the row is sent to the model; otherwise why it passes through."""
        p: ReformatParams = self.params
        cat = row.get(p.category_column)
        if cat in p.skip_categories:
            return "skipped_category"
        if cat not in self.formats:
            return "no_format"
        if not str(row.get(p.response_column) or "").strip():
            return "empty_response"
        return "todo"

    def render(self, row: dict[str, Any], role: str = "prompt", **extra: Any) -> list[dict[str, str]]:
        p: ReformatParams = self.params
        ev = row.get(p.evidence_column)
        given = {
            "question": row.get(p.question_column),
            "response": row.get(p.response_column),
            "adaptive": p.adaptive,
            "category": row.get(p.category_column),
            "evidence": [str(e) for e in ev] if isinstance(ev, list) else [],
            **extra,
        }
        # the recipe is a partial: rendered with the prompt's own values, then passed to it
        recipe = self.formats[given["category"]].render(**{**row, **self.templates.vars, "row": row, **given})
        return super().render(row, role, format=recipe, **given)

    def new_columns(self) -> list[str]:
        o = self.params.output
        return [o, f"{o}_reasoning", f"{o}_status"] + ([f"{o}_samples"] if self.params.keep_samples else [])

    def policy(self) -> Policy:
        return Policy(parse=parse_revised)

    def jobs(self, row: dict[str, Any]) -> list[Job]:
        if self.status(row) != "todo":
            return []  # passes through without a model call
        msgs = self.render(row)
        return [self.job(row, j, messages=msgs) for j in range(self.params.n)]

    def combine(self, row: dict[str, Any], outcomes: list[Outcome]) -> list[Columns]:
        """All samples of a row → one row: the chosen rewrite, and what happened."""
        p: ReformatParams = self.params
        cands = [
            {"sample": o.job.sample, "reasoning": o.fields.get("reasoning", ""), "revised_response": o.value}
            for o in outcomes
            if o.ok
        ]
        status = ("rewritten" if cands else "failed") if outcomes else self.status(row)
        best = cands
        if cands and p.pick == "longest":  # stable: ties go to the lower sample
            best = sorted(cands, key=lambda c: -count_tokens(c["revised_response"]))
        pick = best[0] if best else None
        out = {
            p.output: pick["revised_response"] if pick else None,
            f"{p.output}_reasoning": pick["reasoning"] if pick else None,
            f"{p.output}_status": status,
        }
        if p.keep_samples:
            out[f"{p.output}_samples"] = cands
        return [out]

    def report(self, out: pd.DataFrame) -> None:
        status = Counter(out[f"{self.params.output}_status"])
        self.ctx.console.log(f"{self.name}: " + ", ".join(f"{k}={v}" for k, v in sorted(status.items())))
