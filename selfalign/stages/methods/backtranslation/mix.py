"""`mix_seed_pairs`: mark curated rows as augmented, append the seed pairs, tag `system` by source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.errors import InputError
from selfalign.stages.base import ROW_ID, Stage, register_stage


@dataclass
class MixParams:
    include_seed: bool = doc("append the seed pairs to the curated pairs", False)
    seed_path: str | None = doc("seed pairs file (JSONL/CSV/Parquet)", None)
    instruction_column: str = doc("seed file: instruction column", "instruction")
    response_column: str = doc("seed file: response column", "response")
    system_tags: bool = doc("tag each row's `system` by its source (else the column is empty)", False)
    seed_tag: str = doc("system message for seed rows", "")
    augmented_tag: str = doc("system message for curated (augmented) rows", "")

    def __post_init__(self) -> None:
        if self.include_seed and not self.seed_path:
            raise ValueError("`include_seed` needs `seed_path` (a file of instruction/response pairs)")
        if self.system_tags and not (self.seed_tag and self.augmented_tag):
            raise ValueError("`system_tags` needs non-empty `seed_tag` and `augmented_tag`")


@register_stage
class MixSeedPairs(Stage):
    """Mark rows as augmented, optionally append the seed pairs, and set `system` tags by source."""

    kind = "mix_seed_pairs"
    Params = MixParams

    def reads(self) -> set[str]:
        return {"instruction", "response"}

    def writes(self) -> set[str]:
        return {"source", "system"}

    def _seed(self, nrows: int | None = None) -> pd.DataFrame:
        p: MixParams = self.params
        df = io.read_table(str(p.seed_path), nrows=nrows)
        need = [p.instruction_column, p.response_column]
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise InputError(
                f"{p.seed_path}: seed column(s) {missing} missing (found: "
                f"{', '.join(map(str, df.columns))}). Set {self.where}."
                "instruction_column / response_column."
            )
        return df[need].set_axis(["instruction", "response"], axis=1)

    def check(self, columns: set[str]) -> tuple[set[str], list[str]]:
        cols, problems = super().check(columns)
        if self.params.include_seed:
            # the whole file, streamed (a bad line 700 must not surface after the model calls)
            found = io.check_file(str(self.params.seed_path))
            problems += [f"{self.where}.seed_path: {msg}" for msg in found]
            try:
                if not found:
                    self._seed(nrows=5)
            except InputError as exc:
                problems.append(f"{self.where}: {exc}")
        return cols, problems

    def fingerprint_extra(self) -> str:
        p: MixParams = self.params
        if not p.include_seed:
            return ""
        st = Path(str(p.seed_path)).expanduser().stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: MixParams = self.params
        tag = p.system_tags
        out = df.assign(source="augmented", system=p.augmented_tag if tag else "")
        if not p.include_seed:
            return out
        seed = self._seed()
        seed = seed.assign(source="seed", system=p.seed_tag if tag else "")
        seed.insert(0, ROW_ID, [f"seed.{i}" for i in range(len(seed))])
        seed = seed.reindex(columns=list(dict.fromkeys([*out.columns, *seed.columns])))
        return pd.concat([out, seed], ignore_index=True) if len(out) else seed
