"""Per stage and model counters: requests, cache hits, retries, failures, tokens, latency, cost."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from selfalign.llm.base import ChatResult


@dataclass
class Counter:
    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def add(self, r: ChatResult) -> None:
        self.requests += 1
        self.cache_hits += int(r.cached)
        self.retries += r.retries
        self.failures += int(not r.ok)
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.cost += r.cost or 0.0
        if not r.cached:
            self.latencies.append(r.latency_s)

    def merge(self, other: Counter) -> None:
        """Add another counter's figures (another attempt's, another worker's) to this one."""
        for name in ("requests", "cache_hits", "retries", "failures", "prompt_tokens", "completion_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost += other.cost
        self.latencies.extend(other.latencies)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else None
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "sent": self.requests - self.cache_hits,
            "retries": self.retries,
            "failures": self.failures,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost, 6),
            "latency_p50_s": round(statistics.median(lat), 4) if lat else None,
            "latency_p95_s": round(p95, 4) if p95 is not None else None,
        }


class Accounting:
    """Counters keyed by (stage, model identity)."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], Counter] = defaultdict(Counter)  # this attempt
        self.restored: dict[tuple[str, str], Counter] = {}  # reused stages, from checkpoints

    def record(self, stage: str, model: str, result: ChatResult) -> None:
        self.counters[(stage, model)].add(result)

    def dump_stage(self, stage: str) -> dict[str, dict[str, Any]]:
        """A stage's raw counters, stored with its checkpoint (restored when it is reused)."""
        return {m: dict(vars(c)) for (s, m), c in self.counters.items() if s == stage}

    def load_stage(self, stage: str, data: dict[str, dict[str, Any]]) -> None:
        for model, fields in data.items():
            known = {k: v for k, v in fields.items() if k in Counter.__dataclass_fields__}
            self.restored[(stage, model)] = Counter(**known)

    def _all(self) -> dict[tuple[str, str], Counter]:
        return {**self.restored, **self.counters}

    def for_stage(self, stage: str) -> dict[str, dict[str, Any]]:
        return {m: c.summary() for (s, m), c in self._all().items() if s == stage}

    def totals(self, this_attempt: bool = False) -> dict[str, Any]:
        """Everything the dataset took (reused stages included), or only this attempt's calls."""
        total = Counter()
        for c in (self.counters if this_attempt else self._all()).values():
            total.merge(c)
        return total.summary()
