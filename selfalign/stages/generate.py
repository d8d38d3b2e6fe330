"""`generate_text`: render a prompt per row, sample n completions, parse them, fan out."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.engine import Job, Policy, drop_reason
from selfalign.parsers import get_parser, parser_fields
from selfalign.stages.base import PARENT_ID, ROW_ID, register_stage
from selfalign.stages.llm import LLMStage, PromptParams


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
class GenerateText(LLMStage):
    """Prompt + optional system prompt, n samples per row, a parser with a failure policy."""

    kind = "generate_text"
    row_local = True
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

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        p: GenerateParams = self.params
        rows = io.records(df)
        jobs = [
            Job(str(r[ROW_ID]), self.render(r), j, (i, j)) for i, r in enumerate(rows) for j in range(p.n)
        ]
        outcomes = await self.engine.run(jobs, Policy(parse=self.parse))
        out_rows: list[dict[str, Any]] = []
        for o in outcomes:
            i, j = o.job.tag
            if not o.ok:
                self.ctx.stats.drop(self.name, drop_reason(o.error))
                continue
            out_rows.extend(self._rows(rows[i], j, o.fields, o.raw))
        return pd.DataFrame.from_records(out_rows, columns=self._columns(df))

    def _columns(self, df: pd.DataFrame) -> list[str]:
        cols = list(df.columns)
        return cols + [c for c in sorted(self.writes()) if c not in cols]

    def _rows(
        self, row: dict[str, Any], j: int, fields: dict[str, Any], raw: str | None
    ) -> list[dict[str, Any]]:
        p: GenerateParams = self.params
        base = dict(row)
        for f in self.extra_fields:
            base[f"{p.output}_{f}"] = fields.get(f)
        if p.keep_raw:
            base[f"{p.output}_raw"] = raw
        rid = str(row[ROW_ID])
        values = fields.get("value")
        if p.explode_list and isinstance(values, list):
            prefix = f"{rid}.{j}" if p.n > 1 else rid
            return [
                {**base, ROW_ID: f"{prefix}.{k}", PARENT_ID: rid, "sample": j, p.output: v}
                for k, v in enumerate(values)
            ]
        if p.n > 1 or p.explode_list:
            return [{**base, ROW_ID: f"{rid}.{j}", PARENT_ID: rid, "sample": j, p.output: values}]
        return [{**base, p.output: values}]
