"""`curate_pairs`: self-curation — rubric-score instruction/response pairs, round by round."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.engine import Job, Outcome, Policy
from selfalign.errors import ParseError
from selfalign.parsers import parse_score
from selfalign.stages.base import PARENT_ID, ROW_ID, register_stage
from selfalign.stages.llm import LLMStage, PromptParams, out_frame
from selfalign.text import ngrams, words


def copy_overlap(instruction: str, response: str, n: int = 2) -> float:
    """Share of the instruction's word n-grams (lowercased) that also occur in the response:
    near 1 when the "instruction" is the text copied back, which small models often do."""
    ins = ngrams(words(instruction), n)
    if not ins:
        return 0.0
    seen = set(ngrams(words(response), n))
    return sum(g in seen for g in ins) / len(ins)


@dataclass
class CurateParams(PromptParams):
    # a greedy judge that left out its score would only repeat itself, so retries sample hotter
    retry_temperature: float | None = doc(
        "temperature of retries after an unparsable score (null = same as the first try)", 0.7
    )
    iterations: int = doc("curation rounds; round k uses models[k-1]", 1)
    models: list[str | None] = doc(
        "one curation model per round, named in `models:` (null = "
        "the run's model); [] = `model` for every round",
        factory=list,
    )
    threshold: float | None = doc("keep pairs whose final score >= this (null = keep all)", 5.0)
    rescore: Literal["all", "kept"] = doc(
        "round k scores all pairs (paper) or only those round k-1 kept", "all"
    )
    best_per: str | None = doc(
        "if this column exists (n > 1 candidates), keep the best-scoring pair per value (ties: first)",
        "parent_id",
    )
    max_copy_overlap: float | None = doc(
        "drop pairs (before judging) whose instruction shares "
        "more of its word bigrams with the response than "
        "this; null = off",
        0.8,
    )
    score_min: float = doc("lowest valid score", 1.0)
    score_max: float = doc("highest valid score", 5.0)
    other_scale: Literal["reject", "rescale"] = doc(
        "a score written on another scale ('Score: 4/10'): reject (retried, then dropped as "
        "parse:other_scale) | rescale (value / denominator x score_max, so 4/10 → 2.0)",
        "reject",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise ValueError("`iterations` must be >= 1")
        if self.models and len(self.models) != self.iterations:
            raise ValueError(
                f"`models` has {len(self.models)} entries but iterations={self.iterations}: give "
                "one curation model per iteration, e.g. curation.models=[null,m1] with "
                "iterations=2 (m1 defined under `models:`), or [] to use `model` for all."
            )


@register_stage
class CuratePairs(LLMStage):
    """Rubric-score instruction/response pairs for `iterations` rounds; keep score >= threshold.

    Each round may use its own model (e.g. one fine-tuned on the previous round's data)."""

    kind = "curate_pairs"
    row_local = True
    Params = CurateParams

    def is_row_local(self) -> bool:
        return super().is_row_local() and self.params.best_per in (None, PARENT_ID)  # groups may span chunks

    def __init__(self, name: str, params: CurateParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.round_models = list(params.models) or [params.model] * params.iterations
        for k, ref in enumerate(self.round_models):
            ctx.llm.check_ref(ref, f"{self.where}.models[{k}]")
        for k in range(1, params.iterations):
            if self.round_models[k] == self.round_models[k - 1]:
                ctx.console.log(
                    f"[yellow]{self.where}: rounds {k} and {k + 1} use the same model "
                    f"and prompt, so round {k + 1} repeats round {k}'s scores."
                )

    def reads(self) -> set[str]:
        copy_check = {"instruction", "response"} if self.params.max_copy_overlap is not None else set()
        return super().reads() | copy_check

    def writes(self) -> set[str]:
        per_round = (
            {f"{c}_iter{k}" for k in range(1, self.params.iterations + 1) for c in ("score", "reasoning")}
            if self.params.iterations > 1
            else set()
        )
        return {"score", "reasoning"} | per_round

    def model_refs(self) -> set[str | None]:
        return set(self.round_models)

    def fingerprint_extra(self) -> str:
        """Every round's model identity (the runner only sees `model`)."""
        return "|".join(self.ctx.llm.identity(ref) for ref in self.round_models)

    def parse(self, text: str) -> dict[str, Any]:
        p: CurateParams = self.params
        out = parse_score(text, min=p.score_min, max=p.score_max, other_scale=p.other_scale)
        head, _, rest = text.strip().partition("\n")
        if not out["reasoning"] and rest.strip():
            with contextlib.suppress(ParseError):  # small judges often explain after the score
                parse_score(head, min=p.score_min, max=p.score_max, other_scale=p.other_scale)
                out["reasoning"] = rest.strip()
        return out

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        p: CurateParams = self.params
        rows = io.records(df)
        active = [
            i
            for i, r in enumerate(rows)
            if p.max_copy_overlap is None
            or copy_overlap(str(r["instruction"]), str(r["response"])) <= p.max_copy_overlap
        ]
        self.ctx.stats.drop(self.name, "copied_response", len(rows) - len(active))
        for k in range(1, p.iterations + 1):
            outcomes = await self._round([rows[i] for i in active], k)
            active = self._score(rows, active, outcomes, k)
        scores = [{c: rows[i].get(c) for c in self.writes()} for i in active]
        kept = self._best_per_group(out_frame(df, active, scores, sorted(self.writes()), self.where))
        return kept.reset_index(drop=True)

    async def _round(self, rows: list[dict[str, Any]], k: int) -> list[Outcome]:
        """Round k: every pair once, with round k's model; rejects keep `iteration=k`."""
        params = replace(self.params, model=self.round_models[k - 1])
        jobs = [Job(str(r[ROW_ID]), self.render(r), params=params, note={"iteration": k}) for r in rows]
        return await self.engine.run(jobs, Policy(parse=self.parse))

    def _score(
        self, rows: list[dict[str, Any]], active: list[int], outcomes: list[Outcome], k: int
    ) -> list[int]:
        """Write round k's scores; the last round (or every round with rescore=kept) applies
        the threshold and returns the indices still in play."""
        p: CurateParams = self.params
        tag = f"iter{k}:" if p.iterations > 1 else ""
        decides = k == p.iterations or p.rescore == "kept"
        scored = []
        for i, o in zip(active, outcomes, strict=True):
            rows[i]["score"] = o.fields.get("value") if o.ok else None
            rows[i]["reasoning"] = o.fields.get("reasoning") if o.ok else None
            if p.iterations > 1:
                rows[i][f"score_iter{k}"] = rows[i]["score"]
                rows[i][f"reasoning_iter{k}"] = rows[i]["reasoning"]
            if o.ok:
                scored.append(i)
            elif decides:
                self.drop_failed(o, prefix=tag)
        if not decides:
            return active
        kept = [i for i in scored if p.threshold is None or rows[i]["score"] >= p.threshold]
        self.ctx.stats.drop(self.name, f"{tag}below_threshold", len(scored) - len(kept))
        return kept

    def _best_per_group(self, df: pd.DataFrame) -> pd.DataFrame:
        col = self.params.best_per
        if not col or col not in df.columns or df.empty:
            return df
        order = df["score"].astype(float).sort_values(ascending=False, kind="stable").index
        best = df.loc[order].drop_duplicates(subset=[col], keep="first").sort_index()
        self.ctx.stats.drop(self.name, f"not_best_per:{col}", len(df) - len(best))
        return best
