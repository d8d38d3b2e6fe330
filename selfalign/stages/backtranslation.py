"""Instruction backtranslation (Humpback): segment documents, iterated self-curation, seed mix."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from dataclasses import dataclass, replace
from typing import Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.errors import InputError, ParseError, StageError
from selfalign.llm.base import ChatRequest
from selfalign.parsers import parse_score
from selfalign.stages.base import ROW_ID, Stage, register_stage
from selfalign.stages.generate import PromptStage
from selfalign.stages.llm_util import RETRY_STRIDE, Job, LLMParams, Outcome, drop_reason
from selfalign.text import count_tokens

# paragraph → sentence → word: each level is tried only for pieces still over the limit
_LEVELS = ((re.compile(r"\n\s*\n"), "\n\n"), (re.compile(r"(?<=[.!?])\s+"), " "),
           (re.compile(r"\s+"), " "))


def _pack(units: list[str], max_tokens: int, sep: str) -> list[str]:
    """Greedily join consecutive units while the joined piece stays within max_tokens."""
    out: list[str] = []
    cur: list[str] = []
    size = 0
    for unit in units:
        n = count_tokens(unit)
        if cur and size + n > max_tokens:
            out.append(sep.join(cur))
            cur, size = [], 0
        cur.append(unit)
        size += n
    if cur:
        out.append(sep.join(cur))
    return out


def segment(text: str, max_tokens: int, level: int = 0) -> list[str]:
    """Split text into pieces of at most max_tokens (count_tokens), cutting at paragraph breaks
    first, then sentence ends, then spaces. A single word longer than the limit stays whole."""
    text = text.strip()
    if not text:
        return []
    if count_tokens(text) <= max_tokens or level == len(_LEVELS):
        return [text]
    split, sep = _LEVELS[level]
    units = [u for part in split.split(text) for u in segment(part, max_tokens, level + 1)]
    return _pack(units, max_tokens, sep)


@dataclass
class SegmentParams:
    column: str = doc("column holding the documents", "text")
    output: str = doc("column for each piece (the source column is removed if different)",
                      "response")
    max_tokens: int | None = doc("split documents longer than this; null = one piece each", None)

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("`max_tokens` must be >= 1 or null")


@register_stage
class SegmentText(Stage):
    """One row per piece of each document (doc_id, segment); empty documents are dropped."""

    kind = "segment_text"
    Params = SegmentParams

    def reads(self) -> set[str]:
        return {self.params.column}

    def writes(self) -> set[str]:
        return {self.params.output, "doc_id", "segment"}

    def removes(self) -> set[str]:
        p: SegmentParams = self.params
        return {p.column} if p.column != p.output else set()

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: SegmentParams = self.params
        out: list[dict[str, Any]] = []
        for row in io.records(df):
            pieces = segment(str(row.pop(p.column) or ""), p.max_tokens or sys.maxsize)
            if not pieces:
                self.ctx.stats.drop(self.name, f"empty:{p.column}")
            rid = str(row[ROW_ID])
            for k, piece in enumerate(pieces):
                # a document that fits keeps its id, so ids do not depend on max_tokens
                new_id = rid if len(pieces) == 1 else f"{rid}.s{k}"
                out.append({**row, ROW_ID: new_id, "doc_id": rid, "segment": k, p.output: piece})
        cols = [c for c in df.columns if c != p.column] + ["doc_id", "segment", p.output]
        return pd.DataFrame.from_records(out, columns=list(dict.fromkeys(cols)))


_WORD = re.compile(r"\w+")


def copy_overlap(instruction: str, response: str, n: int = 2) -> float:
    """Share of the instruction's word n-grams (lowercased) that also occur in the response:
    near 1 when the "instruction" is the text copied back, which small models often do."""
    def grams(text: str) -> list[tuple[str, ...]]:
        words = _WORD.findall(text.lower())
        return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]

    ins = grams(instruction)
    if not ins:
        return 0.0
    seen = set(grams(response))
    return sum(g in seen for g in ins) / len(ins)


@dataclass
class CurateParams(LLMParams):
    prompt: str = doc("rubric prompt template (needs instruction and response)", "")
    system_prompt: str | None = doc("system prompt template name", None)
    vars: dict[str, Any] = doc("constants visible to the templates", factory=dict)
    iterations: int = doc("curation rounds; round k uses models[k-1]", 1)
    models: list[str | None] = doc("one curation model per round, named in `models:` (null = "
                                   "the run's model); [] = `model` for every round", factory=list)
    threshold: float | None = doc("keep pairs whose final score >= this (null = keep all)", 5.0)
    rescore: Literal["all", "kept"] = doc("round k scores all pairs (paper) or only those "
                                          "round k-1 kept", "all")
    best_per: str | None = doc("if this column exists (n > 1 candidates), keep the best-scoring "
                               "pair per value (ties: first)", "parent_id")
    retry_temperature: float | None = doc("temperature of retries after an unparsable score "
                                          "(null = same as the first try)", 0.7)
    max_copy_overlap: float | None = doc("drop pairs (before judging) whose instruction shares "
                                         "more of its word bigrams with the response than "
                                         "this; null = off", 0.8)
    score_min: float = doc("lowest valid score", 1.0)
    score_max: float = doc("highest valid score", 5.0)

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("`prompt` is required (a template name)")
        if self.iterations < 1:
            raise ValueError("`iterations` must be >= 1")
        if self.models and len(self.models) != self.iterations:
            raise ValueError(
                f"`models` has {len(self.models)} entries but iterations={self.iterations}: give "
                "one curation model per iteration, e.g. curation.models=[null,m1] with "
                "iterations=2 (m1 defined under `models:`), or [] to use `model` for all.")


@register_stage
class CuratePairs(PromptStage):
    """Rubric-score instruction/response pairs for `iterations` rounds; keep score >= threshold.

    Each round may use its own model (e.g. one fine-tuned on the previous round's data)."""

    kind = "curate_pairs"
    Params = CurateParams

    def __init__(self, name: str, params: CurateParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.round_models = list(params.models) or [params.model] * params.iterations
        for k, ref in enumerate(self.round_models):
            ctx.llm.check_ref(ref, f"{self.where}.models[{k}]")
        for k in range(1, params.iterations):
            if self.round_models[k] == self.round_models[k - 1]:
                ctx.console.log(f"[yellow]{self.where}: rounds {k} and {k + 1} use the same model "
                                f"and prompt, so round {k + 1} repeats round {k}'s scores.")

    def reads(self) -> set[str]:
        copy_check = {"instruction", "response"} if self.params.max_copy_overlap is not None \
            else set()
        return super().reads() | copy_check

    def writes(self) -> set[str]:
        per_round = {f"{c}_iter{k}" for k in range(1, self.params.iterations + 1)
                     for c in ("score", "reasoning")} if self.params.iterations > 1 else set()
        return {"score", "reasoning"} | per_round

    def fingerprint_extra(self) -> str:
        """Every round's model identity (the runner only sees `model`)."""
        return "|".join(self.ctx.llm.identity(ref) for ref in self.round_models)

    def parse(self, text: str) -> dict[str, Any]:
        p: CurateParams = self.params
        out = parse_score(text, min=p.score_min, max=p.score_max)
        head, _, rest = text.strip().partition("\n")
        if not out["reasoning"] and rest.strip():
            with contextlib.suppress(ParseError):  # small judges often explain after the score
                parse_score(head, min=p.score_min, max=p.score_max)
                out["reasoning"] = rest.strip()
        return out

    async def _one(self, job: Job, ref: str | None, tries: list[dict[str, Any]]) -> Outcome:
        """Like llm_util.run_jobs, but a retry may sample hotter: a greedy judge that left out
        its score would only repeat itself."""
        out = Outcome(job)
        for attempt, sampling in enumerate(tries):
            req = ChatRequest.make(job.messages, sampling, job.sample + attempt * RETRY_STRIDE,
                                   stage=self.name, row_id=job.row_id)
            res = await self.ctx.llm.call(self.name, ref, req)
            out.attempts, out.raw = attempt + 1, res.text
            if not res.ok:
                out.error = f"llm_error: {res.error}"
                return out
            try:
                out.fields, out.error = self.parse(res.text or ""), None
                return out
            except ParseError as exc:
                out.error = f"parse: {exc.reason}"
        return out

    async def _round(self, rows: list[dict[str, Any]], k: int) -> dict[int, Outcome]:
        p: CurateParams = self.params
        ref = self.round_models[k - 1]
        first = replace(p, model=ref).sampling(self.ctx.llm.model_config(ref).supports_json_schema)
        retry = {**first, "temperature": p.retry_temperature} \
            if p.retry_temperature is not None else first
        tries = [first] + [retry] * p.retries
        jobs = [Job(str(r[ROW_ID]), self.render(r), 0, i) for i, r in enumerate(rows)]
        with self.ctx.progress(f"{self.name} (round {k})", len(jobs)) as prog:
            async def run(job: Job) -> Outcome:
                o = await self._one(job, ref, tries)
                prog.advance(failed=not o.ok)
                return o
            outcomes = await asyncio.gather(*(run(j) for j in jobs))
        for o in outcomes:
            if not o.ok:
                if p.on_failure == "fail":
                    raise StageError(f"{self.where}: row {o.job.row_id} (round {k}) failed after "
                                     f"{o.attempts} attempt(s): {o.error}. Raw output: "
                                     f"{(o.raw or '')[:300]!r}")
                self.ctx.rejected.add(self.name, o.job.row_id, o.error or "", o.attempts, o.raw,
                                      iteration=k)
        return {o.job.tag: o for o in outcomes}

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: CurateParams = self.params
        rows = io.records(df)
        active = [i for i, r in enumerate(rows) if p.max_copy_overlap is None or copy_overlap(
            str(r["instruction"]), str(r["response"])) <= p.max_copy_overlap]
        self.ctx.stats.drop(self.name, "copied_response", len(rows) - len(active))
        for k in range(1, p.iterations + 1):
            tag = f"iter{k}:" if p.iterations > 1 else ""
            got = await self._round([rows[i] for i in active], k)
            scored = []
            for j, i in enumerate(active):
                o = got[j]
                rows[i]["score"] = o.fields.get("value") if o.ok else None
                rows[i]["reasoning"] = o.fields.get("reasoning") if o.ok else None
                if p.iterations > 1:
                    rows[i][f"score_iter{k}"] = rows[i]["score"]
                    rows[i][f"reasoning_iter{k}"] = rows[i]["reasoning"]
                if o.ok:
                    scored.append(i)
                elif k == p.iterations or p.rescore == "kept":
                    self.ctx.stats.drop(self.name, tag + drop_reason(o.error))
            if k == p.iterations or p.rescore == "kept":
                active = [i for i in scored
                          if p.threshold is None or rows[i]["score"] >= p.threshold]
                below = len(scored) - len(active)
                self.ctx.stats.drop(self.name, f"{tag}below_threshold", below)
        kept = self._best_per_group(pd.DataFrame.from_records([rows[i] for i in active],
                                                              columns=self._columns(df)))
        return kept.reset_index(drop=True)

    def _columns(self, df: pd.DataFrame) -> list[str]:
        return list(df.columns) + sorted(self.writes() - set(df.columns))

    def _best_per_group(self, df: pd.DataFrame) -> pd.DataFrame:
        col = self.params.best_per
        if not col or col not in df.columns or df.empty:
            return df
        order = df["score"].astype(float).sort_values(ascending=False, kind="stable").index
        best = df.loc[order].drop_duplicates(subset=[col], keep="first").sort_index()
        self.ctx.stats.drop(self.name, f"not_best_per:{col}", len(df) - len(best))
        return best


@dataclass
class MixParams:
    include_seed: bool = doc("append the seed pairs to the curated pairs", False)
    seed_path: str | None = doc("seed pairs file (JSONL/CSV/Parquet)", None)
    instruction_column: str = doc("seed file: instruction column", "instruction")
    response_column: str = doc("seed file: response column", "response")
    system_tags: bool = doc("tag each row's `system` by its source (else the column is empty)",
                            False)
    seed_tag: str = doc("system message for seed rows", "")
    augmented_tag: str = doc("system message for curated (augmented) rows", "")

    def __post_init__(self) -> None:
        if self.include_seed and not self.seed_path:
            raise ValueError("`include_seed` needs `seed_path` (a file of instruction/response "
                             "pairs)")
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
            raise InputError(f"{p.seed_path}: seed column(s) {missing} missing (found: "
                             f"{', '.join(map(str, df.columns))}). Set {self.where}."
                             "instruction_column / response_column.")
        return df[need].set_axis(["instruction", "response"], axis=1)

    def check(self, columns: set[str]) -> tuple[set[str], list[str]]:
        cols, problems = super().check(columns)
        if self.params.include_seed:
            try:
                self._seed(nrows=5)
            except InputError as exc:
                problems.append(f"{self.where}: {exc}")
        return cols, problems

    def fingerprint_extra(self) -> str:
        from pathlib import Path

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
