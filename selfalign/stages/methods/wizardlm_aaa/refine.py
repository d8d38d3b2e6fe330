"""`refine_aaa`: WizardLM-2 "AI Align AI" — co-teaching chain, suggestions, self-teaching, re-judge."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from omegaconf import OmegaConf

from selfalign import io
from selfalign.config import doc, parse_params
from selfalign.context import StageProgress
from selfalign.errors import ConfigError
from selfalign.parsers.labelled import PARSER_OPTIONS, parse_labelled_text
from selfalign.stages.base import ROW_ID, Stage, register_stage
from selfalign.stages.judge import JudgeParams, Scorer, Verdict
from selfalign.stages.llm_util import Job, LLMParams, messages, run_jobs

INJECTED = frozenset({"text", "kind", "original", "current", "suggestions"})


@dataclass
class CoTeacher:
    model: str | None = doc("named model from `models:` (null = the run's model)", None)
    temperature: float | None = doc("sampling temperature (null = the stage's)", None)
    top_p: float | None = doc("nucleus sampling (null = the stage's)", None)
    max_tokens: int | None = doc("token limit (null = the stage's)", None)
    seed: int | None = doc("backend seed", None)
    extra: dict[str, Any] = doc("extra backend params", factory=dict)
    label: str | None = doc("name recorded in <column>_co_teachers", None)


@dataclass
class RefineParams(LLMParams):
    column: str = doc("text column to refine", "instruction")
    text_kind: Literal["instruction", "response"] = doc("instruction | response", "instruction")
    co_teach_prompt: str = doc("co-teaching prompt template", "wizardlm_aaa/co_teach")
    suggest_prompt: str = doc("suggestions prompt template", "wizardlm_aaa/suggest")
    self_teach_prompt: str = doc("self-teaching prompt template", "wizardlm_aaa/self_teach")
    system_prompt: str | None = doc("system prompt template for all three", None)
    vars: dict[str, Any] = doc("constants visible to the templates", factory=dict)
    co_teach_models: list[Any] = doc("co-teachers in chain order: a model name, or {model, "
                                     "temperature, top_p, max_tokens, seed, extra, label}",
                                     factory=list)
    max_co_teach_llms: int = doc("use at most this many co-teachers (the first ones)", 3)
    suggest_max_tokens: int = doc("token limit of the suggestions list", 160)
    keep_if_improved: bool = doc("keep the AAA text only if its composite is not lower "
                                 "(false = always replace, as the original)", True)
    revert_if_contains: list[str] = doc("guard: an AAA text containing any of these "
                                        "(case-insensitive) falls back to the pre-AAA text",
                                        factory=list)
    judge_stage: str | None = doc("judge_pointwise stage whose settings re-judge the result", None)
    judge: dict[str, Any] | None = doc("judge settings, if not taken from judge_stage", None)
    active: bool = doc("false = pass through (AAA disabled) with the same output columns", True)
    source_model: str | None = doc("model that wrote the incoming text (recorded)", None)
    parser: dict[str, Any] = doc("labelled_text options for the co-/self-teach outputs: "
                                 "labels, cut_at, min_chars, max_chars", factory=dict)

    def __post_init__(self) -> None:
        if self.max_co_teach_llms < 0:
            raise ValueError("`max_co_teach_llms` must be >= 0")
        unknown = set(self.parser) - PARSER_OPTIONS
        if unknown:
            raise ValueError(f"parser: unknown option(s) {', '.join(sorted(unknown))}; "
                             f"valid: {', '.join(sorted(PARSER_OPTIONS))}")
        if (self.judge_stage is None) == (self.judge is None):
            raise ValueError("set exactly one of `judge_stage` (a judge_pointwise stage name) "
                             "or `judge` (its settings)")


@dataclass
class Step:
    """One co-teacher of the chain: its params (model + sampling) and its label."""

    params: LLMParams
    label: str


@register_stage
class RefineAaa(Stage):
    """AAA per row: co-teach chain, suggestions, self-teach, guard, re-judge, keep or revert.

    Rows run concurrently, each its own chain; the re-judge uses the judge stage's own Scorer."""

    kind = "refine_aaa"
    Params = RefineParams
    uses_llm = True

    def __init__(self, name: str, params: RefineParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        get = ctx.prompts.get
        self.system = (get(params.system_prompt, f"{self.where}.system_prompt")
                       if params.system_prompt else None)
        self.prompts = {k: get(getattr(params, f"{k}_prompt"), f"{self.where}.{k}_prompt")
                        for k in ("co_teach", "suggest", "self_teach")}
        ctx.llm.check_ref(params.model, f"{self.where}.model")
        ctx.llm.check_ref(params.source_model, f"{self.where}.source_model")
        self.chain = self._chain()
        self.scorer = Scorer(self._judge_params(), ctx, f"{self.where}.judge")
        self.prefix = self.scorer.p.output or f"{self.scorer.p.column}_score"
        opts = {"labels": [params.text_kind], **params.parser}
        self.parse = lambda text: parse_labelled_text(text, **opts)

    def _chain(self) -> list[Step]:
        p: RefineParams = self.params
        steps = []
        for i, raw in enumerate(p.co_teach_models[: p.max_co_teach_llms]):
            where = f"{self.where}.co_teach_models[{i}]"
            t = parse_params(CoTeacher, {"model": raw} if isinstance(raw, str) or raw is None
                             else raw, where)
            self.ctx.llm.check_ref(t.model, f"{where}.model")
            changes = {k: getattr(t, k) for k in ("temperature", "top_p", "max_tokens", "seed")
                       if getattr(t, k) is not None}
            params = dataclasses.replace(p, model=t.model, extra={**p.extra, **t.extra},
                                         **changes)
            label = t.label or self._label(params)
            steps.append(Step(params, label))
        return steps

    def _label(self, params: LLMParams) -> str:
        temp = "" if params.temperature is None else f" T={params.temperature:g}"
        return f"{params.model or 'default'}{temp}"

    def _judge_params(self) -> JudgeParams:
        p: RefineParams = self.params
        if p.judge is not None:
            return parse_params(JudgeParams, p.judge, f"{self.where}.judge")
        stages = self.ctx.cfg.pipeline.stages if self.ctx.cfg is not None else {}
        if p.judge_stage not in stages:
            raise ConfigError(f"{self.where}.judge_stage: no stage '{p.judge_stage}' in this "
                              f"pipeline (stages: {', '.join(stages)}).")
        raw = stages[p.judge_stage]
        if OmegaConf.is_config(raw):
            raw = OmegaConf.to_container(raw, resolve=True)
        raw = {k: v for k, v in dict(raw).items() if k not in ("kind", "enabled")}
        if stages[p.judge_stage].get("kind") != "judge_pointwise":
            raise ConfigError(f"{self.where}.judge_stage: '{p.judge_stage}' is not a "
                              "judge_pointwise stage.")
        return parse_params(JudgeParams, raw, f"pipeline.stages.{p.judge_stage}")

    # ---- column flow ---------------------------------------------------------------------
    def reads(self) -> set[str]:
        p: RefineParams = self.params
        names: set[str] = set()
        for prompt in [*self.prompts.values(), *([self.system] if self.system else [])]:
            names |= set(prompt.variables)
        names = names - set(p.vars) - INJECTED - {"row"}
        return names | self.scorer.template_vars() | {p.column, *self.scorer.columns(self.prefix)}

    def out_columns(self) -> list[str]:
        """The columns this stage adds, in the order they are written."""
        c = self.params.column
        return [f"{c}_{s}" for s in ("model", "written_by", "aaa_applied", "aaa_improved",
                                     "aaa_reverted", "pre_aaa")] \
            + self.scorer.columns(f"{c}_pre_aaa_score") \
            + [f"{c}_{s}" for s in ("co_teachers", "co_taught", "suggestions", "aaa")] \
            + self.scorer.columns(f"{c}_aaa_score")

    def writes(self) -> set[str]:
        return set(self.out_columns())

    def prompt_hashes(self) -> dict[str, str]:
        out = {pr.name: pr.sha256 for pr in self.prompts.values()}
        if self.system:
            out[self.system.name] = self.system.sha256
        return {**out, **self.scorer.prompt_hashes()}

    def fingerprint_extra(self) -> str:
        """The co-teachers' and the judge's models and settings (the judge may be another stage's)."""
        chain = [(s.label, self.ctx.llm.identity(s.params.model)) for s in self.chain]
        judge = (dataclasses.asdict(self.scorer.p), self.ctx.llm.identity(self.scorer.p.model))
        return repr([chain, judge])

    # ---- running ---------------------------------------------------------------------------
    def render(self, step: str, row: dict[str, Any], **texts: Any) -> list[dict[str, str]]:
        p: RefineParams = self.params
        values = {**row, **p.vars, "row": row, "kind": p.text_kind, **texts}
        system = self.system.render(**values) if self.system else None
        return messages(self.prompts[step].render(**values), system)

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        out = []
        for r in io.records(df.head(k)):
            text = r.get(self.params.column) or ""
            out += [self.render("co_teach", r, text=text),
                    self.render("suggest", r, original=text, current=text),
                    self.render("self_teach", r, original=text, current=text, suggestions="1. …")]
        return out

    async def _call(self, params: LLMParams, row: dict[str, Any], msgs: list[dict[str, str]],
                    parse: Any, prog: StageProgress) -> str | None:
        job = Job(str(row[ROW_ID]), msgs, 0, None)
        (out,) = await run_jobs(self.ctx, self.name, params, [job], parse, prog)
        return out.fields.get("value") if out.ok else None

    async def _refine(self, row: dict[str, Any], prog: StageProgress) -> dict[str, Any]:
        p: RefineParams = self.params
        pre = row[p.column]
        current, writer, used = pre, (p.source_model, "generate"), []
        for step in self.chain:
            got = await self._call(step.params, row, self.render("co_teach", row, text=current),
                                   self.parse, prog)
            if got is not None:  # a failed co-teacher is skipped; the chain goes on
                current, writer = got, (step.params.model, f"co_teach:{step.label}")
                used.append(step.label)
        co_taught = current
        sugg_params = dataclasses.replace(p, max_tokens=p.suggest_max_tokens)
        suggestions = await self._call(sugg_params, row, self.render(
            "suggest", row, original=pre, current=co_taught), None, prog)
        final = None
        if suggestions and suggestions.strip():
            final = await self._call(p, row, self.render(
                "self_teach", row, original=pre, current=co_taught, suggestions=suggestions),
                self.parse, prog)
        if final is not None:
            writer = (p.model, "self_teach")
        trace = {"co_taught": co_taught, "co_teachers": " → ".join(used),
                 "suggestions": suggestions, "aaa": final if final is not None else co_taught}
        return await self._decide(row, trace, writer, prog)

    async def _decide(self, row: dict[str, Any], trace: dict[str, Any],
                      writer: tuple[str | None, str], prog: StageProgress) -> dict[str, Any]:
        """Guard, re-judge, keep-if-improved: the columns of one refined row."""
        p: RefineParams = self.params
        c, pre, aaa = p.column, row[p.column], trace["aaa"]
        reverted = any(s.lower() in aaa.lower() for s in p.revert_if_contains if s)
        verdict: Verdict | None = None
        if not reverted and aaa != pre:  # unchanged text (every call failed): nothing to judge
            (verdict,) = await self.scorer.score(self.name, [(str(row[ROW_ID]), row, aaa)], prog)
        pre_score = row.get(self.prefix)
        improved = None if verdict is None or pre_score is None \
            else verdict.composite > float(pre_score)
        keep = verdict is not None and (not p.keep_if_improved or pre_score is None
                                        or verdict.composite >= float(pre_score))
        out = {**self._unchanged(row), f"{c}_aaa_reverted": reverted, f"{c}_aaa_applied": keep,
               f"{c}_aaa_improved": improved, **{f"{c}_{k}": v for k, v in trace.items()},
               **self.scorer.as_columns(verdict, f"{c}_aaa_score")}
        if keep:
            out.update({c: aaa, **self.scorer.as_columns(verdict, self.prefix),
                        f"{c}_model": self.ctx.llm.identity(writer[0]),
                        f"{c}_written_by": writer[1]})
        return out

    def _unchanged(self, row: dict[str, Any]) -> dict[str, Any]:
        """The columns of a row whose final text stays the pre-AAA candidate."""
        c = self.params.column
        pre_scores = {f"{c}_pre_aaa_score{k[len(self.prefix):]}": row.get(k)
                      for k in self.scorer.columns(self.prefix)}
        return {f"{c}_model": self.ctx.llm.identity(self.params.source_model),
                f"{c}_written_by": "generate", f"{c}_aaa_applied": False,
                f"{c}_aaa_improved": None, f"{c}_aaa_reverted": False, f"{c}_pre_aaa": row[c],
                **pre_scores, f"{c}_co_teachers": "", f"{c}_co_taught": None,
                f"{c}_suggestions": None, f"{c}_aaa": None,
                **self.scorer.as_columns(None, f"{c}_aaa_score")}

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        rows = io.records(df)
        if not self.params.active:
            updates = [self._unchanged(r) for r in rows]
        else:
            with self.ctx.progress(self.name, 0) as prog:
                updates = list(await asyncio.gather(*(self._refine(r, prog) for r in rows)))
        out = [{**r, **u} for r, u in zip(rows, updates, strict=True)]
        cols = list(df.columns) + [c for c in self.out_columns() if c not in df.columns]
        return pd.DataFrame.from_records(out, columns=cols)
