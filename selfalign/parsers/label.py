"""`label`: one label of a closed set, found exactly, normalised, or by search; never fails."""

from __future__ import annotations

import re
from typing import Any

from selfalign.parsers.registry import parser

# a label line often comes dressed up: "Task type: `open_qa`." / "**open_qa**"
_PREFIX = re.compile(r"^\s*(?:task\s*(?:type|name)?|label|category|answer)\s*[:=-]\s*", re.I)
_EDGES = "`*\"'.,:;!?()[]{}<> \t"


def normalize_label(text: str) -> str:
    """Case, surrounding punctuation/backticks and inner spaces or hyphens don't matter."""
    return re.sub(r"[\s\-]+", "_", text.strip().strip(_EDGES).strip()).lower()


def _search(text: str, labels: list[str]) -> str | None:
    """The label mentioned earliest in the text as a whole word ('open qa' matches open_qa);
    at the same position the longer label wins."""
    best: tuple[int, int, str] | None = None
    low = text.lower()
    for name in labels:
        words = [re.escape(w) for w in name.lower().split("_") if w]
        pattern = r"(?<![a-z0-9_])" + r"[\s_\-]+".join(words) + r"(?![a-z0-9_])"
        m = re.search(pattern, low)
        if m and (best is None or (m.start(), -len(name)) < (best[0], best[1])):
            best = (m.start(), -len(name), name)
    return best[2] if best else None


@parser("label", fields=lambda o: ["match"])
def parse_label(
    text: str,
    labels: list[str] = (),
    fallback: str = "default",  # type: ignore[assignment]
    search: bool = True,
) -> dict[str, Any]:
    """One label of a closed set. `match` says how it was found: exact | normalized | search |
    fallback (the answer named no known label, so `fallback` is used). Never raises."""
    names = list(labels)
    by_norm = {normalize_label(n): n for n in names}
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    if line.strip() in names:
        return {"value": line.strip(), "match": "exact"}
    key = normalize_label(_PREFIX.sub("", line.strip().strip("*`")))
    # a plural slip ('recommendation' for recommendations) is the same label
    hit = by_norm.get(key) or by_norm.get(key + "s") or by_norm.get(key.removesuffix("s"))
    if hit:
        return {"value": hit, "match": "normalized"}
    found = _search(text, names) if search else None
    if found:
        return {"value": found, "match": "search"}
    return {"value": fallback, "match": "fallback"}
