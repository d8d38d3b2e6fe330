"""`export`: write training views of the current rows in the shapes TRL takes as they are (docs/train.md).

kind × format → columns (TRL's dataset types):
  sft         conversational: messages [system?, user, assistant]  standard: prompt, completion
  completion  conversational: prompt [system?, user], completion [assistant]   standard: strings
  preference  conversational: prompt [system?, user], chosen/rejected [assistant]  standard: strings
  rows        the columns as they are
Rows whose text is not a string or is empty (or only whitespace), or holding a non-finite number,
are dropped (counted) or fail: a view never holds an empty turn.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.errors import ConfigError, StageError
from selfalign.stages.base import ROW_ID, Stage, register_stage

Format = Literal["conversational", "standard"]
FileFormat = Literal["jsonl", "parquet"]


@dataclass
class View:
    file: str = doc("output file name without extension (written in the run dir)")
    kind: Literal["rows", "sft", "completion", "preference"] = doc(
        "rows | sft (instruction → response) | completion (prompt/completion) | preference", "rows"
    )
    format: Format = doc(
        "conversational (message lists: TRL applies the chat template) | standard (plain strings)",
        "conversational",
    )
    columns: list[str] = doc("rows: columns to keep ([] = all)", factory=list)
    instruction: str = doc("sft: user-turn column", "instruction")
    response: str = doc("sft: assistant-turn column", "response")
    system: str | None = doc("sft/completion/preference: a fixed system message", None)
    system_column: str | None = doc("sft/completion/preference: per-row system message column", None)
    prompt: str = doc("completion/preference: prompt column", "prompt")
    completion: str = doc("completion: completion column", "completion")
    chosen: str = doc("preference: chosen column", "chosen")
    rejected: str = doc("preference: rejected column", "rejected")
    keep: list[str] = doc("extra columns carried into sft/completion/preference rows", factory=list)
    split: dict[str, float] = doc("seeded split, e.g. {train: 0.8, val: 0.1, test: 0.1}", factory=dict)
    formats: list[FileFormat] = doc("file formats", factory=lambda: ["jsonl"])
    on_invalid: Literal["drop", "fail"] = doc(
        "a row whose text is not a string (null, a number …), is empty or only whitespace, or "
        "that holds NaN/Infinity in a number: drop it (counted as VIEW:dropped:REASON) or fail "
        "the run",
        "drop",
    )

    def texts(self) -> dict[str, str]:
        """Role of each text this view wraps → its source column."""
        if self.kind == "sft":
            return {"user": self.instruction, "assistant": self.response}
        if self.kind == "completion":
            return {"user": self.prompt, "assistant": self.completion}
        if self.kind == "preference":
            return {"user": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        return {}

    def outputs(self) -> list[str]:
        """The view's own columns (before `keep`)."""
        if self.kind == "rows":
            return list(self.columns)
        if self.kind == "preference":
            return ["prompt", "chosen", "rejected"]
        if self.kind == "sft" and self.format == "conversational":
            return ["messages"]
        return ["prompt", "completion"]

    def needs(self) -> set[str]:
        base = set(self.keep) | ({self.system_column} if self.system_column else set())
        return base | set(self.texts().values()) | (set(self.columns) if self.kind == "rows" else set())


def _msgs(role: str, text: str) -> list[dict[str, str]]:
    return [{"role": role, "content": text}]


def _system(row: dict[str, Any], v: View) -> str | None:
    system = row.get(v.system_column) if v.system_column else v.system
    return system if isinstance(system, str) and system else None


def chat_row(row: dict[str, Any], v: View) -> dict[str, Any]:
    """One source row as the view's columns."""
    system, t = _system(row, v), {role: row[col] for role, col in v.texts().items()}
    if v.format == "standard":
        user = f"{system}\n\n{t['user']}" if system else t["user"]  # no template: plain prefix
        if v.kind == "preference":
            return {"prompt": user, "chosen": t["chosen"], "rejected": t["rejected"]}
        return {"prompt": user, "completion": t["assistant"]}
    prompt = (_msgs("system", system) if system else []) + _msgs("user", t["user"])
    if v.kind == "sft":
        return {"messages": prompt + _msgs("assistant", t["assistant"])}
    if v.kind == "preference":
        return {
            "prompt": prompt,
            "chosen": _msgs("assistant", t["chosen"]),
            "rejected": _msgs("assistant", t["rejected"]),
        }
    return {"prompt": prompt, "completion": _msgs("assistant", t["assistant"])}


def render_view(df: pd.DataFrame, v: View) -> pd.DataFrame:
    """The view's rows (no checks: see `invalid_rows`)."""
    if v.kind == "rows":
        return df[v.columns] if v.columns else df
    rows = [chat_row(r, v) for r in io.records(df)]
    out = pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype=object) for c in v.outputs()})
    for col in v.keep:
        out[col] = df[col].to_numpy()
    return out


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isinf(value)  # NaN is a missing value: written as null
    if isinstance(value, dict):
        return all(_finite(x) for x in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(x) for x in value)
    return True


def _text_problem(value: Any, column: str) -> str | None:
    if not isinstance(value, str):
        return f"non_string:{column}"
    return None if value.strip() else f"empty:{column}"


def invalid_rows(df: pd.DataFrame, v: View) -> tuple[list[bool], Counter[str], dict[str, str]]:
    """(bad mask, bad rows by reason, first row_id by reason). Bad: a text that is not a string
    or has no text (an empty turn would teach the model to answer nothing), a system column
    value that is neither a string nor missing, an infinite number anywhere."""
    texts = list(v.texts().values())
    other = v.keep + ((v.columns or list(df.columns)) if v.kind == "rows" else [])
    bad, counts, first = [], Counter[str](), {}
    for r in io.records(df):
        reasons = [_text_problem(r.get(c), c) for c in texts]
        reasons = [why for why in reasons if why]
        sys_value = r.get(v.system_column) if v.system_column else None
        if sys_value is not None and not isinstance(sys_value, str):
            reasons.append(f"non_string:{v.system_column}")
        reasons += [f"non_finite:{c}" for c in dict.fromkeys(other) if not _finite(r.get(c))]
        if reasons:  # a row is counted once, by its first problem
            counts[reasons[0]] += 1
            first.setdefault(reasons[0], str(r.get(ROW_ID, "?")))
        bad.append(bool(reasons))
    return bad, counts, first


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


def chat_types(v: View) -> dict[str, Any]:
    """Arrow types of the view's own columns, so every split file has the same schema."""
    import pyarrow as pa

    if v.kind == "rows":
        return {}
    if v.format == "standard":
        return {c: pa.string() for c in v.outputs()}
    message = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return {c: message for c in v.outputs()}


def write_view(
    frame: pd.DataFrame,
    stem_parts: dict[str, pd.DataFrame],
    run_dir: Any,
    formats: list[str],
    types: dict[str, Any],
) -> None:
    """Write each split of one view; Parquet files share the whole view's schema."""
    schema = io.arrow_table(frame, types).schema if "parquet" in formats else None
    for stem, sub in stem_parts.items():
        if "jsonl" in formats:
            io.write_jsonl(sub, run_dir / f"{stem}.jsonl")
        if "parquet" in formats:
            io.write_parquet(sub, run_dir / f"{stem}.parquet", schema)


@dataclass
class ViewFiles:
    """What one view writes, for the dataset card and `selfalign push`."""

    name: str
    kind: str
    format: str
    splits: dict[str, str] = field(default_factory=dict)  # split ("" = none) → file stem
    formats: list[str] = field(default_factory=list)


def stems(file: str, split: dict[str, float]) -> dict[str, str]:
    return {part: f"{file}.{part}" for part in split} if split else {"": file}


@dataclass
class ExportParams:
    views: list[View] = doc("views to write", factory=list)


@register_stage
class Export(Stage):
    """Writes each view under the run dir; passes its input rows through unchanged."""

    kind = "export"
    Params = ExportParams

    def __init__(self, name: str, params: ExportParams, ctx: Any, peers: Any = None) -> None:
        super().__init__(name, params, ctx, peers)
        self.views = list(params.views)
        for i, v in enumerate(self.views):
            if clash := sorted(set(v.keep) & set(v.outputs())):
                raise ConfigError(
                    f"{self.where}.views[{i}].keep: '{clash[0]}' is one of the view's own columns "
                    f"({', '.join(v.outputs())}). Remove it from keep (or rename the column first)."
                )

    def reads(self) -> set[str]:
        return set().union(*(v.needs() for v in self.views)) if self.views else set()

    def outputs(self) -> list[ViewFiles]:
        return [
            ViewFiles(v.file, v.kind, v.format, stems(v.file, v.split), list(v.formats)) for v in self.views
        ]

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        if self.ctx.run_dir is None:
            return df
        for i, v in enumerate(self.views):
            frame = render_view(self._valid(df, v, i), v)
            parts = split_frame(frame, v.split, self.ctx.seed) if v.split else {"": frame}
            named = {stems(v.file, v.split)[part]: sub for part, sub in parts.items()}
            write_view(frame, named, self.ctx.run_dir, list(v.formats), chat_types(v))
        return df

    def _valid(self, df: pd.DataFrame, v: View, i: int) -> pd.DataFrame:
        bad, counts, first = invalid_rows(df, v)
        if not counts:
            return df
        if v.on_invalid == "fail":
            what = "; ".join(f"{n} row(s) {why} (e.g. row_id {first[why]})" for why, n in counts.items())
            raise StageError(
                f"{self.where}.views[{i}] ({v.file}): {what}. TRL needs text to be non-empty "
                f"strings and numbers to be finite. Fix the stage that writes those columns, or set "
                f"{self.where}.views[{i}].on_invalid=drop."
            )
        for why, n in counts.items():
            self.ctx.stats.count(self.name, f"{v.file}:dropped:{why}", n)
        return df[[not b for b in bad]]
