"""`export`: write training views of the current rows (rows, SFT messages, preference pairs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.stages.base import Stage, register_stage


@dataclass
class View:
    file: str = doc("output file name without extension (written in the run dir)")
    kind: Literal["rows", "sft", "preference"] = doc("rows | sft (messages) | preference", "rows")
    columns: list[str] = doc("rows: columns to keep ([] = all)", factory=list)
    instruction: str = doc("sft: user-turn column", "instruction")
    response: str = doc("sft: assistant-turn column", "response")
    system: str | None = doc("sft: a fixed system message", None)
    system_column: str | None = doc("sft: per-row system message column", None)
    prompt: str = doc("preference: prompt column", "prompt")
    chosen: str = doc("preference: chosen column", "chosen")
    rejected: str = doc("preference: rejected column", "rejected")
    keep: list[str] = doc("extra columns carried into sft/preference rows", factory=list)
    split: dict[str, float] = doc("seeded split, e.g. {train: 0.8, val: 0.1, test: 0.1}",
                                  factory=dict)
    formats: list[Literal["jsonl", "parquet"]] = doc("file formats", factory=lambda: ["jsonl"])

    def needs(self) -> set[str]:
        base = set(self.keep) | ({self.system_column} if self.system_column else set())
        if self.kind == "sft":
            return base | {self.instruction, self.response}
        if self.kind == "preference":
            return base | {self.prompt, self.chosen, self.rejected}
        return base | set(self.columns)


def render_view(df: pd.DataFrame, v: View) -> pd.DataFrame:
    if v.kind == "rows":
        return df[v.columns] if v.columns else df
    out = pd.DataFrame(index=df.index)
    if v.kind == "sft":
        def msgs(row: pd.Series) -> list[dict[str, str]]:
            system = row[v.system_column] if v.system_column else v.system
            head = [{"role": "system", "content": system}] if system else []
            return head + [{"role": "user", "content": row[v.instruction]},
                           {"role": "assistant", "content": row[v.response]}]
        out["messages"] = df.apply(msgs, axis=1) if len(df) else []
    else:  # TRL preference format
        out["prompt"], out["chosen"], out["rejected"] = df[v.prompt], df[v.chosen], df[v.rejected]
    for col in v.keep:
        out[col] = df[col]
    return out


def split_frame(df: pd.DataFrame, ratios: dict[str, float], seed: int) -> dict[str, pd.DataFrame]:
    """Seeded shuffle, then contiguous slices by ratio; the last split takes the remainder."""
    shuffled = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    total, out, start = sum(ratios.values()), {}, 0
    names = list(ratios)
    for i, name in enumerate(names):
        end = len(df) if i == len(names) - 1 else start + round(len(df) * ratios[name] / total)
        out[name] = shuffled.iloc[start:end]
        start = end
    return out


@dataclass
class ExportParams:
    views: list[View] = doc("views to write", factory=list)


@register_stage
class Export(Stage):
    """Writes each view under the run dir; passes its input rows through unchanged."""

    kind = "export"
    Params = ExportParams

    def __init__(self, name: str, params: ExportParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.views = list(params.views)

    def reads(self) -> set[str]:
        return set().union(*(v.needs() for v in self.views)) if self.views else set()

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        if self.ctx.run_dir is None:
            return df
        for v in self.views:
            frame = render_view(df, v)
            parts = split_frame(frame, v.split, self.ctx.seed) if v.split else {"": frame}
            for part, sub in parts.items():
                stem = f"{v.file}.{part}" if part else v.file
                if "jsonl" in v.formats:
                    io.write_jsonl(sub, self.ctx.run_dir / f"{stem}.jsonl")
                if "parquet" in v.formats:
                    io.write_parquet(sub, self.ctx.run_dir / f"{stem}.parquet")
        return df
