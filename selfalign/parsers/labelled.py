"""`labelled_text`: free text after an optional leading label ("**Improved instruction:**")."""

from __future__ import annotations

import functools
import re
from typing import Any

from selfalign.errors import ParseError
from selfalign.parsers.registry import parser

LABELS = ("instruction", "response", "question", "answer", "task")
# the options `labelled_text` takes (refine_aaa validates its `parser:` mapping against them)
PARSER_OPTIONS = frozenset({"labels", "cut_at", "min_chars", "max_chars"})


@functools.lru_cache(maxsize=32)
def _label_re(labels: tuple[str, ...]) -> re.Pattern[str]:
    words = "|".join(re.escape(w) for w in labels)
    return re.compile(
        r"^\s*[#*_\s]*(?:(?:final|new|improved|revised|rewritten|better|the)\s+)*"
        rf"(?:version of the\s+)?(?:{words})\s*(?:\([^)]*\))?\s*[*_]*\s*:"
        r"\s*[*_]*\s*",
        re.I,
    )


@parser("labelled_text")
def parse_labelled_text(
    text: str,
    labels: list[str] = LABELS,  # type: ignore[assignment]
    cut_at: list[str] = (),
    min_chars: int = 3,  # type: ignore[assignment]
    max_chars: int | None = None,
) -> dict[str, Any]:
    """Free text minus a leading label ('**Improved instruction:**', one of `labels`), cut at the
    first `cut_at` marker, unquoted; too short or too long is a parse failure (so it is retried)."""
    out = text
    for marker in cut_at:
        if marker and marker in out:
            out = out.split(marker, 1)[0]
    out = _label_re(tuple(labels)).sub("", out.strip(), count=1).strip()
    if len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'`":
        out = out[1:-1].strip()
    if len(out) < min_chars:
        raise ParseError("empty", f"fewer than {min_chars} characters")
    if max_chars is not None and len(out) > max_chars:
        raise ParseError("too_long", f"more than {max_chars} characters")
    return {"value": out}
