"""`reformat_response`: rewrite each response into its task's format recipe (a Jinja partial per
task), with evidence when the row has some; n samples, keep the longest; rows whose task has no
recipe pass through without a model call."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.parsers.revised import parse_revised
from selfalign.prompts import Prompt
from selfalign.stages.base import ROW_ID, Stage, register_stage
from selfalign.stages.llm_util import Job, LLMParams, messages, run_jobs
from selfalign.text import count_tokens

# names the templates get from the stage (not row columns)
PROVIDED = {"question", "response", "category", "evidence", "format", "adaptive", "row"}


@dataclass
class ReformatParams(LLMParams):
    prompt: str = doc("user prompt template", "realign/rewrite")
    system_prompt: str | None = doc("system prompt template (the rules)", "realign/rewrite_system")
    formats: str = doc("prompt folder of the per-task recipes: <formats>/<task>.j2",
                       "realign/formats")
    question_column: str = doc("column with the query", "instruction")
    response_column: str = doc("column with the response to rewrite", "response")
    category_column: str = doc("column with the task label", "category")
    evidence_column: str = doc("column with evidence lists (optional: used when present)",
                               "evidence")
    skip_categories: list[str] = doc("labels never rewritten (the original skips default)",
                                     factory=lambda: ["default"])
    adaptive: bool = doc("ask the model first to judge whether the recipe fits (false = the "
                         "original's non-adaptive ablation)", True)
    n: int = doc("rewrites sampled per row", 2)
    pick: Literal["longest", "first"] = doc("which successful sample is kept (longest by tokens)",
                                            "longest")
    output: str = doc("column for the chosen rewrite (null for rows not rewritten)", "rewrite")
    keep_samples: bool = doc("also keep every parsed sample in <output>_samples", True)
    vars: dict[str, Any] = doc("constants visible to the templates", factory=dict)
    temperature: float | None = doc("sampling temperature", 0.3)
    top_p: float | None = doc("nucleus sampling", 1.0)
    max_tokens: int = doc("completion token limit", 512)
    retries: int = doc("new samples tried when an output cannot be parsed (bounded)", 2)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("`n` must be >= 1")
        if self.retries < 0:
            raise ValueError("`retries` must be >= 0")


@register_stage
class ReformatResponse(Stage):
    """Per row: recipe for its task → n rewrites → longest kept; status says what happened."""

    kind = "reformat_response"
    Params = ReformatParams
    uses_llm = True

    def __init__(self, name: str, params: ReformatParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.prompt: Prompt = ctx.prompts.get(params.prompt, f"{self.where}.prompt")
        self.system: Prompt | None = (ctx.prompts.get(params.system_prompt,
                                      f"{self.where}.system_prompt")
                                      if params.system_prompt else None)
        prefix = params.formats.rstrip("/") + "/"
        self.formats: dict[str, Prompt] = {
            n[len(prefix):]: ctx.prompts.get(n, f"{self.where}.formats")
            for n in ctx.prompts.names() if n.startswith(prefix) and "/" not in n[len(prefix):]}
        ctx.llm.check_ref(params.model, f"{self.where}.model")

    def _templates(self) -> list[Prompt]:
        return [self.prompt, *([self.system] if self.system else []), *self.formats.values()]

    def reads(self) -> set[str]:
        p: ReformatParams = self.params
        extra = set().union(*(t.variables for t in self._templates())) - PROVIDED - set(p.vars)
        return {p.question_column, p.response_column, p.category_column} | extra

    def writes(self) -> set[str]:
        o = self.params.output
        return {o, f"{o}_reasoning", f"{o}_status"} | (
            {f"{o}_samples"} if self.params.keep_samples else set())

    def prompt_hashes(self) -> dict[str, str]:
        return {t.name: t.sha256 for t in self._templates()}

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

    def render(self, row: dict[str, Any]) -> list[dict[str, str]]:
        p: ReformatParams = self.params
        ev = row.get(p.evidence_column)
        values = {**row, **p.vars, "row": row, "question": row.get(p.question_column),
                  "response": row.get(p.response_column), "adaptive": p.adaptive,
                  "category": row.get(p.category_column),
                  "evidence": [str(e) for e in ev] if isinstance(ev, list) else []}
        values["format"] = self.formats[values["category"]].render(**values)
        system = self.system.render(**values) if self.system else None
        return messages(self.prompt.render(**values), system)

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: ReformatParams = self.params
        rows = io.records(df)
        status = [self.status(r) for r in rows]
        jobs = [Job(str(r[ROW_ID]), self.render(r), j, (i, j))
                for i, r in enumerate(rows) if status[i] == "todo" for j in range(p.n)]
        picked: dict[int, list[dict[str, Any]]] = {}
        if jobs:
            with self.ctx.progress(self.name, 0) as prog:
                outcomes = await run_jobs(self.ctx, self.name, p, jobs, parse_revised, prog)
            for o in outcomes:
                i, j = o.job.tag
                if o.ok:
                    picked.setdefault(i, []).append(
                        {"sample": j, "reasoning": o.fields.get("reasoning", ""),
                         "revised_response": o.fields["value"]})
        return self._frame(df, status, picked)

    def _frame(self, df: pd.DataFrame, status: list[str],
               picked: dict[int, list[dict[str, Any]]]) -> pd.DataFrame:
        p: ReformatParams = self.params
        best: list[dict[str, Any] | None] = []
        for i, st in enumerate(status):
            cands = sorted(picked.get(i, []), key=lambda c: c["sample"])
            if st == "todo":
                status[i] = "rewritten" if cands else "failed"
            if cands and p.pick == "longest":  # stable: ties go to the lower sample
                cands = sorted(cands, key=lambda c: -count_tokens(c["revised_response"]))
            best.append(cands[0] if cands else None)
        out = df.copy()
        out[p.output] = [b["revised_response"] if b else None for b in best]
        out[f"{p.output}_reasoning"] = [b["reasoning"] if b else None for b in best]
        out[f"{p.output}_status"] = status
        if p.keep_samples:
            out[f"{p.output}_samples"] = pd.Series(
                [sorted(picked.get(i, []), key=lambda c: c["sample"]) for i in range(len(df))],
                index=df.index, dtype=object)
        self.ctx.console.log(f"{self.name}: " + ", ".join(
            f"{k}={v}" for k, v in sorted(Counter(status).items())))
        return out

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        rows = [r for r in io.records(df) if self.status(r) == "todo"]
        return [self.render(r) for r in rows[:k]]
