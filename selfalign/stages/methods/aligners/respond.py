"""Aligners responses: misaligned y, critique and aligned y′ from one completion."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from selfalign.config import doc
from selfalign.engine import Outcome, Policy
from selfalign.errors import ConfigError
from selfalign.parsers.critique import marker_pattern, parse_critique_correction
from selfalign.stages.base import register_stage
from selfalign.stages.llm import PromptParams, RowLLMStage

MARKERS = ("critique_marker", "correction_marker")


@dataclass
class CritiqueParams(PromptParams):
    critique_marker: str = doc("label before the critique (templates get it as a variable)", "Critique:")
    correction_marker: str = doc("label before the aligned response (also a variable)", "Correction:")
    strip_labels: list[str] = doc(
        "labels removed from the start of the misaligned response", factory=lambda: ["Response:"]
    )
    cut_at: list[str] = doc(
        "labels at a line start that end the aligned response", factory=lambda: ["Input:"]
    )
    misaligned: str = doc("output column: misaligned response y", "misaligned")
    critique: str = doc("output column: critique", "critique")
    aligned: str = doc("output column: aligned response y′", "aligned")

    def __post_init__(self) -> None:
        super().__post_init__()
        a, b = self.critique_marker.strip(), self.correction_marker.strip()
        if not a or not b or marker_pattern(a).match(b) or marker_pattern(b).match(a):
            raise ValueError(
                f"critique_marker {self.critique_marker!r} and correction_marker "
                f"{self.correction_marker!r} must be non-empty and neither may "
                "match the other (the split would be ambiguous)"
            )


@register_stage
class CritiqueAndCorrect(RowLLMStage):
    """One completion per row → misaligned response, critique, aligned response. The markers
    are parameters AND template variables, so demonstrations and parser cannot disagree."""

    kind = "critique_and_correct"
    Params = CritiqueParams
    injected = frozenset(MARKERS)

    def __init__(self, name: str, params: CritiqueParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        missing = [m for m in MARKERS if m not in self.templates.user["prompt"].variables]
        if missing:
            raise ConfigError(
                f"{self.where}.prompt: template '{params.prompt}' never uses {missing}; its "
                "demonstrations must be written with {{ critique_marker }} and "
                "{{ correction_marker }} so they match what the parser looks for."
            )
        self.parse = partial(
            parse_critique_correction,
            critique_marker=params.critique_marker,
            correction_marker=params.correction_marker,
            strip_labels=params.strip_labels,
            cut_at=params.cut_at,
        )

    def writes(self) -> set[str]:
        return set(self.new_columns())

    def render(self, row: dict[str, Any], role: str = "prompt", **extra: Any) -> list[dict[str, str]]:
        p: CritiqueParams = self.params
        return super().render(
            row, role, critique_marker=p.critique_marker, correction_marker=p.correction_marker, **extra
        )

    def new_columns(self) -> list[str]:
        p: CritiqueParams = self.params
        return [p.misaligned, p.critique, p.aligned]

    def policy(self) -> Policy:
        return Policy(parse=self.parse)

    def columns(self, row: dict[str, Any], o: Outcome | None) -> dict[str, Any]:
        p: CritiqueParams = self.params
        assert o is not None
        return {
            p.misaligned: o.fields["value"],
            p.critique: o.fields["critique"],
            p.aligned: o.fields["aligned"],
        }
