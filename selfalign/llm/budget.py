"""The budget cap: each model call reserves its worst case before it is sent and settles to its
real usage after, so a run never spends more than `budget.max_usd` / `budget.max_tokens`.

The budget covers a run directory, not one attempt: what earlier attempts spent is kept in
`budget.json` there, so a re-run after a stop (answered by the response cache for every call that
was made) spends only on the calls still missing, and a re-run with the same budget stops at once.
"""

from __future__ import annotations

import json
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
SAVE_EVERY_S = 1.0  # budget.json is rewritten at most this often while calls settle


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
    from selfalign.llm.litellm_client import litellm_price, transport_kind

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
        self.path = path
        self.spent_usd, self.spent_tokens = self._load()
        self.before_usd, self.before_tokens = self.spent_usd, self.spent_tokens
        self.reserved_usd, self.reserved_tokens = 0.0, 0
        self.stopped = False
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
            self.stopped = True  # sticky: no call after the first refused one
            raise BudgetExceeded(self.message())
        self.reserved_usd += usd
        self.reserved_tokens += tokens
        return Reservation(usd, tokens)

    def settle(self, res: Reservation, usd: float, tokens: int) -> None:
        """Replace a reservation by what the call really cost (0 for one that failed)."""
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
        self._saved = time.monotonic()
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.to_json(), indent=2))
            tmp.replace(self.path)  # atomic: a crash leaves the old record, never half of one

    def _load(self) -> tuple[float, int]:
        if self.path is None or not self.path.exists():
            return 0.0, 0
        try:
            data = json.loads(self.path.read_text())
            return float(data.get("spent_usd", 0.0)), int(data.get("spent_tokens", 0))
        except (OSError, ValueError, TypeError, AttributeError):
            return 0.0, 0
