"""The error hierarchy: every user-facing failure is a SelfAlignError with where/what/fix."""

from __future__ import annotations

# Exit codes are part of the interface (docs/failures.md).
EXIT_OK = 0  # the dataset was produced within the failure limits
EXIT_CONFIG = 2  # bad config or input: found before any model call
EXIT_RUN_FAILED = 3  # the run failed or is degraded (endpoint down, too many failures, no rows)
EXIT_BUDGET = 4  # stopped by the budget cap; a re-run with a higher budget continues
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM gives 143: 128 + the signal, as a shell does


class SelfAlignError(Exception):
    """Base of all errors that the CLI prints as one clear paragraph (exit code 2 unless a
    subclass says otherwise)."""

    exit_code = EXIT_CONFIG


class ConfigError(SelfAlignError):
    """A config value is missing, unknown, or of the wrong type."""


class InputError(SelfAlignError):
    """An input data file is missing, unreadable, empty or lacks a column."""


class PromptError(SelfAlignError):
    """A prompt template is unknown, has a syntax error, or needs a variable nobody produces."""


class StageError(SelfAlignError):
    """A stage failed while running (after validation passed)."""

    exit_code = EXIT_RUN_FAILED


class LLMError(SelfAlignError):
    """A model call failed in a way that retrying cannot fix (bad key, bad request, no server)."""

    exit_code = EXIT_RUN_FAILED


class RunFailed(SelfAlignError):
    """The run finished but is not what the user asked for: too many failed calls, no rows."""

    exit_code = EXIT_RUN_FAILED


def decode_problem(path: object, data: bytes, fix: str) -> str | None:
    """None when `data` (the bytes of the user's file `path`) is UTF-8; else one line naming the
    file, the line and the byte offset of the first bad byte, and `fix`."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return (
            f"{path}:{line}: not valid utf-8 text (line {line}, byte {exc.start} of the file: "
            f"0x{data[exc.start]:02X}). {fix}"
        )
    return None


class ParseError(Exception):
    """A parser could not read a model output; `reason` is a short machine-friendly label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ValidationFailed(SelfAlignError):
    """Several problems found before any model call; the message lists all of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) found before any model call:\n{body}")


class PreflightFailed(SelfAlignError):
    """A model endpoint the run needs is unreachable, refuses the key or lacks the model."""

    exit_code = EXIT_RUN_FAILED

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        body = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"preflight: {len(problems)} model endpoint problem(s), nothing was called:\n{body}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run; its manifest says "interrupted". A
    KeyboardInterrupt, so that code which lets Ctrl-C through lets this through too."""

    def __init__(self, signum: int | None = None, run_dir: object = None) -> None:
        super().__init__()
        self.signum = signum
        self.run_dir = run_dir  # the run dir it stopped, for the message (None: none yet)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else EXIT_INTERRUPTED
