"""The error hierarchy: every user-facing failure is a SelfAlignError with where/what/fix."""

from __future__ import annotations


class SelfAlignError(Exception):
    """Base of all errors that the CLI prints as one clear paragraph (exit code 2)."""

    exit_code = 2


class ConfigError(SelfAlignError):
    """A config value is missing, unknown, or of the wrong type."""


class InputError(SelfAlignError):
    """An input data file is missing, unreadable, empty or lacks a column."""


class PromptError(SelfAlignError):
    """A prompt template is unknown, has a syntax error, or needs a variable nobody produces."""


class StageError(SelfAlignError):
    """A stage failed while running (after validation passed)."""


class LLMError(SelfAlignError):
    """A model call failed in a way that retrying cannot fix (bad key, bad request, no server)."""


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
