"""`revised_response`: the text after 'Revised response:' and the reasoning before it."""

from __future__ import annotations

import re
from typing import Any

from selfalign.errors import ParseError
from selfalign.parsers.registry import parser

_REVISED = re.compile(r"\**[ \t]*revised[ \t]+response[ \t]*\**[ \t]*:[ \t]*\**", re.I)
_REASON = re.compile(r"\**[ \t]*reasoning[ \t]*\**[ \t]*:[ \t]*\**", re.I)
_ECHO = re.compile(r"\s*\[end of (?:response|revised response)\]\s*$", re.I)


@parser("revised_response", fields=lambda o: ["reasoning"])
def parse_revised(text: str) -> dict[str, Any]:
    """'Reasoning: … Revised response: …' → the text after the FIRST 'Revised response:' (bold
    and any case accepted) and the reasoning before it (optional, unlike the original)."""
    m = _REVISED.search(text)
    if not m:
        raise ParseError("no_revised_response", "no 'Revised response:' line")
    revised = _ECHO.sub("", text[m.end() :]).strip()
    if not revised:
        raise ParseError("empty_revised_response", "nothing after 'Revised response:'")
    head = text[: m.start()]
    r = _REASON.search(head)
    return {"value": revised, "reasoning": (head[r.end() :] if r else head).strip()}
