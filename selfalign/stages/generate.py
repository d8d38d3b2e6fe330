"""`generate_text`: render a prompt per row, sample n completions, parse them, fan out."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from selfalign.config import doc
from selfalign.engine import Job, Outcome, Policy
from selfalign.parsers import get_parser, parser_fields
from selfalign.stages.base import PARENT_ID, ROW_ID, register_stage
from selfalign.stages.llm import PromptParams, RowLLMStage


@dataclass
class GenerateParams(PromptParams):
    output: str = doc("column for the parsed output", "text")
    n: int = doc("samples per row; n > 1 gives one row per sample (parent_id, sample)", 1)
    parser: Any = doc("parser: a name or {kind: NAME, ...options} (default: text)", None)
    explode_list: bool = doc("a list-valued output gives one row per item", False)
    keep_raw: bool = doc("also keep the raw model text in <output>_raw", False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 1:
            raise ValueError("`n` must be >= 1")


@register_stage
class GenerateText(RowLLMStage):
    """Prompt + optional system prompt, n samples per row, a parser with a failure policy."""

    kind = "generate_text"
    Params = GenerateParams

    def __init__(self, name: str, params: GenerateParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        fn, opts, self.parser_kind = get_parser(params.parser, f"{self.where}.parser")
        self.parse = partial(fn, **opts)
        self.extra_fields = parser_fields(self.parser_kind, opts)

    def writes(self) -> set[str]:
        p: GenerateParams = self.params
        out = {p.output} | {f"{p.output}_{f}" for f in self.extra_fields}
        if p.keep_raw:
            out.add(f"{p.output}_raw")
        if p.n > 1 or p.explode_list:
            out |= {PARENT_ID, "sample"}
        return out

    def policy(self) -> Policy:
        return Policy(parse=self.parse)

    def jobs(self, row: dict[str, Any]) -> list[Job]:
        msgs = self.render(row)
        return [self.job(row, j, messages=msgs) for j in range(self.params.n)]

    def columns(self, row: dict[str, Any], o: Outcome | None) -> list[dict[str, Any]]:
        p: GenerateParams = self.params
        assert o is not None  # every row asks n >= 1 samples
        base = {f"{p.output}_{f}": o.fields.get(f) for f in self.extra_fields}
        if p.keep_raw:
            base[f"{p.output}_raw"] = o.raw
        rid, j, values = str(row[ROW_ID]), o.job.sample, o.fields.get("value")
        if p.explode_list and isinstance(values, list):
            prefix = f"{rid}.{j}" if p.n > 1 else rid
            return [
                {**base, ROW_ID: f"{prefix}.{k}", PARENT_ID: rid, "sample": j, p.output: v}
                for k, v in enumerate(values)
            ]
        if p.n > 1 or p.explode_list:
            return [{**base, ROW_ID: f"{rid}.{j}", PARENT_ID: rid, "sample": j, p.output: values}]
        return [{**base, p.output: values}]
