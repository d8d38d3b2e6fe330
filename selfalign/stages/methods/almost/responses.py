"""`generate_responses`: one response per prompt per named configuration, plus the rules that
build demonstrations, cut the assistant's turn and mark unusable responses."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from selfalign.config import doc
from selfalign.engine import Job, Outcome
from selfalign.errors import ConfigError
from selfalign.stages.base import PARENT_ID, ROW_ID, register_stage
from selfalign.stages.llm import PromptParams, RowLLMStage

_DONT_KNOW = re.compile(r"(don('|’)t|do not)\s+know", re.I)


def split_demos(text: str, separator: str = "-----") -> list[str]:
    """A demonstration set → [preamble, dialogue 1, dialogue 2, …] (separator lines split it)."""
    parts = re.split(rf"^[ \t]*{re.escape(separator)}[ \t]*$", text, flags=re.M)
    return [p.strip("\n") for p in parts if p.strip()]


def join_demos(segments: list[str], n_shot: int, separator: str = "-----") -> str:
    """Preamble + the first n_shot dialogues, each followed by the separator. n_shot=0 means
    none (the original kept the whole file for 0, because 0 is falsy)."""
    if n_shot < 0 or n_shot > len(segments) - 1:
        raise ValueError(f"n_shot={n_shot}, but the set has {len(segments) - 1} dialogue(s)")
    return "".join(f"{s}\n\n{separator}\n\n" for s in segments[: n_shot + 1]).rstrip("\n")


def cut_turn(text: str, separator: str = "-----") -> str:
    """The assistant's turn only: drop a repeated leading 'Assistant:' label (chat models add
    one), then cut where the next demonstration or turn marker starts, as the original did."""
    out = re.sub(r"^\s*assistant\s*:", "", text, count=1, flags=re.I)
    out = re.split(rf"\n[ \t]*{re.escape(separator)}", out, maxsplit=1)[0]
    return out.split("Assistant:")[0].split("Human:")[0].strip("\n ")


def bad_reason(text: str, min_chars: int = 50) -> str | None:
    """Why a response is unusable (the original's 'BAD' rules, in its order), else None."""
    if not text:
        return "empty"
    if len(text) < min_chars:
        return "too_short"
    if text[-1] in "?:":
        return "ends_with_question_or_colon"
    if text.lower().startswith("well"):
        return "starts_with_well"
    if text[-1] not in ".!":
        return "no_final_period"
    if _DONT_KNOW.search(text):
        return "says_dont_know"
    if "human:" in text.lower():
        return "contains_human_turn"
    if "<Image>" in text:
        return "contains_image_tag"
    return None


@dataclass
class ResponseConfig:
    """One cell of the grid: a model x a demonstration set x n_shot, with its own sampling."""

    name: str = doc("configuration name, used by the rubric")
    demos: str = doc("demonstration set: a prompt template name", "almost/demos_hhh")
    n_shot: int = doc("dialogues taken from the set (0 = none, only its preamble)", 1)
    model: str | None = doc("named model from `models:` (null = the stage's model)", None)
    max_tokens: int | None = doc("null = the stage's max_tokens", None)
    temperature: float | None = doc("null = the stage's temperature", None)
    top_p: float | None = doc("null = the stage's top_p", None)


@dataclass
class GenerateResponsesParams(PromptParams):
    configs: list[ResponseConfig] = doc(
        "the grid: {name, demos, n_shot, model?, max_tokens?, temperature?, top_p?} each", factory=list
    )
    prompt: str = doc("request template (demonstrations + row columns)", "almost/respond")
    separator: str = doc("line separating the segments of a demonstration set", "-----")
    output: str = doc("column for the response", "response")
    min_chars: int = doc("shorter responses are marked bad", 50)
    keep_raw: bool = doc("also keep the uncut model text in <output>_raw", False)
    temperature: float | None = doc("sampling temperature", 1.0)
    top_p: float | None = doc("nucleus sampling", 0.9)
    max_tokens: int = doc("completion token limit (configs may override)", 384)
    retries: int = doc("every text is a response (bad ones are marked), so no retries", 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.configs:
            raise ValueError("`configs` is empty: list at least one {name, demos, n_shot}")
        seen: set[str] = set()
        for i, cfg in enumerate(self.configs):
            if cfg.name in seen:
                raise ValueError(f"configs[{i}].name: '{cfg.name}' is used twice; names must be unique.")
            seen.add(cfg.name)

    def for_config(self, cfg: ResponseConfig) -> GenerateResponsesParams:
        """The stage's params with one configuration's model and sampling laid over them."""
        pick = lambda a, b: b if a is None else a  # noqa: E731 — 0 and 0.0 are real values
        return replace(
            self,
            model=cfg.model or self.model,
            max_tokens=pick(cfg.max_tokens, self.max_tokens),
            temperature=pick(cfg.temperature, self.temperature),
            top_p=pick(cfg.top_p, self.top_p),
        )


@register_stage
class GenerateResponses(RowLLMStage):
    """One response per prompt per named configuration (model x demonstration set x n_shot)."""

    kind = "generate_responses"
    Params = GenerateResponsesParams
    injected = frozenset({"demonstrations"})

    def __init__(self, name: str, params: GenerateResponsesParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.demos: dict[str, str] = {}
        self.demo_hashes: dict[str, str] = {}
        self.per_config = [params.for_config(c) for c in params.configs]  # each config's model + sampling
        for i, cfg in enumerate(params.configs):
            self._load_demos(cfg, f"{self.where}.configs[{i}]")

    def _load_demos(self, cfg: ResponseConfig, where: str) -> None:
        self.ctx.llm.check_ref(cfg.model or self.params.model, f"{where}.model")
        demos = self.ctx.prompts.get(cfg.demos, f"{where}.demos")
        if demos.variables:
            raise ConfigError(
                f"{where}.demos: '{demos.name}' must be plain text, but uses "
                f"{', '.join(sorted(demos.variables))}."
            )
        segments = split_demos(demos.render(), self.params.separator)
        try:
            self.demos[cfg.name] = join_demos(segments, cfg.n_shot, self.params.separator)
        except ValueError as exc:
            raise ConfigError(
                f"{where}.n_shot: {exc} ('{demos.name}'); use 0..{len(segments) - 1}."
            ) from None
        self.demo_hashes[demos.name] = demos.sha256

    def writes(self) -> set[str]:
        p: GenerateResponsesParams = self.params
        extra = {f"{p.output}_raw"} if p.keep_raw else set()
        return {PARENT_ID, "config", p.output, "bad", "bad_reason"} | extra

    def prompt_hashes(self) -> dict[str, str]:
        return {**self.templates.hashes(), **self.demo_hashes}

    def model_refs(self) -> set[str | None]:
        """Every model the grid calls (for a preflight of the endpoints)."""
        return {c.model or self.params.model for c in self.params.configs}

    def request(self, row: dict[str, Any], config: str) -> list[dict[str, str]]:
        return self.render(row, demonstrations=self.demos[config])

    def jobs(self, row: dict[str, Any]) -> list[Job]:
        p: GenerateResponsesParams = self.params
        return [
            self.job(
                row,
                messages=self.request(row, c.name),
                tag=ci,
                params=self.per_config[ci],
                note={"config": c.name},
            )
            for ci, c in enumerate(p.configs)
        ]

    def columns(self, row: dict[str, Any], o: Outcome | None) -> dict[str, Any]:
        p: GenerateResponsesParams = self.params
        assert o is not None
        cfg = p.configs[o.job.tag]
        text = cut_turn(o.raw or "", p.separator)
        why = bad_reason(text, p.min_chars)
        if why:  # kept and marked; build_preferences drops it
            self.ctx.stats.count(self.name, f"bad:{why}")
        out = {
            ROW_ID: f"{row[ROW_ID]}.{cfg.name}",
            PARENT_ID: str(row[ROW_ID]),
            "config": cfg.name,
            p.output: text,
            "bad": why is not None,
            "bad_reason": why,
        }
        if p.keep_raw:
            out[f"{p.output}_raw"] = o.raw
        return out
