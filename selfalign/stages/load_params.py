"""The load stage's params (its own module, so load.py and load_rows.py both import it and
neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from selfalign.config import doc


@dataclass
class LoadParams:
    path: str = doc(
        "input file (JSONL, JSON, CSV, Parquet, .txt lines), a folder of .txt files, or a Hugging "
        "Face dataset: a save_to_disk folder, a folder of its data files, hf://datasets/ORG/NAME"
    )
    format: Literal["jsonl", "json", "csv", "parquet", "text", "hf"] | None = doc(
        "file format (null = from the extension or folder; hf = a Hugging Face dataset)", None
    )
    split: str | None = doc("Hugging Face dataset: the split (null = train, or the only one)", None)
    subset: str | None = doc("Hugging Face dataset: the subset (config) name (null = the default)", None)
    revision: str | None = doc("Hub id: branch, tag or commit in the local cache (null = main)", None)
    text_column: str = doc("column name for plain-text input", "text")
    rename: dict[str, str] = doc(
        "map input column → pipeline column, e.g. {prompt: instruction}", factory=dict
    )
    columns: list[str] = doc("keep only these columns (after rename; [] = all)", factory=list)
    required: list[str] = doc("columns that must exist and be non-empty", factory=list)
    on_missing: Literal["drop", "fail"] = doc("rows with empty required values: drop or fail", "drop")
    non_text: Literal["fail", "coerce", "drop"] = doc(
        "a `required` or `text_column` value that is a number, boolean, list or object: fail, "
        "coerce (to its JSON text, counted) or drop the row (counted)",
        "fail",
    )
    id_column: str | None = doc("use this column as row_id (null = row number)", None)
    limit: int | None = doc("keep at most this many rows (after sampling; null = all)", None)
    sample: int | None = doc("seeded random sample of this many rows", None)
    seed: int | None = doc("seed for `sample` (null = the run seed)", None)
    encoding: str = doc("text encoding (utf-8 also accepts a UTF-8 byte-order mark)", "utf-8")
