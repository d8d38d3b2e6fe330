"""Aligners responses: misaligned y, critique and aligned y′ from one completion, and cleanup."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.errors import ConfigError
from selfalign.parsers.critique import marker_pattern, parse_critique_correction
from selfalign.stages.base import ROW_ID, Stage, register_stage
from selfalign.stages.generate import PromptStage
from selfalign.stages.llm_util import Job, LLMParams, drop_reason, messages, run_jobs


@dataclass
class CritiqueParams(LLMParams):
    prompt: str = doc("template (principles + demonstrations in the domain's markers)", "")
    system_prompt: str | None = doc("system prompt template name", None)
    vars: dict[str, Any] = doc("constants visible to the templates", factory=dict)
    critique_marker: str = doc("label before the critique (templates get it as a variable)",
                               "Critique:")
    correction_marker: str = doc("label before the aligned response (also a variable)",
                                 "Correction:")
    strip_labels: list[str] = doc("labels removed from the start of the misaligned response",
                                  factory=lambda: ["Response:"])
    cut_at: list[str] = doc("labels at a line start that end the aligned response",
                            factory=lambda: ["Input:"])
    misaligned: str = doc("output column: misaligned response y", "misaligned")
    critique: str = doc("output column: critique", "critique")
    aligned: str = doc("output column: aligned response y′", "aligned")

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("`prompt` is required (a template name)")
        a, b = self.critique_marker.strip(), self.correction_marker.strip()
        if not a or not b or marker_pattern(a).match(b) or marker_pattern(b).match(a):
            raise ValueError(f"critique_marker {self.critique_marker!r} and correction_marker "
                             f"{self.correction_marker!r} must be non-empty and neither may "
                             "match the other (the split would be ambiguous)")


@register_stage
class CritiqueAndCorrect(PromptStage):
    """One completion per row → misaligned response, critique, aligned response. The markers
    are parameters AND template variables, so demonstrations and parser cannot disagree."""

    kind = "critique_and_correct"
    Params = CritiqueParams
    MARKERS = ("critique_marker", "correction_marker")

    def __init__(self, name: str, params: CritiqueParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        missing = [m for m in self.MARKERS if m not in self.prompt.variables]
        if missing:
            raise ConfigError(
                f"{self.where}.prompt: template '{params.prompt}' never uses {missing}; its "
                "demonstrations must be written with {{ critique_marker }} and "
                "{{ correction_marker }} so they match what the parser looks for.")
        self.parse = partial(parse_critique_correction, critique_marker=params.critique_marker,
                             correction_marker=params.correction_marker,
                             strip_labels=params.strip_labels, cut_at=params.cut_at)

    def reads(self) -> set[str]:
        return self.template_vars() - set(self.MARKERS)

    def writes(self) -> set[str]:
        p: CritiqueParams = self.params
        return {p.misaligned, p.critique, p.aligned}

    def render(self, row: dict[str, Any]) -> list[dict[str, str]]:
        p: CritiqueParams = self.params
        values = {**row, **p.vars, "row": row, "critique_marker": p.critique_marker,
                  "correction_marker": p.correction_marker}
        system = self.system.render(**values) if self.system else None
        return messages(self.prompt.render(**values), system)

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: CritiqueParams = self.params
        rows = io.records(df)
        jobs = [Job(str(r[ROW_ID]), self.render(r), 0, i) for i, r in enumerate(rows)]
        with self.ctx.progress(self.name, 0) as prog:
            outcomes = await run_jobs(self.ctx, self.name, p, jobs, self.parse, prog)
        out = []
        for o in outcomes:
            if not o.ok:
                self.ctx.stats.drop(self.name, drop_reason(o.error))
                continue
            out.append({**rows[o.job.tag], p.misaligned: o.fields["value"],
                        p.critique: o.fields["critique"], p.aligned: o.fields["aligned"]})
        cols = list(df.columns) + [c for c in (p.misaligned, p.critique, p.aligned)
                                   if c not in df.columns]
        return pd.DataFrame.from_records(out, columns=cols)


@dataclass
class StripParams:
    columns: list[str] = doc("text columns to clean")
    remove: list[str] = doc("substrings removed wherever they occur (case-sensitive)",
                            factory=list)
    strip: bool = doc("then strip surrounding whitespace", True)


@register_stage
class StripSubstrings(Stage):
    """Remove fixed substrings from text columns, then strip (a transform; never drops rows)."""

    kind = "strip_substrings"
    Params = StripParams

    def reads(self) -> set[str]:
        return set(self.params.columns)

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: StripParams = self.params
        out = df.copy()
        for col in p.columns:
            s = out[col].fillna("").astype(str)
            for sub in p.remove:
                s = s.str.replace(sub, "", regex=False)
            out[col] = s.str.strip() if p.strip else s
        return out
