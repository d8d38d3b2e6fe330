"""`load`: read a dataset file into rows with stable row ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.errors import InputError
from selfalign.stages.base import ROW_ID, Stage, register_stage


@dataclass
class LoadParams:
    path: str = doc("input file (JSONL, JSON, CSV, Parquet, .txt lines) or a folder of .txt files")
    format: Literal["jsonl", "json", "csv", "parquet", "text"] | None = doc(
        "file format (null = from the extension)", None)
    text_column: str = doc("column name for plain-text input", "text")
    rename: dict[str, str] = doc("map input column → pipeline column, e.g. {prompt: instruction}",
                                 factory=dict)
    columns: list[str] = doc("keep only these columns (after rename; [] = all)", factory=list)
    required: list[str] = doc("columns that must exist and be non-empty", factory=list)
    on_missing: Literal["drop", "fail"] = doc("rows with empty required values: drop or fail",
                                              "drop")
    id_column: str | None = doc("use this column as row_id (null = row number)", None)
    limit: int | None = doc("keep at most this many rows (after sampling)", None)
    sample: int | None = doc("seeded random sample of this many rows", None)
    seed: int | None = doc("seed for `sample` (null = the run seed)", None)
    encoding: str = doc("text encoding", "utf-8")


@register_stage
class Load(Stage):
    """Read a file; rename columns; check required columns; sample; assign row ids."""

    kind = "load"
    Params = LoadParams

    def _frame(self, nrows: int | None = None) -> pd.DataFrame:
        p: LoadParams = self.params
        df = io.read_table(p.path, p.format, p.text_column, p.encoding, nrows)
        df = df.rename(columns=p.rename)
        found = list(df.columns)
        need = set(p.required) | set(p.columns) | ({p.id_column} if p.id_column else set())
        for col in sorted(need - set(found)):
            renames = {v: k for k, v in p.rename.items()}
            hint = f" (renamed from '{renames[col]}')" if col in renames else ""
            raise InputError(
                f"{p.path}: required column '{col}'{hint} is missing. Columns found: "
                f"{', '.join(map(str, found))}. Map one of them with "
                f"{self.where}.rename={{YOUR_COLUMN: {col}}}, or fix `{self.where}.required`."
            )
        return df[p.columns] if p.columns else df

    def fingerprint_extra(self) -> str:
        """The input file's size and mtime, so an edited input re-runs the pipeline."""
        from pathlib import Path

        st = Path(self.params.path).expanduser().stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    def check(self, columns: set[str]) -> tuple[set[str], list[str]]:
        head = self._frame(nrows=5)  # an InputError stops the column check here
        return columns | set(map(str, head.columns)) | {ROW_ID}, []

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: LoadParams = self.params
        out = self._frame()
        out = self._drop_missing(out)
        if p.sample is not None and p.sample < len(out):
            seed = p.seed if p.seed is not None else self.ctx.seed
            out = out.sample(n=p.sample, random_state=seed).sort_index()
        if p.limit is not None:
            out = out.head(p.limit)
        ids = out[p.id_column].astype(str) if p.id_column else out.index.astype(str)
        if p.id_column and ids.duplicated().any():
            raise InputError(f"{p.path}: `{self.where}.id_column` '{p.id_column}' has duplicate "
                             f"values (e.g. {ids[ids.duplicated()].iloc[0]!r}); ids must be unique.")
        out = out.reset_index(drop=True)
        out.insert(0, ROW_ID, list(ids))
        return out

    def _drop_missing(self, df: pd.DataFrame) -> pd.DataFrame:
        p: LoadParams = self.params
        for col in p.required:
            empty = df[col].isna() | (df[col].astype(str).str.strip() == "")
            n = int(empty.sum())
            if n and p.on_missing == "fail":
                raise InputError(
                    f"{p.path}: column '{col}' is empty in {n} row(s) (first at row "
                    f"{int(empty.idxmax())}). Fill them, or set {self.where}.on_missing=drop.")
            self.ctx.stats.drop(self.name, f"empty:{col}", n)
            df = df[~empty]
        return df
