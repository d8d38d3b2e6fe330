"""The consoles the commands print to: a terminal's width on a terminal; piped or redirected,
nothing is cut, folded or wrapped (rich would otherwise lay everything out at 80 columns)."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

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


def print_error(out: Console, exc: BaseException) -> None:
    """The one way a command reports a SelfAlignError: `error: …`, never a key (redacted)."""
    from rich.markup import escape

    from selfalign.redact import redact_text

    out.print("[bold red]error:[/] " + escape(redact_text(str(exc))), highlight=False)


def log_handler(show_path: bool = False) -> logging.Handler:
    """The log handler of `selfalign run` (conf/hydra/job_logging/rich.yaml): rich on a terminal;
    piped, one plain line per message (rich would fold it at 80 columns and pad every line)."""
    handler: logging.Handler
    if console(stderr=True).is_terminal:
        handler = RichHandler(show_path=show_path)
    else:
        handler = logging.StreamHandler()  # stderr
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-7s %(message)s", "%H:%M:%S"))
    # a record logged with extra={"file_only": True} is for run.log: the CLI says it its own way
    handler.addFilter(lambda record: not getattr(record, "file_only", False))
    return handler
