"""`refine_aaa`: WizardLM-2 "AI Align AI" — co-teaching chain, suggestions, self-teaching, re-judge."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.engine import Job, Policy
from selfalign.errors import ConfigError
from selfalign.parsers.labelled import parse_labelled_text
from selfalign.stages.base import ROW_ID, StageSpec, register_stage
from selfalign.stages.judge import JudgeParams, Scorer, Verdict
from selfalign.stages.llm import LLMParams, LLMStage, out_frame

if TYPE_CHECKING:
    from selfalign.context import RunContext


@dataclass
class CoTeacher:
    """One co-teacher of the chain; unset sampling keys fall back to the stage's own."""

    model: str | None = doc("named model from `models:` (null = the run's model)", None)
    temperature: float | None = doc("sampling temperature (null = the stage's)", None)
    top_p: float | None = doc("nucleus sampling (null = the stage's)", None)
    max_tokens: int | None = doc("token limit (null = the stage's)", None)
    seed: int | None = doc("backend seed", None)
    extra: dict[str, Any] = doc("extra backend params", factory=dict)
    label: str | None = doc("name recorded in <column>_co_teachers", None)


@dataclass
class LabelledOptions:
    """`labelled_text` options for the co- and self-teaching replies."""

    labels: list[str] | None = doc("leading labels to strip (null = [text_kind])", None)
    cut_at: list[str] = doc("cut the reply at the first of these markers", factory=list)
    min_chars: int = doc("a shorter reply is asked again", 3)
    max_chars: int | None = doc("a longer reply is asked again (null = no limit)", None)


@dataclass
class RefineParams(LLMParams):
    column: str = doc("text column to refine", "instruction")
    text_kind: Literal["instruction", "response"] = doc("instruction | response", "instruction")
    co_teach_prompt: str = doc("co-teaching prompt template", "wizardlm_aaa/co_teach")
    suggest_prompt: str = doc("suggestions prompt template", "wizardlm_aaa/suggest")
    self_teach_prompt: str = doc("self-teaching prompt template", "wizardlm_aaa/self_teach")
    co_teach_models: list[CoTeacher | str | None] = doc(
        "co-teachers in chain order: each a mapping {model, temperature, top_p, max_tokens, "
        "seed, extra, label}, or only a model name (a string; null = the run's model)",
        factory=list,
    )
    max_co_teach_llms: int = doc("use at most this many co-teachers (the first ones)", 3)
    suggest_max_tokens: int = doc("token limit of the suggestions list", 160)
    keep_if_improved: bool = doc(
        "keep the AAA text only if its composite is not lower (false = always replace, as the original)", True
    )
    revert_if_contains: list[str] = doc(
        "guard: an AAA text containing any of these (case-insensitive) falls back to the pre-AAA text",
        factory=list,
    )
    judge_stage: str | None = doc("judge_pointwise stage whose settings re-judge the result", None)
    judge: JudgeParams | None = doc("judge_pointwise settings, if not taken from judge_stage", None)
    active: bool = doc("false = pass through (AAA disabled) with the same output columns", True)
    source_model: str | None = doc("model that wrote the incoming text (recorded)", None)
    parser: LabelledOptions | None = doc(
        "labelled_text options for the co-/self-teach replies: labels, cut_at, min_chars, max_chars", None
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_co_teach_llms < 0:
            raise ValueError("`max_co_teach_llms` must be >= 0")
        if (self.judge_stage is None) == (self.judge is None):
            raise ValueError(
                "set exactly one of `judge_stage` (a judge_pointwise stage name) or `judge` (its settings)"
            )


@dataclass
class TeacherCall:
    """A CoTeacher resolved: the params of its call (model + sampling, over the stage's) and its label."""

    params: LLMParams
    label: str


@register_stage
class RefineAaa(LLMStage):
    """AAA per row: co-teach chain, suggestions, self-teach, guard, re-judge, keep or revert.

    Rows run concurrently, each its own chain; the re-judge uses the judge stage's own Scorer."""

    kind = "refine_aaa"
    row_local = True
    Params = RefineParams
    templates_of = {
        "co_teach": "co_teach_prompt",
        "suggest": "suggest_prompt",
        "self_teach": "self_teach_prompt",
    }
    injected = frozenset({"text", "kind", "original", "current", "suggestions"})
    refs = {"judge_stage": "judge_pointwise"}

    def __init__(
        self, name: str, params: RefineParams, ctx: RunContext, peers: dict[str, StageSpec] | None = None
    ) -> None:
        super().__init__(name, params, ctx, peers)
        ctx.llm.check_ref(params.source_model, f"{self.where}.source_model")
        self.chain = self._chain()
        self.suggest_params = dataclasses.replace(params, max_tokens=params.suggest_max_tokens)
        judge, where = self._judge()
        self.scorer = Scorer.build(judge, ctx, where)
        self.prefix = judge.output or f"{judge.column}_score"
        opts = params.parser or LabelledOptions()
        labels = [params.text_kind] if opts.labels is None else opts.labels
        self.teach = Policy(
            parse=functools.partial(
                parse_labelled_text,
                labels=labels,
                cut_at=opts.cut_at,
                min_chars=opts.min_chars,
                max_chars=opts.max_chars,
            )
        )

    def _chain(self) -> list[TeacherCall]:
        p: RefineParams = self.params
        teachers = []
        for i, item in enumerate(p.co_teach_models[: p.max_co_teach_llms]):
            t = item if isinstance(item, CoTeacher) else CoTeacher(model=item)
            self.ctx.llm.check_ref(t.model, f"{self.where}.co_teach_models[{i}].model")
            changes = {
                k: getattr(t, k)
                for k in ("temperature", "top_p", "max_tokens", "seed")
                if getattr(t, k) is not None
            }
            params = dataclasses.replace(p, model=t.model, extra={**p.extra, **t.extra}, **changes)
            teachers.append(TeacherCall(params, t.label or self._label(params)))
        return teachers

    def _label(self, params: LLMParams) -> str:
        temp = "" if params.temperature is None else f" T={params.temperature:g}"
        return f"{params.model or 'default'}{temp}"

    def _judge(self) -> tuple[JudgeParams, str]:
        """The judge settings (inline, or the judge stage's) and where they come from."""
        p: RefineParams = self.params
        if p.judge is not None:
            return p.judge, f"{self.where}.judge"
        spec = self.peers.get(p.judge_stage or "")
        if spec is None:  # the runner resolves `refs`; a stage built by hand must pass peers
            raise ConfigError(
                f"{self.where}.judge_stage: stage '{p.judge_stage}' was not "
                "resolved (build the pipeline with the runner, or pass peers)."
            )
        return spec.params, f"pipeline.stages.{spec.name}"

    # ---- column flow ---------------------------------------------------------------------
    def reads(self) -> set[str]:
        judged = {self.params.column, *self.scorer.columns(self.prefix)}
        return super().reads() | self.scorer.templates.variables() | judged

    def out_columns(self) -> list[str]:
        """The columns this stage adds, in the order they are written."""
        c = self.params.column
        return (
            [
                f"{c}_{s}"
                for s in ("model", "written_by", "aaa_applied", "aaa_improved", "aaa_reverted", "pre_aaa")
            ]
            + self.scorer.columns(f"{c}_pre_aaa_score")
            + [f"{c}_{s}" for s in ("co_teachers", "co_taught", "suggestions", "aaa")]
            + self.scorer.columns(f"{c}_aaa_score")
        )

    def writes(self) -> set[str]:
        return set(self.out_columns())

    def prompt_hashes(self) -> dict[str, str]:
        return {**super().prompt_hashes(), **self.scorer.templates.hashes()}

    def model_refs(self) -> set[str | None]:
        return {self.params.model, self.scorer.p.model, *(s.params.model for s in self.chain)}

    def fingerprint_extra(self) -> str:
        """The co-teachers' and the judge's models and settings (the judge may be another stage's)."""
        chain = [(s.label, self.ctx.llm.identity(s.params.model)) for s in self.chain]
        judge = (dataclasses.asdict(self.scorer.p), self.ctx.llm.identity(self.scorer.p.model))
        return repr([chain, judge])

    # ---- running ---------------------------------------------------------------------------
    def render(self, row: dict[str, Any], role: str = "co_teach", **texts: Any) -> list[dict[str, str]]:
        return self.templates.render(role, row, kind=self.params.text_kind, **texts)

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        out = []
        for r in io.records(df.head(k)):
            text = r.get(self.params.column) or ""
            out += [
                self.render(r, "co_teach", text=text),
                self.render(r, "suggest", original=text, current=text),
                self.render(r, "self_teach", original=text, current=text, suggestions="1. …"),
            ]
        return out

    async def _ask(
        self, row: dict[str, Any], role: str, params: LLMParams, policy: Policy, **texts: Any
    ) -> str | None:
        """One step of a row's chain; None when it failed (the engine recorded it)."""
        job = Job(str(row[ROW_ID]), self.render(row, role, **texts), params=params)
        return (await self.engine.call(job, policy)).value

    async def _refine(self, row: dict[str, Any]) -> dict[str, Any]:
        p: RefineParams = self.params
        pre = row[p.column]
        current, writer, used = pre, (p.source_model, "generate"), []
        for teacher in self.chain:
            got = await self._ask(row, "co_teach", teacher.params, self.teach, text=current)
            if got is not None:  # a failed co-teacher is skipped; the chain goes on
                current, writer = got, (teacher.params.model, f"co_teach:{teacher.label}")
                used.append(teacher.label)
        co_taught = current
        suggestions = await self._ask(
            row, "suggest", self.suggest_params, Policy(), original=pre, current=co_taught
        )
        final = None
        if suggestions and suggestions.strip():
            final = await self._ask(
                row, "self_teach", p, self.teach, original=pre, current=co_taught, suggestions=suggestions
            )
        if final is not None:
            writer = (p.model, "self_teach")
        trace = {
            "co_taught": co_taught,
            "co_teachers": " → ".join(used),
            "suggestions": suggestions,
            "aaa": final if final is not None else co_taught,
        }
        return await self._decide(row, trace, writer)

    async def _decide(
        self, row: dict[str, Any], trace: dict[str, Any], writer: tuple[str | None, str]
    ) -> dict[str, Any]:
        """Guard, re-judge, keep-if-improved: the columns of one refined row."""
        p: RefineParams = self.params
        c, pre, aaa = p.column, row[p.column], trace["aaa"]
        reverted = any(s.lower() in aaa.lower() for s in p.revert_if_contains if s)
        verdict: Verdict | None = None
        if not reverted and aaa != pre:  # unchanged text (every call failed): nothing to judge
            (verdict,) = await self.scorer.score(self.engine, [(str(row[ROW_ID]), row, aaa)])
        pre_score = row.get(self.prefix)
        improved = None if verdict is None or pre_score is None else verdict.composite > float(pre_score)
        keep = verdict is not None and (
            not p.keep_if_improved or pre_score is None or verdict.composite >= float(pre_score)
        )
        out = {
            **self._unchanged(row),
            f"{c}_aaa_reverted": reverted,
            f"{c}_aaa_applied": keep,
            f"{c}_aaa_improved": improved,
            **{f"{c}_{k}": v for k, v in trace.items()},
            **self.scorer.as_columns(verdict, f"{c}_aaa_score"),
        }
        if keep:
            out.update(
                {
                    c: aaa,
                    **self.scorer.as_columns(verdict, self.prefix),
                    f"{c}_model": self.ctx.llm.identity(writer[0]),
                    f"{c}_written_by": writer[1],
                }
            )
        return out

    def _unchanged(self, row: dict[str, Any]) -> dict[str, Any]:
        """The columns of a row whose final text stays the pre-AAA candidate."""
        c = self.params.column
        pre_scores = {
            f"{c}_pre_aaa_score{k[len(self.prefix) :]}": row.get(k) for k in self.scorer.columns(self.prefix)
        }
        return {
            f"{c}_model": self.ctx.llm.identity(self.params.source_model),
            f"{c}_written_by": "generate",
            f"{c}_aaa_applied": False,
            f"{c}_aaa_improved": None,
            f"{c}_aaa_reverted": False,
            f"{c}_pre_aaa": row[c],
            **pre_scores,
            f"{c}_co_teachers": "",
            f"{c}_co_taught": None,
            f"{c}_suggestions": None,
            f"{c}_aaa": None,
            **self.scorer.as_columns(None, f"{c}_aaa_score"),
        }

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        rows = io.records(df)
        if not self.params.active:
            updates = [self._unchanged(r) for r in rows]
        else:
            updates = list(await asyncio.gather(*(self._refine(r) for r in rows)))
        return out_frame(df, list(range(len(rows))), updates, self.out_columns(), self.where)
