"""Aligners questions: `generate_questions` asks for one question per topic, several per prompt."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.engine import Job, Outcome, Policy
from selfalign.errors import ConfigError, ParseError
from selfalign.stages.base import register_stage
from selfalign.stages.llm import LLMStage, PromptParams, out_frame

QUESTION_VARS = frozenset({"hints", "examples", "first", "last"})  # last: the last new number
# "6. type: T, topic: P, question: Q" — numbering may use ")" and markdown bold may wrap parts
_LINE = re.compile(r"^\s*[*_]*\s*(\d+)\s*[.):]\s*[*_]*\s*type\s*:(?P<rest>.*)$", re.I)
_TOPIC = re.compile(r",?\s*topic\s*:", re.I)
_QUESTION = re.compile(r",?\s*question\s*:", re.I)
_END = re.compile(r"[.?!\"')\]]\s*$")


def _norm(text: str) -> str:
    return " ".join(text.replace("*", "").lower().split()).strip(" .,;:'\"")


def split_question_line(line: str) -> tuple[int, str, str, str] | None:
    """(number, type, topic, question) of a formatted line, else None. The question is all the
    text after the first "question:" that follows "topic:" (the original took the text after
    the LAST "question:", which cut questions that themselves contain the word)."""
    m = _LINE.match(line)
    if not m:
        return None
    rest = m.group("rest")
    t_hit = _TOPIC.search(rest)
    q_hit = _QUESTION.search(rest, t_hit.end()) if t_hit else None
    if not t_hit or not q_hit:
        return None
    qtype, topic = rest[: t_hit.start()].strip(), rest[t_hit.end() : q_hit.start()].strip()
    question = rest[q_hit.end() :].replace("**", "").strip()
    if not question.strip(".… "):
        question = ""  # the prompt's "..." placeholder left unfilled
    return int(m.group(1)), qtype, topic, question


def parse_questions(text: str, hints: list[dict[str, Any]]) -> dict[str, Any]:
    """Questions for the given hints ({number, type, topic}) → {"value": {number: question},
    "dropped": Counter}. A line is matched to a hint by topic (and type, when several hints
    share the topic), preferring the hint with the same number; lines for unknown hints
    (e.g. echoed demonstrations), repeats, empty questions and an unfinished last line are
    dropped with a reason. Zero questions is a parse failure (the prompt is retried)."""
    parsed, dropped = [], Counter[str]()
    for line in (ln for ln in text.splitlines() if ln.strip()):
        fields = split_question_line(line)
        if fields is None:
            dropped["unformatted_line"] += 1
        else:
            parsed.append(fields)
    if parsed and not _END.search(parsed[-1][3]):
        dropped["truncated_last_line"] += 1  # cut off by max_tokens mid-sentence
        parsed.pop()
    answers: dict[int, str] = {}
    for number, qtype, topic, question in parsed:
        hint = _match_hint(hints, number, qtype, topic)
        if hint is None:
            dropped["unknown_hint"] += 1
        elif hint["number"] in answers:
            dropped["repeated_hint"] += 1
        elif not question:
            dropped["empty_question"] += 1
        else:
            answers[hint["number"]] = question
    if not answers:
        raise ParseError("no_valid_question", f"no usable line among {len(parsed)} formatted")
    return {"value": answers, "dropped": dropped}


def _match_hint(hints: list[dict[str, Any]], number: int, qtype: str, topic: str) -> dict[str, Any] | None:
    same_topic = [h for h in hints if _norm(h["topic"]) == _norm(topic)]
    for h in same_topic:
        if h["number"] == number:
            return h
    exact = [h for h in same_topic if _norm(h["type"]) == _norm(qtype)]
    return (exact or same_topic or [None])[0]


def read_seed_examples(path: str, where: str) -> list[dict[str, str]]:
    """Seed rows {question_type, topic, question}, shown as question-writing examples."""
    df = io.read_table(path)
    missing = {"question_type", "topic", "question"} - set(df.columns)
    if missing:
        raise ConfigError(
            f"{where}: {path} lacks column(s) {sorted(missing)}; every seed row "
            "needs question_type, topic and question."
        )
    return [{k: str(r[k]) for k in ("question_type", "topic", "question")} for r in io.records(df)]


@dataclass
class QuestionsParams(PromptParams):
    prompt: str = doc("template; gets hints, examples, first, last (+ vars)", "aligners/questions")
    seeds: str = doc("file of {question_type, topic, question} example rows", "")
    examples: int = doc("example questions shown per prompt (drawn from `seeds`)", 5)
    topics_per_prompt: int = doc("topic hints each prompt asks questions for", 5)
    type_column: str = doc("column holding the question type", "question_type")
    topic_column: str = doc("column holding the topic", "topic")
    output: str = doc("column for the question", "question")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.seeds:
            raise ValueError("`seeds` is required (a file of example questions)")
        if self.examples < 0 or self.topics_per_prompt < 1:
            raise ValueError("examples must be >= 0 and topics_per_prompt >= 1")


@register_stage
class GenerateQuestions(LLMStage):
    """Per batch of topic rows: a prompt with numbered type/topic hints and example questions;
    the reply's numbered "type: T, topic: P, question: Q" lines give one question per topic."""

    kind = "generate_questions"
    Params = QuestionsParams
    injected = QUESTION_VARS

    def __init__(self, name: str, params: QuestionsParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        # a prompt covers several topic rows: no single row's column can fill a variable
        unknown = self.templates.variables()
        if unknown:
            raise ConfigError(
                f"{self.where}.prompt: template '{params.prompt}' uses {sorted(unknown)}, but this "
                f"stage provides only {sorted(QUESTION_VARS)} (+ `vars`). Add them to `vars`."
            )
        self.seeds = read_seed_examples(params.seeds, f"{self.where}.seeds")

    def reads(self) -> set[str]:
        return {self.params.type_column, self.params.topic_column}

    def fingerprint_extra(self) -> str:
        """The example questions themselves, so an edited seed file re-runs this stage."""
        return json.dumps(self.seeds, sort_keys=True)

    def writes(self) -> set[str]:
        return {self.params.output}

    def _batches(self, df: pd.DataFrame) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """(topic rows, template values) per prompt; examples are a seeded draw from seeds."""
        p: QuestionsParams = self.params
        rows, rng = io.records(df), self.ctx.rng(self.name)
        out = []
        for start in range(0, len(rows), p.topics_per_prompt):
            batch = rows[start : start + p.topics_per_prompt]
            demos = rng.sample(self.seeds, min(p.examples, len(self.seeds)))
            examples = [
                {"number": i + 1, "type": d["question_type"], "topic": d["topic"], "question": d["question"]}
                for i, d in enumerate(demos)
            ]
            new = [
                {
                    "number": len(examples) + i + 1,
                    "type": str(r[p.type_column]),
                    "topic": str(r[p.topic_column]),
                }
                for i, r in enumerate(batch)
            ]
            values = {
                "examples": examples,
                "first": new[0]["number"],
                "last": new[-1]["number"],
                "hints": [{k: e[k] for k in ("number", "type", "topic")} for e in examples] + new,
            }
            out.append((batch, values))
        return out

    def _messages(self, values: dict[str, Any]) -> list[dict[str, str]]:
        return self.templates.render("prompt", **values)

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        return [self._messages(v) for _, v in self._batches(df)[:k]]

    async def process(self, df: pd.DataFrame) -> pd.DataFrame:
        p: QuestionsParams = self.params
        batches = self._batches(df)

        def policy(values: dict[str, Any]) -> Policy:
            new = [h for h in values["hints"] if h["number"] >= values["first"]]
            return Policy(parse=lambda text: parse_questions(text, new))

        # one engine call per prompt (all in flight at once): each reply is parsed against
        # its own prompt's hints, with the usual retry-on-parse-failure policy
        results = await asyncio.gather(
            *(
                self.engine.call(Job(f"q{i}", self._messages(v), 0, i), policy(v))
                for i, (_, v) in enumerate(batches)
            )
        )
        picks: list[int] = []  # the topic row of each question (it keeps its row_id)
        questions: list[dict[str, Any]] = []
        start = 0
        for (batch, values), o in zip(batches, results, strict=True):
            for i, question in self._answered(o, batch, values["first"]):
                picks.append(start + i)
                questions.append({p.output: question})
            start += len(batch)
        return out_frame(df, picks, questions, [p.output], self.where)

    def _answered(self, o: Outcome, batch: list[dict[str, Any]], first: int) -> list[tuple[int, str]]:
        """(row in the batch, its question) for each row that got one; drops counted."""
        if not o.ok:
            self.drop_failed(o, len(batch))
            return []
        for reason, n in o.fields["dropped"].items():
            self.ctx.stats.drop(self.name, f"line:{reason}", n)
        got = []
        for i in range(len(batch)):
            question = o.fields["value"].get(first + i)
            if question is None:
                self.ctx.stats.drop(self.name, "no_question")
                continue
            got.append((i, question))
        return got
