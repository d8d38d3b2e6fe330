"""Rule-based stages without a model: `filter_rows` (declarative rules) and `sample_rows`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from selfalign.config import doc
from selfalign.errors import ConfigError
from selfalign.stages.base import Stage, register_stage
from selfalign.text import count_tokens, count_words

OPS = (
    "non_empty",
    "min_chars",
    "max_chars",
    "min_words",
    "max_words",
    "min_tokens",
    "max_tokens",
    "quantile_range",
    "regex",
    "not_regex",
    "contains_any",
    "not_contains_any",
    "startswith_any",
    "not_startswith_any",
    "endswith_any",
    "not_endswith_any",
    "ascii_only",
    "equals",
    "not_equals",
    "in",
    "not_in",
)


@dataclass
class Rule:
    column: str = doc("column the rule looks at")
    op: str = doc(f"one of: {', '.join(OPS)}")
    value: Any = doc("the bound / pattern / list the op needs", None)
    name: str | None = doc("label for the drop count (default: op:column)", None)
    case_sensitive: bool = doc("for substring/prefix/suffix/regex ops", True)
    measure: Literal["chars", "words", "tokens"] = doc("quantile_range: what to measure", "tokens")
    low: float = doc("quantile_range: lower quantile (inclusive)", 0.0)
    high: float = doc("quantile_range: upper quantile (inclusive)", 1.0)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown op '{self.op}'; use one of: {', '.join(OPS)}")

    @property
    def label(self) -> str:
        return self.name or f"{self.op}:{self.column}"


def _measure(s: pd.Series, how: str) -> pd.Series:
    if how == "chars":
        return s.str.len()
    if how == "words":  # astype: pandas 3 gives an empty mapped series a string dtype
        return s.map(count_words).astype(int)
    return s.map(count_tokens).astype(int)


def _any(s: pd.Series, values: list[str], case: bool, fn: str) -> pd.Series:
    src = s if case else s.str.lower()
    vals = values if case else [v.lower() for v in values]
    hit = pd.Series(False, index=s.index)
    for v in vals:
        hit |= getattr(src.str, fn)(v) if fn != "contains" else src.str.contains(v, regex=False)
    return hit


def keep_mask(df: pd.DataFrame, r: Rule) -> pd.Series:
    """True for rows that PASS the rule."""
    s = df[r.column].fillna("").astype(str)
    op, v = r.op, r.value
    flags = 0 if r.case_sensitive else re.I
    if op == "non_empty":
        return s.str.strip() != ""
    if op in ("min_chars", "max_chars", "min_words", "max_words", "min_tokens", "max_tokens"):
        m = _measure(s, op.split("_")[1])
        return m >= v if op.startswith("min") else m <= v
    if op == "quantile_range":
        m = _measure(s, r.measure)
        lo, hi = m.quantile(r.low, interpolation="lower"), m.quantile(r.high, interpolation="lower")
        return (m >= lo) & (m <= hi)
    if op in ("regex", "not_regex"):
        hit = s.str.contains(re.compile(str(v), flags), regex=True)
        return hit if op == "regex" else ~hit
    if op.endswith("_any"):
        fn = {"contains": "contains", "startswith": "startswith", "endswith": "endswith"}[
            op.removeprefix("not_").removesuffix("_any")
        ]
        hit = _any(s, list(v or []), r.case_sensitive, fn)
        return ~hit if op.startswith("not_") else hit
    if op == "ascii_only":  # astype: pandas 3 gives an empty mapped series a string dtype
        return s.map(str.isascii).astype(bool)
    raw = df[r.column]
    if op in ("equals", "not_equals"):
        return raw == v if op == "equals" else raw != v
    return raw.isin(v) if op == "in" else ~raw.isin(v)


@dataclass
class FilterParams:
    rules: list[Rule] = doc(
        "rules applied in order; a row dropped by the first it fails is counted under that rule", factory=list
    )


@register_stage
class FilterRows(Stage):
    """Drop rows by declarative rules; each drop is counted under its rule's label."""

    kind = "filter_rows"
    row_local = True
    Params = FilterParams

    def __init__(self, name: str, params: FilterParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.rules = list(params.rules)
        for i, r in enumerate(self.rules):
            if (
                r.op.startswith(("min_", "max_", "regex", "not_regex", "equals", "not_equals"))
                and r.value is None
            ):
                raise ConfigError(f"{self.where}.rules[{i}]: op '{r.op}' needs a `value`.")

    def is_row_local(self) -> bool:
        return not any(r.op == "quantile_range" for r in self.rules)  # quantiles need all rows

    def reads(self) -> set[str]:
        return {r.column for r in self.rules}

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        for r in self.rules:
            mask = keep_mask(df, r)
            self.ctx.stats.drop(self.name, r.label, int((~mask).sum()))
            df = df[mask]
        return df.reset_index(drop=True)


@dataclass
class SampleParams:
    n: int = doc("rows to keep")
    mode: Literal["random", "head"] = doc("seeded random sample or the first n", "random")
    seed: int | None = doc("seed (null = the run seed)", None)


@register_stage
class SampleRows(Stage):
    """Keep n rows: a seeded random sample (in original order) or the first n."""

    kind = "sample_rows"
    Params = SampleParams

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: SampleParams = self.params
        if p.n >= len(df):
            return df
        if p.mode == "head":
            out = df.head(p.n)
        else:
            seed = p.seed if p.seed is not None else self.ctx.seed
            out = df.sample(n=p.n, random_state=seed).sort_index()
        self.ctx.stats.drop(self.name, "not_sampled", len(df) - len(out))
        return out.reset_index(drop=True)
