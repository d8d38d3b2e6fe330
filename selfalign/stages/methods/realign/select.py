"""`select_rewrite`: ReAlign's post-filter. Per row keep the rewrite or the original response and
tag which (never drops a row), by the original's rule sets: open_platypus, alpaca, no_robots."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.stages.base import Stage, register_stage
from selfalign.text import count_tokens

_FENCED = re.compile(r"```.*?```", re.S)

Verdict = tuple[bool, str]  # (keep the rewrite?, reason)


def has_code(text: str) -> bool:
    """A fenced ``` block, or both 'def ' and 'return ' (unfenced Python)."""
    return bool(_FENCED.search(text)) or ("def " in text and "return " in text)


def code_ok(original: str, rewrite: str) -> Verdict:
    same = has_code(original) == has_code(rewrite)
    return same, "ok" if same else "code_mismatch"


def length_ok(original: str, rewrite: str, ratio: float = 0.5) -> Verdict:
    """Reject a rewrite of at most `ratio` × the original's token count (it lost content)."""
    ok = count_tokens(rewrite) > ratio * count_tokens(original)
    return ok, "ok" if ok else "too_short"


def single_char_ok(original: str, rewrite: str) -> bool:
    """The one-character answer appears in the rewrite with no letter right before or after it.
    Escaped, so '?' or '.' are matched literally (the original's unescaped regex broke on them)."""
    char = original.strip()
    pattern = r"(?<![^\W\d_])" + re.escape(char) + r"(?![^\W\d_])"
    return re.search(pattern, rewrite) is not None


def select_open_platypus(
    question: str, original: str, rewrite: str, category: str, ratio: float, true_false: str = "accept"
) -> Verdict:
    short = original.strip()
    if len(short) == 1:
        ok = single_char_ok(short, rewrite)
        return ok, "single_char" if ok else "single_char_missing"
    if short in ("True", "False"):
        # the original accepts any rewrite here; 'agree' also asks that it still says the value
        ok = true_false == "accept" or re.search(rf"\b{short}\b", rewrite, re.I) is not None
        return ok, "true_false" if ok else "true_false_changed"
    return select_alpaca(question, original, rewrite, category, ratio)


def select_alpaca(
    question: str, original: str, rewrite: str, category: str, ratio: float, true_false: str = "accept"
) -> Verdict:
    ok, why = code_ok(original, rewrite)
    return (ok, why) if not ok else length_ok(original, rewrite, ratio)


def select_no_robots(
    question: str, original: str, rewrite: str, category: str, ratio: float, true_false: str = "accept"
) -> Verdict:
    if category == "default":
        return False, "default_category"
    if "Revised response" in rewrite:
        return False, "marker_leak"
    if category == "planning" and " plan" not in question and " Plan" not in question:
        return False, "planning_without_plan"
    return select_alpaca(question, original, rewrite, category, ratio)


RULE_SETS: dict[str, Callable[..., Verdict]] = {
    "open_platypus": select_open_platypus,
    "alpaca": select_alpaca,
    "no_robots": select_no_robots,
}


def choose(
    question: Any,
    original: Any,
    rewrite: Any,
    category: Any,
    rules: str,
    ratio: float,
    true_false: str = "accept",
) -> Verdict:
    """(use the rewrite?, reason); a missing or blank rewrite always keeps the original."""
    if not isinstance(rewrite, str) or not rewrite.strip():
        return False, "no_rewrite"
    return RULE_SETS[rules](
        str(question or ""), str(original or ""), rewrite, str(category or ""), ratio, true_false
    )


@dataclass
class SelectRewriteParams:
    rules: Literal["open_platypus", "alpaca", "no_robots"] = doc(
        "rule set of the original: open_platypus | alpaca | no_robots", "open_platypus"
    )
    length_ratio: float = doc("reject a rewrite of <= this × the original's tokens", 0.5)
    true_false: Literal["accept", "agree"] = doc(
        "open_platypus, original 'True'/'False': accept any rewrite (the original) | agree: only "
        "one that still states that value",
        "accept",
    )
    question_column: str = doc("column with the query", "instruction")
    response_column: str = doc("column with the original response", "response")
    rewrite_column: str = doc("column with the rewrite (null/empty = none)", "rewrite")
    category_column: str = doc("column with the task label", "category")
    output: str = doc("column for the chosen text (may be the response column itself)", "response")
    original_column: str = doc("column that keeps the original response", "original_response")
    tag_column: str = doc("column for 'rewrite' | 'original'", "tag")
    reason_column: str = doc("column for the rule that decided", "tag_reason")

    def __post_init__(self) -> None:
        if not 0 <= self.length_ratio < 10:
            raise ValueError("`length_ratio` must be in [0, 10)")


@register_stage
class SelectRewrite(Stage):
    """Rewrite or original, per row, by rule set; every row is kept and tagged."""

    kind = "select_rewrite"
    row_local = True
    Params = SelectRewriteParams

    def reads(self) -> set[str]:
        p: SelectRewriteParams = self.params
        return {p.question_column, p.response_column, p.rewrite_column, p.category_column}

    def writes(self) -> set[str]:
        p: SelectRewriteParams = self.params
        return {p.output, p.original_column, p.tag_column, p.reason_column}

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: SelectRewriteParams = self.params
        rows = io.records(df)
        verdicts = [
            choose(
                r.get(p.question_column),
                r.get(p.response_column),
                r.get(p.rewrite_column),
                r.get(p.category_column),
                p.rules,
                p.length_ratio,
                p.true_false,
            )
            for r in rows
        ]
        out = df.copy()
        original = df[p.response_column].copy()
        out[p.original_column] = original
        out[p.output] = [
            r.get(p.rewrite_column) if ok else orig
            for r, (ok, _), orig in zip(rows, verdicts, original, strict=True)
        ]
        out[p.tag_column] = ["rewrite" if ok else "original" for ok, _ in verdicts]
        out[p.reason_column] = [why for _, why in verdicts]
        counts = Counter(f"{'rewrite' if ok else 'original'}:{why}" for ok, why in verdicts)
        self.ctx.console.log(
            f"{self.name} ({p.rules}): " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        )
        return out
