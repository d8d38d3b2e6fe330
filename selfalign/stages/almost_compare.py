"""ALMoST comparisons: demonstration sets, response cut/quality rules, and `build_preferences`."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.errors import StageError
from selfalign.registry import did_you_mean
from selfalign.stages.base import PARENT_ID, ROW_ID, Stage, register_stage

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


def rubric_ranks(rubric: list[Any]) -> dict[str, int]:
    """Config name → rank (0 = best). A nested list is a tie group sharing one rank."""
    ranks: dict[str, int] = {}
    for rank, entry in enumerate(rubric):
        for name in [entry] if isinstance(entry, str) else entry:
            if name in ranks:
                raise ValueError(f"rubric: '{name}' appears more than once")
            ranks[name] = rank
    return ranks


def chain_pairs(responses: dict[str, str], ranks: dict[str, int], length_filter: bool = True,
                skip_identical: bool = True) -> tuple[list[tuple[str, str]], Counter[str]]:
    """(better, worse) config pairs for one prompt, and the candidate pairs skipped, by rule.

    `responses` holds the good responses only. Walk all ranked pairs best-first; a config (and
    its tie group) is chosen at most once; ties are never paired; if the better response is
    shorter than the worse one it must still be long enough: len >= mean - std/2 (population
    std over this prompt's good responses). About k-1 pairs for k configs. With
    `skip_identical`, two equal texts (after stripping) are not a pair: they teach nothing.
    """
    order = sorted(responses, key=lambda c: ranks[c])  # stable: rubric order within a tie
    skipped: Counter[str] = Counter()
    if len(order) < 2:
        return [], skipped
    lengths = {c: len(responses[c]) for c in order}
    floor = statistics.fmean(lengths.values()) - statistics.pstdev(lengths.values()) / 2
    pairs: list[tuple[str, str]] = []
    used_ranks: set[int] = set()
    for better, worse in combinations(order, 2):
        if ranks[better] in used_ranks or ranks[better] == ranks[worse]:
            continue
        if length_filter and lengths[better] < lengths[worse] and lengths[better] < floor:
            skipped["length_rule"] += 1
        elif skip_identical and responses[better].strip() == responses[worse].strip():
            skipped["identical"] += 1
        else:
            pairs.append((better, worse))
            used_ranks.add(ranks[better])
    return pairs, skipped


@dataclass
class BuildPreferencesParams:
    rubric: list[Any] = doc("config names best first; a nested list is a tie group")
    config_column: str = doc("column naming each response's configuration", "config")
    response: str = doc("response column", "response")
    prompt: str = doc("prompt column (copied to the output)", "prompt")
    bad_column: str | None = doc("bool column marking unusable responses (null = apply the "
                                 "rules here)", "bad")
    group_by: str = doc("rows of one prompt share this column", PARENT_ID)
    length_filter: bool = doc("the heuristic length filter (len >= mean - std/2)", True)
    skip_identical: bool = doc("never pair two identical texts (the original did)", True)
    min_chars: int = doc("rules applied here (bad_column null): shortest good response", 50)

    def __post_init__(self) -> None:
        if not self.rubric:
            raise ValueError("`rubric` is empty: list the config names, best first")
        for i, entry in enumerate(self.rubric):
            names = [entry] if isinstance(entry, str) else entry
            if not isinstance(names, list) or not names or \
                    not all(isinstance(n, str) for n in names):
                raise ValueError(f"rubric[{i}]: expected a config name or a list of names "
                                 f"(a tie group), got {entry!r}")
        rubric_ranks(self.rubric)


def grid_names(cfg: Any) -> list[str]:
    """Config names of the enabled generate_responses stages in a composed config."""
    stages = getattr(getattr(cfg, "pipeline", None), "stages", None) or {}
    names: list[str] = []
    for spec in stages.values():
        if spec.get("kind") == "generate_responses" and spec.get("enabled", True):
            names += [str(c.get("name")) for c in spec.get("configs") or []]
    return names


@register_stage
class BuildPreferences(Stage):
    """Per prompt: drop bad responses, rank by the rubric, emit a chain of chosen/rejected pairs."""

    kind = "build_preferences"
    Params = BuildPreferencesParams

    def __init__(self, name: str, params: BuildPreferencesParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        self.ranks = rubric_ranks(params.rubric)

    def reads(self) -> set[str]:
        p: BuildPreferencesParams = self.params
        return {p.config_column, p.response, p.prompt, p.group_by} | (
            {p.bad_column} if p.bad_column else set())

    def writes(self) -> set[str]:
        return {"chosen", "rejected", "meta", "chosen_config", "rejected_config"}

    def removes(self) -> set[str]:
        p: BuildPreferencesParams = self.params
        return {p.config_column, p.response, "bad_reason", "sample"} | (
            {p.bad_column} if p.bad_column else set())

    def check(self, columns: set[str]) -> tuple[set[str], list[str]]:
        out, problems = super().check(columns)
        grid = grid_names(self.ctx.cfg) if self.ctx.cfg is not None else []
        for name in (n for n in self.ranks if grid and n not in grid):
            problems.append(f"{self.where}.rubric: '{name}' is not a configuration of any "
                            f"generate_responses stage.{did_you_mean(name, grid)} "
                            f"Configurations: {', '.join(grid)}.")
        return out, problems

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: BuildPreferencesParams = self.params
        cols = [c for c in df.columns if c not in self.removes()]
        if df.empty:
            return pd.DataFrame(columns=cols + sorted(self.writes()))
        out: list[dict[str, Any]] = []
        for gid, group in df.groupby(p.group_by, sort=False):
            good = self._good(io.records(group))
            pairs, skipped = chain_pairs({c: r[p.response] for c, r in good.items()},
                                         self.ranks, p.length_filter, p.skip_identical)
            for rule, n in skipped.items():  # candidate pairs, not rows: a count, not a drop
                self.ctx.stats.count(self.name, f"pair_skipped:{rule}", n)
            if len(good) < 2:
                self.ctx.stats.drop(self.name, "prompt_fewer_than_2_good", len(good))
            base = {c: group.iloc[0][c] for c in cols}
            for k, (better, worse) in enumerate(pairs):
                out.append({**base, ROW_ID: f"{gid}.{k}", "chosen": good[better][p.response],
                            "rejected": good[worse][p.response], "meta": f"{better}-vs-{worse}",
                            "chosen_config": better, "rejected_config": worse})
        return pd.DataFrame.from_records(out, columns=cols + sorted(self.writes()))

    def _good(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """This prompt's usable responses by config; drops counted by reason."""
        p: BuildPreferencesParams = self.params
        good: dict[str, dict[str, Any]] = {}
        for r in rows:
            config, text = str(r[p.config_column]), r.get(p.response)
            text = text if isinstance(text, str) else ""
            if config not in self.ranks:
                reason: str | None = "not_in_rubric"
            elif not text:
                reason = "bad:empty"
            elif p.bad_column:
                reason = f"bad:{r.get('bad_reason') or 'marked'}" if r.get(p.bad_column) else None
            else:
                reason = f"bad:{why}" if (why := bad_reason(text, p.min_chars)) else None
            if reason:
                self.ctx.stats.drop(self.name, reason)
            elif config in good:
                raise StageError(f"{self.where}: prompt group '{r[p.group_by]}' has two "
                                  f"responses for config '{config}'; one per config is expected.")
            else:
                good[config] = r
        return good
