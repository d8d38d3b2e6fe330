"""Several endpoints serving one model (`model.api_base` as a list): balancing and take-out.

Each endpoint has its own flow control (an AdaptiveLimit of `concurrency` and RPM/TPM buckets,
so both limits are per endpoint) and its own transport. A request goes to the up endpoint with
the most free capacity: the fewest requests assigned (in flight or waiting for its slot) relative
to its current limit. After `endpoint_failures` connection failures in a row an endpoint is taken
out; its share goes to the others. Once its cool-down (`endpoint_retry_s`, doubled after each
failed probe up to `endpoint_retry_max_s`) has passed, one request is sent to it as a probe: an
HTTP answer brings it back, a failure takes it out for a longer cool-down. With every endpoint
out, requests go to the one due back first and the client's circuit breaker counts as with one
endpoint. With a single endpoint nothing here changes the client's behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from selfalign.llm.config import ModelConfig
from selfalign.llm.gate import PriorityGate
from selfalign.llm.limits import AdaptiveLimit, RateLimits
from selfalign.llm.transport import Reply, TransportError

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send(
        self, messages: list[dict[str, str]], params: dict[str, Any], key: str | None, timeout_s: float
    ) -> Reply: ...

    async def aclose(self) -> None: ...


class Endpoint:
    """One URL: its transport, limits, state and counters."""

    def __init__(self, index: int, url: str, send: Sender, cfg: ModelConfig) -> None:
        self.index, self.url, self.send, self.cfg = index, url, send, cfg
        self.limit = AdaptiveLimit(cfg.min_concurrency or cfg.concurrency, cfg.concurrency)
        self.rates = RateLimits(cfg.rpm, cfg.tpm)
        self.assigned = 0  # requests chosen for it and not yet back (in flight or waiting)
        self.fails = 0  # connection failures in a row
        self.streak = 0  # failed answers (429, 5xx, timeouts) in a row, for the retry backoff
        self.up = True
        self.probing = False  # a probe request is out (only one at a time)
        self.retry_at = 0.0  # time.monotonic() when a taken-out endpoint may be probed
        self.cooldown = cfg.endpoint_retry_s
        self.counts = {"requests": 0, "ok": 0, "connect_failures": 0, "taken_out": 0, "probes": 0}

    def load(self) -> float:
        return self.assigned / max(1, int(self.limit.limit))

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "max_in_flight": self.limit.max_in_flight, "up": self.up}


class EndpointPool:
    def __init__(self, cfg: ModelConfig, urls: list[str], make: Callable[[str], Sender]) -> None:
        self.cfg = cfg
        self.endpoints = [Endpoint(i, url, make(url), cfg) for i, url in enumerate(urls)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self.gate = PriorityGate()  # requests waiting for any endpoint with room

    def __len__(self) -> int:
        return len(self.endpoints)

    def bind_loop(self) -> None:
        """asyncio primitives belong to one event loop; a multirun may run jobs in fresh ones."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        self._loop, self.gate = loop, PriorityGate()
        for e in self.endpoints:
            old, e.limit = e.limit, AdaptiveLimit(e.limit.floor, e.limit.ceiling)
            e.limit.max_in_flight = old.max_in_flight  # a manifest figure of the whole process
            e.rates = RateLimits(self.cfg.rpm, self.cfg.tpm)

    async def choose(self, priority: int | None = None, avoid: tuple[Endpoint, ...] = ()) -> Endpoint:
        """The endpoint for the next attempt (counted as assigned until `done`). With several,
        wait until one has a free slot and only then choose: a request queued at one endpoint
        could not move to another that frees first, so a slow server would hold a full share.
        Lower `priority` values are served first, FIFO among equals. One endpoint: its own
        limit does the queueing. `avoid`: endpoints this request just failed to connect to.
        By default the streaming runner's PRIORITY decides (later stages first)."""
        if len(self.endpoints) == 1:
            chosen = self.endpoints[0]
        else:
            picked: list[Endpoint] = []

            def room() -> bool:  # picks anew at each look: the free endpoint may have changed
                picked[:] = [self._pick(avoid)]
                return picked[0].assigned < int(picked[0].limit.limit)

            await self.gate.wait_until(room, priority)
            chosen = picked[0]
        chosen.assigned += 1
        chosen.counts["requests"] += 1
        return chosen

    def _pick(self, avoid: tuple[Endpoint, ...]) -> Endpoint:
        if len(self.endpoints) == 1:
            return self.endpoints[0]
        now = time.monotonic()
        for e in self.endpoints:
            if not e.up and not e.probing and now >= e.retry_at and e not in avoid:
                e.probing = True
                e.counts["probes"] += 1
                log.info("endpoint %s: cool-down over, probing it with one request", e.url)
                return e
        up = [e for e in self.endpoints if e.up and e not in avoid] or [e for e in self.endpoints if e.up]
        if not up:  # all out: the one due back first (the circuit breaker counts these)
            return min(self.endpoints, key=lambda e: (e.retry_at, e.index))
        return min(up, key=lambda e: (e.load(), e.index))

    def abandon(self, e: Endpoint) -> None:
        """An attempt that ended without an outcome (cancelled)."""
        e.assigned -= 1
        e.probing = False
        self.gate.wake(1)

    def done(self, e: Endpoint, failure: TransportError | None) -> bool:
        """Record an attempt's end. True when it failed to connect and another endpoint is up,
        so the request may go there at once without counting as a failed attempt."""
        e.assigned -= 1
        was_probe, e.probing = e.probing, False
        self.gate.wake(1)
        e.streak = 0 if failure is None else e.streak + int(failure.kind in ("retry", "unreachable"))
        if failure is None or failure.status is not None:  # an HTTP answer: someone listens
            e.counts["ok"] += int(failure is None)
            # Only a probe (or any answer while all are out) brings it back: a late answer to a
            # request sent before it was taken out says nothing about it now.
            if e.up or was_probe or not any(o.up for o in self.endpoints):
                e.fails = 0
                if not e.up:
                    self._back(e)
            return False
        if failure.kind != "unreachable" and not was_probe:
            return False  # a timeout or a reset: the retry policy's business, not a take-out
        e.counts["connect_failures"] += int(failure.kind == "unreachable")
        e.fails += 1
        if len(self.endpoints) > 1 and (was_probe or (e.up and e.fails >= self.cfg.endpoint_failures)):
            self._take_out(e, failure.message, was_probe)
        return failure.kind == "unreachable" and any(o.up for o in self.endpoints if o is not e)

    def _take_out(self, e: Endpoint, why: str, was_probe: bool) -> None:
        if was_probe:
            e.cooldown = min(self.cfg.endpoint_retry_max_s, e.cooldown * 2)
        else:
            e.counts["taken_out"] += 1
        e.up, e.retry_at = False, time.monotonic() + e.cooldown
        up = sum(o.up for o in self.endpoints)
        log.warning(
            "endpoint %s %s (%d connection failures in a row: %s); probing it again in %.0f s; "
            "%d of %d endpoints up%s",
            e.url,
            "still unreachable" if was_probe else "taken out",
            e.fails,
            why[:200],
            e.cooldown,
            up,
            len(self.endpoints),
            "" if up else " — the circuit breaker (model.circuit_breaker) now counts",
        )

    def _back(self, e: Endpoint) -> None:
        e.up, e.cooldown = True, self.cfg.endpoint_retry_s
        self.gate.wake(len(self.gate))  # its slots are free again
        up = sum(o.up for o in self.endpoints)
        log.warning("endpoint %s is back; %d of %d endpoints up", e.url, up, len(self.endpoints))

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per URL: attempts sent, successes, connection failures, take-outs, probes, max in flight."""
        return {e.url: e.stats() for e in self.endpoints}

    async def aclose(self) -> None:
        for e in self.endpoints:
            await e.send.aclose()
