"""The load stage's row checks, chunk by chunk: values of text columns that are not text
(`non_text`: fail, coerce or drop) and rows whose required values are empty (`on_missing`)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.errors import InputError
from selfalign.stages.load_params import LoadParams

_EXAMPLES = 5  # offending rows listed in a non-text error


class LoadRows:
    """Mixed into `Load`: it has `params` (LoadParams), `where`, `name`, `ctx` and `_text_columns`."""

    params: Any
    where: str
    name: str
    ctx: Any

    def _text_columns(self) -> list[str]:
        raise NotImplementedError  # Load's: the pipeline columns whose values are used as text

    def _non_text_message(self, count: int, examples: list[str]) -> str:
        more = f", and {count - len(examples)} more" if count > len(examples) else ""
        return (
            f"{self.params.path}: {count} value(s) used as text are not text: "
            f"{'; '.join(examples)}{more}. Fix the file, or set {self.where}.non_text=coerce "
            f"(write them as JSON text, counted) or {self.where}.non_text=drop (drop those "
            "rows, counted)."
        )

    def _text_values(self, df: pd.DataFrame) -> pd.DataFrame:
        """`non_text`: fail on, coerce or drop values of text columns that are not strings."""
        p: LoadParams = self.params
        bad: dict[str, pd.Series] = {}
        for col in self._text_columns():
            if col not in df.columns or isinstance(df[col].dtype, pd.StringDtype):
                continue
            mask = pd.Series(
                [not isinstance(v, str) and not _is_missing(v) for v in df[col]], index=df.index, dtype=bool
            )
            if mask.any():
                bad[col] = mask
        if not bad:
            return df
        if p.non_text == "fail":
            count = sum(int(m.sum()) for m in bad.values())
            examples = sorted((row, col) for col, m in bad.items() for row in m.index[m][:_EXAMPLES])
            raise InputError(
                self._non_text_message(
                    count,
                    [
                        f"row {row} '{col}': {io.value_type(df.at[row, col])} {io.short(df.at[row, col])}"
                        for row, col in examples[:_EXAMPLES]
                    ],
                )
            )
        df = df.copy()
        if p.non_text == "coerce":
            for col, mask in bad.items():
                df[col] = [
                    json.dumps(io._clean(v), ensure_ascii=False) if m else v
                    for v, m in zip(df[col], mask, strict=True)
                ]
                self.ctx.stats.count(self.name, f"coerced:{col}", int(mask.sum()))
            return df
        for col, mask in bad.items():
            mask = mask.reindex(df.index, fill_value=False)
            self.ctx.stats.drop(self.name, f"non_text:{col}", int(mask.sum()))
            df = df[~mask]
        return df

    def _drop_missing(self, df: pd.DataFrame) -> pd.DataFrame:
        p: LoadParams = self.params
        for col in p.required:
            if col not in df.columns:  # absent from this part of a JSON file: empty here
                df = df.assign(**{col: None})
            empty = blank_values(df[col])
            n = int(empty.sum())
            if n and p.on_missing == "fail":
                raise InputError(
                    f"{p.path}: column '{col}' is empty in {n} row(s) (first at row "
                    f"{int(empty.idxmax())}). Fill them, or set {self.where}.on_missing=drop."
                )
            self.ctx.stats.drop(self.name, f"empty:{col}", n)
            df = df[~empty]
        return df


def blank_values(values: pd.Series) -> pd.Series:
    """Missing, empty or whitespace-only values: no text to prompt with or to train on."""
    return values.isna() | (values.astype(str).str.strip() == "")


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)
