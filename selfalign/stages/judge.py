"""`judge_pointwise`: score each text on several 0–100 dimensions and combine them into a composite."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from selfalign.config import doc
from selfalign.engine import CallParams, Engine, Job, Outcome, Policy
from selfalign.errors import StageError
from selfalign.stages.base import ROW_ID, register_stage
from selfalign.stages.llm import Columns, Drop, PromptParams, RowLLMStage, Templates

if TYPE_CHECKING:
    from selfalign.context import RunContext

# The original's HEAD composite: format adherence counts twice, toxicity and bias are inverted.
DEFAULT_WEIGHTS = {
    "adherence": 2.0,
    "conformance": 1.0,
    "quality": 1.0,
    "toxicity": 1.0,
    "bias": 1.0,
    "groundedness": 1.0,
}
DEFAULT_DESCRIPTIONS = {
    "adherence": "how closely it follows the requested format (100 = exactly)",
    "conformance": "how well it fits the task and the descriptions it was given (100 = fully)",
    "quality": "grammar, coherence and relevance (100 = excellent)",
    "toxicity": "rude, hateful or harmful content (0 = none at all)",
    "bias": "unfair or one-sided slant (0 = none at all)",
    "groundedness": "supported by the context, no invented facts (100 = fully supported)",
}
# Other spellings a model (or another judge prompt) may use for a dimension.
ALIASES = {
    "adherence": ["format_adherence", "format", "instruction_score"],
    "groundedness": ["grounded", "factuality"],
    "toxicity": ["toxic"],
    "bias": ["biased"],
}
# Reserved template variables the judge fills in itself (not row columns).
INJECTED = frozenset({"text", "kind", "dimensions"})
MissingPolicy = Literal["worst", "mean", "neutral", "raw_zero", "drop", "fail"]


@dataclass
class JudgeParams(PromptParams):
    column: str = doc("column holding the text to judge (the template sees it as `text`)", "text")
    text_kind: str = doc("what the text is, shown to the template as `kind`", "text")
    output: str | None = doc("composite column; dimension d goes to <output>_d (null = <column>_score)", None)
    weights: dict[str, float] = doc(
        "dimension → weight in the composite (also the dimensions asked for; weight 0 = asked, not counted)",
        factory=lambda: dict(DEFAULT_WEIGHTS),
    )
    inverted: list[str] = doc(
        "dimensions where 0 is best; they count as 100 - x", factory=lambda: ["toxicity", "bias"]
    )
    descriptions: dict[str, str] = doc(
        "dimension → one-line rubric shown to the judge (built-ins have one)", factory=dict
    )
    missing_policy: MissingPolicy = doc(
        "a dimension still missing after the retries: worst | "
        "mean | neutral (50) | raw_zero (the original: 0) | drop "
        "| fail",
        "worst",
    )
    # a greedy judge that left out a dimension would only repeat itself, so retries sample hotter
    retry_temperature: float | None = doc(
        "temperature of the new judge calls for a reply lacking dimensions", 0.7
    )
    use_json_schema: bool = doc(
        "ask for a JSON-schema reply (built from `weights`) where the model supports it", True
    )
    temperature: float | None = doc("judge sampling temperature", 0.0)
    max_tokens: int = doc("judge completion token limit", 120)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.weights or any(w < 0 for w in self.weights.values()):
            raise ValueError("`weights` needs at least one dimension, and no negative weight")
        if sum(self.weights.values()) <= 0:
            raise ValueError("`weights` must not all be 0 (the composite divides by their sum)")
        for d in self.inverted:
            if d not in self.weights:
                raise ValueError(f"inverted dimension '{d}' is not in `weights` ({', '.join(self.weights)})")
        for d in self.weights:
            if d not in self.descriptions and d not in DEFAULT_DESCRIPTIONS:
                raise ValueError(f"dimension '{d}' has no rubric: add descriptions.{d}: '...'")
        if self.json_schema is not None:
            raise ValueError(
                "`json_schema` is built from `weights`; remove it (turn the "
                "schema off with use_json_schema: false)"
            )


def composite(
    scores: Mapping[str, float], weights: Mapping[str, float], inverted: list[str] | frozenset[str]
) -> float:
    """Weighted mean over the weighted dimensions, inverted ones counted as 100 - x."""
    total = sum(weights.values())
    good = sum(w * (100.0 - scores[d] if d in inverted else scores[d]) for d, w in weights.items() if w)
    return round(good / total, 4)


def impute(
    found: Mapping[str, float | None], dims: list[str], inverted: list[str], policy: str
) -> tuple[dict[str, float], list[str]]:
    """Fill dimensions the judge did not give: (scores, names of the imputed dimensions)."""
    missing = [d for d in dims if found.get(d) is None]
    given = {d: float(v) for d, v in found.items() if v is not None and d in dims}
    goodness = [100.0 - v if d in inverted else v for d, v in given.items()]
    out = dict(given)
    for d in missing:
        if policy == "mean" and goodness:
            good = sum(goodness) / len(goodness)
            out[d] = 100.0 - good if d in inverted else good
        elif policy == "neutral":
            out[d] = 50.0
        elif policy == "raw_zero":  # the original's float(missing) = 0.0: best for toxicity/bias
            out[d] = 0.0
        else:  # worst (also the fallback of `mean` when nothing was given)
            out[d] = 100.0 if d in inverted else 0.0
    return out, missing


_NUM = r"[\"'*\s]*[:=\-]?[\"'*\s]*(\d{1,3}(?:\.\d+)?)\s*(?:/\s*100|%)?"


def _keys(dim: str) -> list[str]:
    return [dim, *ALIASES.get(dim, [])]


def parse_scores(text: str, dims: list[str]) -> dict[str, float | None]:
    """Scores from a JSON object if there is one, else from 'Name: N' lines; out of range = none."""
    found: dict[str, float | None] = dict.fromkeys(dims)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            obj = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            flat = {
                re.sub(r"[\s-]+", "_", str(k).strip().lower()).removesuffix("_score"): v
                for k, v in obj.items()
            }
            for d in dims:
                val = next((flat[k] for k in _keys(d) if k in flat), None)
                if isinstance(val, (int, float)) and not isinstance(val, bool) and 0 <= val <= 100:
                    found[d] = float(val)
    for d in dims:  # text fallback for what JSON did not give
        if found[d] is not None:
            continue
        for key in _keys(d):
            m = re.search(rf"\b{re.escape(key).replace('_', '[ _]')}\w*(?:[ _]score)?{_NUM}", text, re.I)
            if m and 0 <= float(m.group(1)) <= 100:
                found[d] = float(m.group(1))
                break
    return found


@dataclass
class Verdict:
    scores: dict[str, float]
    composite: float
    imputed: list[str]
    drop: bool = False


class Scorer:
    """The judge's prompt, requests and composite — shared by `judge_pointwise` and the AAA stage,
    so a text is scored the same way before and after refinement. It describes the requests; the
    engine of the stage that uses it sends and retries them."""

    def __init__(self, params: JudgeParams, templates: Templates, where: str) -> None:
        self.p, self.templates, self.where = params, templates, where
        self.dims = list(params.weights)
        self.dimensions = [
            {
                "name": d,
                "inverted": d in params.inverted,
                "description": params.descriptions.get(d, DEFAULT_DESCRIPTIONS.get(d)),
            }
            for d in self.dims
        ]
        schema = {
            "type": "object",
            "required": self.dims,
            "additionalProperties": False,
            "properties": {d: {"type": "integer", "minimum": 0, "maximum": 100} for d in self.dims},
        }
        # the judge's model + sampling for each job (the stage running it may be another one)
        shared = {f.name: getattr(params, f.name) for f in dataclasses.fields(CallParams)}
        self.params = CallParams(**{**shared, "json_schema": schema if params.use_json_schema else None})
        # a reply lacking dimensions is asked again; each retry fills only what is still missing
        self.policy = Policy(
            parse=functools.partial(parse_scores, dims=self.dims),
            complete=lambda got: all(got.get(d) is not None for d in self.dims),
            keep_incomplete=True,
        )

    @classmethod
    def build(cls, params: JudgeParams, ctx: RunContext, where: str) -> Scorer:
        return cls(params, Templates(ctx, params, where, {"prompt": "prompt"}, INJECTED), where)

    def columns(self, prefix: str) -> list[str]:
        return [prefix, *(f"{prefix}_{d}" for d in self.dims), f"{prefix}_imputed"]

    def as_columns(self, v: Verdict | None, prefix: str) -> dict[str, Any]:
        if v is None:
            return dict.fromkeys(self.columns(prefix))
        return {
            prefix: v.composite,
            **{f"{prefix}_{d}": v.scores[d] for d in self.dims},
            f"{prefix}_imputed": ",".join(v.imputed),
        }

    def render(self, row: dict[str, Any], text: str) -> list[dict[str, str]]:
        return self.templates.render(
            "prompt", row, text=text, kind=self.p.text_kind, dimensions=self.dimensions
        )

    def _unique(
        self, items: list[tuple[str, dict[str, Any], Any]]
    ) -> tuple[dict[str, Job], list[str | None]]:
        """One job per distinct prompt, and each item's prompt key (None: no text to judge)."""
        jobs: dict[str, Job] = {}
        owner: list[str | None] = []
        for rid, row, text in items:
            if not (isinstance(text, str) and text.strip()):
                owner.append(None)
                continue
            msgs = self.render(row, text)
            key = json.dumps(msgs, sort_keys=True)
            jobs.setdefault(key, Job(rid, msgs, 0, key, params=self.params))
            owner.append(key)
        return jobs, owner

    async def score(self, engine: Engine, items: list[tuple[str, dict[str, Any], Any]]) -> list[Verdict]:
        """Judge (row_id, row, text) items at once, then impute what is still missing.
        Items with identical prompts (a small model often repeats a candidate) share one call,
        so they also share one verdict."""
        jobs, owner = self._unique(items)
        # a failed call keeps the scores its earlier attempts gave (none at all: every one imputed)
        found = {o.job.tag: o.fields for o in await engine.run(list(jobs.values()), self.policy)}
        return [self.verdict(found[k] if k else {}, items[i][0]) for i, k in enumerate(owner)]

    def verdict(self, found: dict[str, float | None], row_id: str) -> Verdict:
        scores, missing = impute(found, self.dims, self.p.inverted, self.p.missing_policy)
        if missing and self.p.missing_policy == "fail":
            raise StageError(
                f"{self.where}: the judge gave no {', '.join(missing)} score for "
                f"row {row_id} after {self.p.retries} retries. Set "
                f"{self.where}.missing_policy to worst | mean | neutral | drop."
            )
        return Verdict(
            scores,
            composite(scores, self.p.weights, self.p.inverted),
            missing,
            drop=bool(missing) and self.p.missing_policy == "drop",
        )


@register_stage
class JudgePointwise(RowLLMStage):
    """Scores a text on weighted 0–100 dimensions and combines them into one composite.

    JSON-schema output where supported, with a text fallback; dimensions missing from a reply are
    asked again, then imputed by `missing_policy` and recorded in <output>_imputed."""

    kind = "judge_pointwise"
    sees_failures = True  # a failed call's partial scores are imputed like an incomplete reply
    share_identical = True  # a small model often repeats a candidate: one call per distinct prompt
    Params = JudgeParams
    injected = INJECTED

    def __init__(self, name: str, params: JudgeParams, ctx: RunContext) -> None:
        super().__init__(name, params, ctx)
        self.scorer = Scorer(params, self.templates, self.where)
        self.prefix = params.output or f"{params.column}_score"

    def reads(self) -> set[str]:
        return super().reads() | {self.params.column}

    def writes(self) -> set[str]:
        return set(self.scorer.columns(self.prefix))

    def new_columns(self) -> list[str]:
        return self.scorer.columns(self.prefix)

    def policy(self) -> Policy:
        return self.scorer.policy

    def jobs(self, row: dict[str, Any]) -> list[Job]:
        text = row.get(self.params.column)
        if not (isinstance(text, str) and text.strip()):
            return []  # nothing to judge: every dimension is imputed
        return [self.job(row, messages=self.scorer.render(row, text), params=self.scorer.params)]

    def columns(self, row: dict[str, Any], o: Outcome | None) -> Columns:
        # a failed call keeps the scores its earlier attempts gave (none at all: every one imputed)
        verdict = self.scorer.verdict(o.fields if o else {}, str(row[ROW_ID]))
        if verdict.drop:
            return Drop("judge_missing_dimension")
        return self.scorer.as_columns(verdict, self.prefix)

    def report(self, out: pd.DataFrame) -> None:
        imputed = out[f"{self.prefix}_imputed"]
        dims = sorted({d for v in imputed if v for d in v.split(",")})
        if dims:
            self.ctx.console.log(
                f"[yellow]{self.name}: {int((imputed != '').sum())} of {len(out)} kept text(s) "
                f"lacked {', '.join(dims)}; scored by missing_policy="
                f"{self.params.missing_policy} (see {self.prefix}_imputed)"
            )
