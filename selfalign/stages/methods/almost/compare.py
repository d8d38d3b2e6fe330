"""`build_preferences`: rank each prompt's good responses by the rubric and pair them, best first."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.errors import ConfigError, StageError
from selfalign.registry import did_you_mean
from selfalign.stages.base import PARENT_ID, ROW_ID, Stage, StageSpec, register_stage
from selfalign.stages.methods.almost.responses import bad_reason

# a rubric entry: one configuration name, or a tie group of names sharing one rank
RubricEntry = str | list[str]


def rubric_ranks(rubric: list[RubricEntry]) -> dict[str, int]:
    """Config name → rank (0 = best). A nested list is a tie group sharing one rank."""
    ranks: dict[str, int] = {}
    for rank, entry in enumerate(rubric):
        for name in [entry] if isinstance(entry, str) else entry:
            if name in ranks:
                raise ValueError(f"rubric: '{name}' appears more than once")
            ranks[name] = rank
    return ranks


def chain_pairs(
    responses: dict[str, str], ranks: dict[str, int], length_filter: bool = True, skip_identical: bool = True
) -> tuple[list[tuple[str, str]], Counter[str]]:
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
    rubric: list[RubricEntry] = doc("config names best first; a nested list is a tie group")
    grid: list[str] = doc(
        "the generate_responses stages whose configurations the rubric ranks "
        "(each rubric name is checked against them; [] = no check)",
        factory=list,
    )
    config_column: str = doc("column naming each response's configuration", "config")
    response: str = doc("response column", "response")
    prompt: str = doc("prompt column (copied to the output)", "prompt")
    bad_column: str | None = doc(
        "bool column marking unusable responses (null = apply the rules here)", "bad"
    )
    group_by: str = doc("rows of one prompt share this column", PARENT_ID)
    length_filter: bool = doc("the heuristic length filter (len >= mean - std/2)", True)
    skip_identical: bool = doc("never pair two identical texts (the original did)", True)
    min_chars: int = doc("rules applied here (bad_column null): shortest good response", 50)

    def __post_init__(self) -> None:
        if not self.rubric:
            raise ValueError("`rubric` is empty: list the config names, best first")
        for i, entry in enumerate(self.rubric):
            if not entry:
                raise ValueError(f"rubric[{i}]: an empty tie group; list at least one name")
        rubric_ranks(self.rubric)


@register_stage
class BuildPreferences(Stage):
    """Per prompt: drop bad responses, rank by the rubric, emit a chain of chosen/rejected pairs."""

    kind = "build_preferences"
    Params = BuildPreferencesParams
    refs = {"grid": "generate_responses"}

    def __init__(
        self, name: str, params: BuildPreferencesParams, ctx: Any, peers: dict[str, StageSpec] | None = None
    ) -> None:
        super().__init__(name, params, ctx, peers)
        self.ranks = rubric_ranks(params.rubric)
        if missing := [s for s in params.grid if s not in self.peers]:
            # the runner resolves `grid` (refs); only a stage built by hand can lack it
            raise ConfigError(
                f"{self.where}.grid: stage(s) {', '.join(missing)} not resolved; "
                f"build the stage through the runner or pass peers."
            )

    def configurations(self) -> list[str]:
        """Configuration names of the `grid` stages, in pipeline config order."""
        return [c.name for stage in self.params.grid for c in self.peers[stage].params.configs]

    def reads(self) -> set[str]:
        p: BuildPreferencesParams = self.params
        return {p.config_column, p.response, p.prompt, p.group_by} | (
            {p.bad_column} if p.bad_column else set()
        )

    def writes(self) -> set[str]:
        return {"chosen", "rejected", "meta", "chosen_config", "rejected_config"}

    def removes(self) -> set[str]:
        p: BuildPreferencesParams = self.params
        return {p.config_column, p.response, "bad_reason", "sample"} | (
            {p.bad_column} if p.bad_column else set()
        )

    def check(self, columns: set[str]) -> tuple[set[str], list[str]]:
        out, problems = super().check(columns)
        grid = self.configurations()
        for name in (n for n in self.ranks if grid and n not in grid):
            problems.append(
                f"{self.where}.rubric: '{name}' is not a configuration of the grid "
                f"({', '.join(self.params.grid)}).{did_you_mean(name, grid)} "
                f"Configurations: {', '.join(grid)}."
            )
        return out, problems

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: BuildPreferencesParams = self.params
        cols = [c for c in df.columns if c not in self.removes()]
        if df.empty:
            return pd.DataFrame(columns=cols + sorted(self.writes()))
        out: list[dict[str, Any]] = []
        for gid, group in df.groupby(p.group_by, sort=False):
            good = self._good(io.records(group))
            pairs, skipped = chain_pairs(
                {c: r[p.response] for c, r in good.items()}, self.ranks, p.length_filter, p.skip_identical
            )
            for rule, n in skipped.items():  # candidate pairs, not rows: a count, not a drop
                self.ctx.stats.count(self.name, f"pair_skipped:{rule}", n)
            if len(good) < 2:
                self.ctx.stats.drop(self.name, "prompt_fewer_than_2_good", len(good))
            base = {c: group.iloc[0][c] for c in cols}
            for k, (better, worse) in enumerate(pairs):
                out.append(
                    {
                        **base,
                        ROW_ID: f"{gid}.{k}",
                        "chosen": good[better][p.response],
                        "rejected": good[worse][p.response],
                        "meta": f"{better}-vs-{worse}",
                        "chosen_config": better,
                        "rejected_config": worse,
                    }
                )
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
                raise StageError(
                    f"{self.where}: prompt group '{r[p.group_by]}' has two "
                    f"responses for config '{config}'; one per config is expected."
                )
            else:
                good[config] = r
        return good
