"""Aligners training views: aligner text with separators, and inspector classification rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.stages.base import ROW_ID, Stage, register_stage
from selfalign.stages.export import ViewFiles, split_frame, stems, write_view


@dataclass
class AlignerTextParams:
    input: str = doc("question column x", "question")
    misaligned: str = doc("misaligned response column y", "misaligned")
    aligned: str = doc("aligned response column y′", "aligned")
    init_token: str = doc("separator before y", "[INIT]")
    aligned_token: str = doc("separator before y′ (the loss starts after it)", "[ALIGNED]")
    done_token: str = doc("end marker after y′", "[DONE]")
    domain: str | None = doc("value for a `domain` column (null = no column)", None)


def aligner_text(x: str, y: str, y2: str, p: AlignerTextParams) -> tuple[str, str, str]:
    """(text, prompt, completion) with text == prompt + completion: the trainer computes the
    loss on the completion only, i.e. the tokens after the [ALIGNED] separator."""
    prompt = f"{x} {p.init_token} {y} {p.aligned_token}"
    completion = f" {y2} {p.done_token}"
    return prompt + completion, prompt, completion


@register_stage
class AlignerText(Stage):
    """Adds aligner_text = `x [INIT] y [ALIGNED] y′ [DONE]`, split as aligner_prompt (through
    [ALIGNED]) and aligner_completion (the part the loss covers); the pipeline's `export`
    writes them as TRL's prompt/completion columns."""

    kind = "aligner_text"
    row_local = True
    Params = AlignerTextParams

    def reads(self) -> set[str]:
        p: AlignerTextParams = self.params
        return {p.input, p.misaligned, p.aligned}

    def writes(self) -> set[str]:
        extra = {"domain"} if self.params.domain is not None else set()
        return {"aligner_text", "aligner_prompt", "aligner_completion"} | extra

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: AlignerTextParams = self.params
        out = df.copy()
        triples = [
            aligner_text(str(x), str(y), str(y2), p)
            for x, y, y2 in zip(df[p.input], df[p.misaligned], df[p.aligned], strict=True)
        ]
        for i, col in enumerate(("aligner_text", "aligner_prompt", "aligner_completion")):
            out[col] = [t[i] for t in triples]
        if p.domain is not None:
            out["domain"] = p.domain
        return out


@dataclass
class InspectorParams:
    file: str = doc("output file stem (written in the run dir)", "inspector")
    input: str = doc("question column x", "question")
    misaligned: str = doc("misaligned response column y (label 0)", "misaligned")
    aligned: str = doc("aligned response column y′ (label 1)", "aligned")
    sep: str = doc("separator between x and the response", " [SEP] ")
    limit: int | None = doc("use at most this many pairs, the first ones (original: 70000)", None)
    split: dict[str, float] = doc(
        "seeded split of PAIRS (both rows of a pair stay together)",
        factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1},
    )
    keep: list[str] = doc("extra columns carried into each row", factory=list)
    formats: list[Literal["jsonl", "parquet"]] = doc("file formats", factory=lambda: ["jsonl"])


def inspector_rows(df: pd.DataFrame, p: InspectorParams) -> pd.DataFrame:
    """Two rows per pair: `x [SEP] y` → 0 (misaligned) and `x [SEP] y′` → 1 (aligned)."""
    records = []
    for r in io.records(df):
        base = {"pair_id": r[ROW_ID], **{k: r[k] for k in p.keep}}
        records.append({"text": f"{r[p.input]}{p.sep}{r[p.misaligned]}", "label": 0, **base})
        records.append({"text": f"{r[p.input]}{p.sep}{r[p.aligned]}", "label": 1, **base})
    return pd.DataFrame.from_records(records, columns=["text", "label", "pair_id", *p.keep])


@register_stage
class ExportInspector(Stage):
    """Writes inspector (binary classifier) data; passes its input rows through unchanged."""

    kind = "export_inspector"
    Params = InspectorParams

    def reads(self) -> set[str]:
        p: InspectorParams = self.params
        return {p.input, p.misaligned, p.aligned, ROW_ID, *p.keep}

    def outputs(self) -> list[ViewFiles]:
        p: InspectorParams = self.params
        return [ViewFiles(p.file, "classification", "standard", stems(p.file, p.split), list(p.formats))]

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: InspectorParams = self.params
        if self.ctx.run_dir is None:
            return df
        pairs = df.head(p.limit) if p.limit is not None else df
        parts = split_frame(pairs, p.split, self.ctx.seed) if p.split else {"": pairs}
        named = {stems(p.file, p.split)[part]: inspector_rows(sub, p) for part, sub in parts.items()}
        write_view(inspector_rows(pairs, p), named, self.ctx.run_dir, list(p.formats), {})
        return df
