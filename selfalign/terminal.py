"""The consoles the commands print to: a terminal's width on a terminal; piped or redirected,
nothing is cut, folded or wrapped (rich would otherwise lay everything out at 80 columns)."""

from __future__ import annotations

from rich.console import Console

# wide enough for any line we print; tables are only as wide as their content
PIPE_WIDTH = 100_000


def console(stderr: bool = False) -> Console:
    """stdout's (or stderr's) console. Without a terminal: no colour codes, no line breaks that
    are not in the text, tables at their natural width (`| grep`, `> file`, a YAML parser)."""
    # emoji=False: rich would turn ":1234:" in "garbage:1234:" (a host:port in a message) into 🔢
    c = Console(stderr=stderr, emoji=False)
    if c.is_terminal:
        return c
    return Console(stderr=stderr, emoji=False, width=PIPE_WIDTH, soft_wrap=True)
