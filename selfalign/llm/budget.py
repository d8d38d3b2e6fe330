"""The budget cap: each model call reserves its worst case before it is sent and settles to its
real usage after, so a run never spends more than `budget.max_usd` / `budget.max_tokens`.

The budget covers a run directory, not one attempt: what earlier attempts spent is kept there, so
a re-run after a stop (answered by the response cache for every call that was made) spends only on
the calls still missing, and a re-run with the same (or a lower) budget stops at its first call.

Durable per call: `budget.ledger` in the run dir gets one appended line per reservation (written
before the call is sent), per settlement and per stop, so a process killed at any moment leaves a
record that counts every call it sent — the ones still in flight at their worst case. A crash can
only over-count, never under-count. `budget.json` is the readable summary, rewritten now and then.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfalign.config import doc
from selfalign.errors import EXIT_BUDGET, ConfigError, SelfAlignError
from selfalign.llm.base import ChatRequest
from selfalign.llm.config import ModelConfig, Price

# A chat template adds a few tokens per message (role markers) and per request.
MESSAGE_OVERHEAD = 8
# When a request names no max_tokens, the worst case of its completion is unknown: assume this.
DEFAULT_MAX_TOKENS = 4096
SAVE_EVERY_S = 1.0  # budget.json is rewritten (and the ledger compacted) at most this often
LEDGER = "budget.ledger"  # beside budget.json: the durable record, one line per event


@dataclass
class BudgetSettings:
    max_usd: float | None = doc(
        "stop the run before it would spend more than this many $ "
        "(all attempts into the run dir; null = no cap)",
        None,
    )
    max_tokens: int | None = doc(
        "stop the run before it would use more than this many tokens, prompt + completion (null = no cap)",
        None,
    )

    def __post_init__(self) -> None:
        for name in ("max_usd", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 (null = no cap), got {value}")


class BudgetRecordError(SelfAlignError):
    """budget.json or budget.ledger cannot be read: the spend of earlier attempts is unknown, and
    starting again from $0 could overrun the cap. Exit 2, before any call."""


class BudgetExceeded(SelfAlignError):
    """The next call would exceed the budget: dispatch stopped, the calls in flight finished."""

    exit_code = EXIT_BUDGET


@dataclass
class Reservation:
    usd: float
    tokens: int


def prompt_token_bound(request: ChatRequest) -> int:
    """An upper bound on a request's prompt tokens, for every tokenizer: a token covers at least
    one byte of text, plus the chat template's markers. (Deliberately not a tokenizer count: an
    estimate that runs low could let the budget be overrun.)"""
    text = sum(len(content.encode()) for _, content in request.messages)
    return text + MESSAGE_OVERHEAD * (len(request.messages) + 1)


def completion_bound(request: ChatRequest, cfg: ModelConfig) -> int:
    value = request.param_dict.get("max_tokens") or cfg.extra_params.get("max_tokens")
    return int(value) if value else DEFAULT_MAX_TOKENS


def price_for(cfg: ModelConfig) -> Price | None:
    """`model.price`, else litellm's local price map for a hosted model (None if it has none);
    endpoints given by `api_base`, the embedded model and the test model are free unless
    `model.price` says otherwise."""
    if cfg.price is not None:
        return cfg.price
    if cfg.provider != "litellm":
        return Price(0.0, 0.0)
    from selfalign.llm.litellm_adapter import litellm_price, transport_kind

    if transport_kind(cfg) == "direct":
        return Price(0.0, 0.0)
    return litellm_price(cfg.name)


def prices(models: dict[str, ModelConfig], need: bool) -> dict[str, Price]:
    """A price per named model; with `need` (a $ budget) a hosted model without one is an error."""
    out: dict[str, Price] = {}
    for ref, cfg in models.items():
        if cfg.price is None and not need:
            continue  # no lookup (litellm's import is slow) unless a $ budget needs it
        found = price_for(cfg)
        if found is None:
            where = "model" if ref == "default" else f"models.{ref}"
            raise ConfigError(
                f"{where}: litellm's price map has no price for '{cfg.name}', so budget.max_usd "
                f"cannot be enforced. Set {where}.price={{input_per_mtok: X, output_per_mtok: Y}} "
                "(dollars per million tokens) or use budget.max_tokens instead."
            )
        out[ref] = found
    return out


class Budget:
    """Reserved and spent $ and tokens against the caps; `reserve` raises BudgetExceeded."""

    def __init__(self, settings: BudgetSettings, path: Path | None = None) -> None:
        self.max_usd, self.max_tokens = settings.max_usd, settings.max_tokens
        self.path = path.absolute() if path is not None else None  # the Ray actor's cwd differs
        self.ledger = self.path.with_name(LEDGER) if self.path is not None else None
        self._fd: int | None = None  # the ledger, opened for appending on the first event
        self.spent_usd, self.spent_tokens, stop = self._load()
        self.before_usd, self.before_tokens = self.spent_usd, self.spent_tokens
        self.reserved_usd, self.reserved_tokens = 0.0, 0
        # a re-run whose caps are no higher than those an earlier attempt stopped at stops at its
        # first call (docs/cost.md): what is left under the cap is less than one call's worst case
        self.stopped = stop is not None and not self._raised(*stop)
        self._saved = time.monotonic()

    @property
    def active(self) -> bool:
        return self.max_usd is not None or self.max_tokens is not None

    def reserve(self, usd: float, tokens: int) -> Reservation:
        over_usd = self.max_usd is not None and self.spent_usd + self.reserved_usd + usd > self.max_usd
        over_tokens = (
            self.max_tokens is not None
            and self.spent_tokens + self.reserved_tokens + tokens > self.max_tokens
        )
        if self.stopped or over_usd or over_tokens:
            if not self.stopped:
                self._append(["stop", self.max_usd, self.max_tokens])
            self.stopped = True  # sticky: no call after the first refused one
            raise BudgetExceeded(self.message())
        self._append(["r", usd, tokens])  # on disk before the call is sent
        self.reserved_usd += usd
        self.reserved_tokens += tokens
        return Reservation(usd, tokens)

    def settle(self, res: Reservation, usd: float, tokens: int) -> None:
        """Replace a reservation by what the call really cost (0 for one that failed)."""
        self._append(["s", res.usd, res.tokens, usd, tokens])
        self.reserved_usd = max(0.0, self.reserved_usd - res.usd)
        self.reserved_tokens = max(0, self.reserved_tokens - res.tokens)
        self.spent_usd += usd
        self.spent_tokens += tokens
        if time.monotonic() - self._saved >= SAVE_EVERY_S:
            self.save()

    def message(self) -> str:
        if self.max_usd is not None:
            at = f"${self.spent_usd:.4f} of ${self.max_usd:.4f} (budget.max_usd)"
            again = f"budget.max_usd={self.max_usd * 2:g}"
        else:
            at = f"{self.spent_tokens} of {self.max_tokens} tokens (budget.max_tokens)"
            again = f"budget.max_tokens={(self.max_tokens or 0) * 2}"
        return (
            f"budget reached at {at}; re-run with a higher budget to continue, e.g. "
            f"{again} into the same run dir (the response cache answers every call already "
            "made). The calls in flight finished; later calls were not sent."
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "max_usd": self.max_usd,
            "max_tokens": self.max_tokens,
            "spent_usd": round(self.spent_usd, 6),
            "spent_tokens": self.spent_tokens,
            "spent_usd_this_attempt": round(self.spent_usd - self.before_usd, 6),
            "spent_tokens_this_attempt": self.spent_tokens - self.before_tokens,
            "stopped": self.stopped,
        }

    def status(self) -> str:
        """The progress bar's budget part, e.g. '$0.0123/$1.00'."""
        if self.max_usd is not None:
            return f"${self.spent_usd:.4f}/${self.max_usd:g}"
        return f"tok {self.spent_tokens}/{self.max_tokens}"

    def save(self) -> None:
        """budget.json (the summary) and the ledger compacted to one line. Both are replaced
        atomically: a crash leaves the old file, never half of one."""
        self._saved = time.monotonic()
        if self.path is None or self.ledger is None:
            return
        # in-flight reservations are carried at their worst case; their settle lines, appended
        # later, swap that for what they cost, as they would have without the compaction
        head = {
            "carried": [self.spent_usd + self.reserved_usd, self.spent_tokens + self.reserved_tokens],
            "stop": [self.max_usd, self.max_tokens] if self.stopped else None,
        }
        _replace(self.ledger, json.dumps(head) + "\n")
        self.close()  # the next event appends to the new file
        _replace(self.path, json.dumps(self.to_json(), indent=2))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __getstate__(self) -> dict[str, Any]:  # to the Ray budget actor and back: no open file
        return {**self.__dict__, "_fd": None}

    def _append(self, event: list[Any]) -> None:
        """One line, one write(2) with O_APPEND: it is in the file (the OS's page cache) when
        this returns, so a killed process loses nothing; a power cut may lose the last lines."""
        if self.ledger is None:
            return
        if self._fd is None:
            self._fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._fd, (json.dumps(event) + "\n").encode())

    def _raised(self, usd: float | None, tokens: int | None) -> bool:
        """Is a cap now higher than (or removed since) it was at an earlier stop?"""
        return (usd is not None and (self.max_usd is None or self.max_usd > usd)) or (
            tokens is not None and (self.max_tokens is None or self.max_tokens > tokens)
        )

    def _load(self) -> tuple[float, int, list[Any] | None]:
        """What earlier attempts spent (the larger of the ledger's sum and budget.json's figure:
        never less than was paid) and the caps of the stop they ended in, if any."""
        usd, tokens, stop = 0.0, 0, None
        if not self.active:  # nothing to enforce (and nothing is written without a cap)
            return usd, tokens, stop
        if self.path is not None and self.path.exists():
            usd, tokens = _read_summary(self.path)
        if self.ledger is not None and self.ledger.exists():
            l_usd, l_tokens, stop = _read_ledger(self.ledger)
            usd, tokens = max(usd, l_usd), max(tokens, l_tokens)
        return usd, tokens, stop


def _unreadable(path: Path, why: str) -> BudgetRecordError:
    return BudgetRecordError(
        f"{path}: unreadable budget record ({why}). It holds what earlier attempts into this run "
        "dir spent, so the budget cannot be enforced without it. Restore it, or delete "
        f"{path.with_name('budget.json')} and {path.with_name(LEDGER)} to start this run dir's "
        "budget from 0 knowingly."
    )


def _amount(value: Any) -> float:
    """A recorded $ or token figure: a finite number >= 0 (anything else is a broken record)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not an amount")
    return float(value)


def _caps(value: Any) -> list[Any] | None:
    """The [max_usd, max_tokens] of a recorded stop (None: the last attempt did not stop)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{value!r} is not [max_usd, max_tokens]")
    return [None if v is None else _amount(v) for v in value]


def _read_summary(path: Path) -> tuple[float, int]:
    try:
        data = json.loads(path.read_text())
        return _amount(data["spent_usd"]), int(_amount(data["spent_tokens"]))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None


def _read_ledger(path: Path) -> tuple[float, int, list[Any] | None]:
    """The sum of the ledger's events: each reservation counts until its settlement replaces it."""
    usd, tokens, stop = 0.0, 0.0, None
    try:
        # a last line without its newline is a write still under way (a Ray worker reads the
        # record while the budget actor appends): left out. A killed process leaves none, as
        # each line is one write(2); a power cut may, and may lose whole lines anyway (no fsync).
        lines = path.read_text().split("\n")[:-1]
    except (OSError, ValueError) as exc:
        raise _unreadable(path, f"{type(exc).__name__}: {exc}") from None
    for n, line in enumerate(lines, 1):
        try:
            ev = json.loads(line)
            if isinstance(ev, dict):
                usd, tokens = (_amount(v) for v in ev["carried"])
                stop = _caps(ev.get("stop"))
            elif ev[0] == "r":
                usd, tokens = usd + _amount(ev[1]), tokens + _amount(ev[2])
            elif ev[0] == "s":
                usd += _amount(ev[3]) - _amount(ev[1])
                tokens += _amount(ev[4]) - _amount(ev[2])
            elif ev[0] == "stop":
                stop = _caps(ev[1:])
            else:
                raise ValueError(f"unknown event {ev[0]!r}")
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise _unreadable(path, f"line {n}: {type(exc).__name__}: {exc}") from None
    return max(0.0, usd), max(0, round(tokens)), stop


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
