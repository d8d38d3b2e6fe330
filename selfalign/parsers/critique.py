"""`critique_correction`: one completion split into misaligned response, critique and correction."""

from __future__ import annotations

import re
from typing import Any

from selfalign.errors import ParseError
from selfalign.parsers.registry import parser


def marker_pattern(marker: str) -> re.Pattern[str]:
    """A marker at the start of a line, case-insensitive, tolerating markdown emphasis or a
    heading (`**Fact check:**`, `### Fact check:`) that chat models add around labels."""
    core = marker.strip()
    colon = core.endswith(":")
    core = core.rstrip(":").strip()
    tail = r"[ \t*_]*:[ \t*_]*" if colon else r"[ \t*_]*"
    return re.compile(r"^[ \t>#*_]*" + re.escape(core) + tail, re.I | re.M)


def _cut(text: str, stops: list[re.Pattern[str]]) -> str:
    for pat in stops:
        m = pat.search(text)
        if m:
            text = text[: m.start()]
    return text


@parser("critique_correction", fields=lambda o: ["critique", "aligned"])
def parse_critique_correction(
    text: str,
    critique_marker: str = "Critique:",
    correction_marker: str = "Correction:",
    strip_labels: list[str] = ("Response:",),
    cut_at: list[str] = ("Input:",),  # type: ignore[assignment]
) -> dict[str, Any]:
    """Split one completion into the misaligned response (value), the critique and the aligned
    response, by the domain's two markers (each at a line start). A leading echo of the
    prompt's own label ("Response:") is removed from y; y′ ends at the next `cut_at` label or
    a repeated marker (a model that goes on to invent the next example)."""
    crit, corr = marker_pattern(critique_marker), marker_pattern(correction_marker)
    m1 = crit.search(text)
    if not m1:
        raise ParseError("missing_critique_marker", repr(critique_marker))
    m2 = corr.search(text, m1.end())
    if not m2:
        raise ParseError("missing_correction_marker", repr(correction_marker))
    misaligned = text[: m1.start()].strip()
    for label in strip_labels:
        echo = marker_pattern(label).match(misaligned)
        if echo:
            misaligned = misaligned[echo.end() :].strip()
    stops = [marker_pattern(c) for c in cut_at] + [crit, corr]
    out = {
        "value": misaligned,
        "critique": text[m1.end() : m2.start()].strip(),
        "aligned": _cut(text[m2.end() :], stops).strip(),
    }
    for name, key in (("misaligned", "value"), ("critique", "critique"), ("aligned", "aligned")):
        if not out[key]:
            raise ParseError(f"empty:{name}")
    return out
