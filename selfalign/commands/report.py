"""`selfalign report DIR`: (re)write the HTML report of a run dir or a sweep dir."""

from __future__ import annotations

from rich.markup import escape

from selfalign import terminal
from selfalign.errors import ConfigError
from selfalign.html_report import write_report


def report_command(args: list[str]) -> int:
    out: str | None = None
    dirs: list[str] = []
    it = iter(args)
    for a in it:
        if a in ("-o", "--output"):
            out = next(it, None)
            if not out or out.startswith("-"):
                raise ConfigError(f"report: {a} needs a file name, e.g. `{a} report.html`.")
        elif a.startswith("-"):
            raise ConfigError(f"report: unknown option '{a}'; see `selfalign report --help`.")
        else:
            dirs.append(a)
    if len(dirs) != 1:
        raise ConfigError(
            f"report: give one run dir or sweep dir (got {len(dirs)}), e.g. "
            "`selfalign report outputs/wizardlm_aaa/2025-01-01_12-00-00`."
        )
    path = write_report(dirs[0], out)
    terminal.console().print(f"report: [bold]{escape(str(path))}[/] (open it in a browser)", highlight=False)
    return 0
