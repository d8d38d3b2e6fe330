"""Per-endpoint flow control: RPM/TPM token buckets (aiolimiter's leaky bucket) and an adaptive
(AIMD) limit on the requests in flight.

The AIMD limit starts at `concurrency` and, when `min_concurrency` is set, is cut by DECREASE on
an overload signal (429, 503, timeout) and grows by one slot per GROW_WINDOWS windows of successes
(+1/(limit·GROW_WINDOWS) per success), between the two. A gentle cut and a slow climb keep it
just under a server's cap: against a cap of 16 it probes above it about once per ~100 successes.
Only a request sent after the last cut can cut again: one burst of 429s from requests that were
all sent at the old limit counts as one signal, not many. With `min_concurrency` unset the limit
stays at `concurrency` (a plain semaphore).

Waiters queue at a PriorityGate (gate.py: by the runner's PRIORITY, then in arrival order).
"""

from __future__ import annotations

from aiolimiter import AsyncLimiter

from selfalign.llm.gate import PRIORITY as PRIORITY  # re-exported: the runner sets it here
from selfalign.llm.gate import PriorityGate
from selfalign.llm.transport import Reply, TransportError

DECREASE = 0.9  # multiplicative cut on overload
GROW_WINDOWS = 4  # windows of `limit` successes per slot of growth
BURST_S = 0.5  # an RPM bucket holds this many seconds of requests (so 600 rpm ≈ 10/s, burst 5)
TPM_WINDOW_S = 6.0  # a TPM bucket holds this many seconds of tokens (one request always fits)
CHARS_PER_TOKEN = 4  # before a call: prompt tokens ≈ UTF-8 bytes / 4 (corrected after)


class AdaptiveLimit:
    """Requests in flight at most `int(limit)`, floor ≤ limit ≤ ceiling."""

    def __init__(self, floor: int, ceiling: int) -> None:
        self.floor, self.ceiling = floor, ceiling
        self.limit = float(ceiling)
        self.in_flight = 0  # the one count of an endpoint's calls in flight
        self.max_in_flight = 0
        self.epoch = 0  # cuts so far
        self.cuts = 0
        self.gate = PriorityGate()

    @property
    def adaptive(self) -> bool:
        return self.floor < self.ceiling

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch the request is sent in (for `release`)."""
        if not self._free():  # checked here first: the gate only when a wait is due
            await self.gate.wait_until(self._free)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self.epoch

    def _free(self) -> bool:
        """A slot not held, nor kept for a waiter already woken (a newcomer does not jump it)."""
        return self.in_flight + self.gate.woken < int(self.limit)

    def release(self, epoch: int, outcome: str) -> None:
        """outcome: 'ok' (grow), 'overload' (cut, once per epoch) or anything else (neither)."""
        self.in_flight -= 1
        if self.adaptive and outcome == "overload" and epoch == self.epoch:
            self.limit = max(float(self.floor), self.limit * DECREASE)
            self.epoch += 1
            self.cuts += 1
        elif self.adaptive and outcome == "ok":
            self.limit = min(float(self.ceiling), self.limit + 1.0 / (self.limit * GROW_WINDOWS))
        self.gate.wake(int(self.limit) - self.in_flight - self.gate.woken)

    def status(self) -> str:
        return f"conc {int(self.limit)}/{self.ceiling}" if self.adaptive else ""


def estimate_tokens(prompt_chars: int, max_tokens: int) -> int:
    """What a TPM limit is charged before the call: the prompt's likely tokens + max_tokens
    (providers count max_tokens against TPM when the request arrives)."""
    return prompt_chars // CHARS_PER_TOKEN + max_tokens


class RateLimits:
    """Request and token buckets for one endpoint; either may be off (None)."""

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.requests = AsyncLimiter(max(1.0, rpm * BURST_S / 60), BURST_S) if rpm else None
        self.tokens = AsyncLimiter(max(1.0, tpm * TPM_WINDOW_S / 60), TPM_WINDOW_S) if tpm else None

    async def acquire(self, tokens: int) -> int:
        """Wait until one more request and `tokens` tokens fit; returns the tokens charged
        (a request larger than the bucket is charged the whole bucket: it waits for an empty one)."""
        if self.requests is not None:
            await self.requests.acquire()
        if self.tokens is None:
            return 0
        charged = min(float(tokens), self.tokens.max_rate)
        await self.tokens.acquire(charged)
        return int(charged)

    def correct(self, charged: int, used: int) -> None:
        """After the call: charge what it really used instead of the estimate (a 429 used
        none). Debt makes later calls wait; a refund frees room at once."""
        if self.tokens is None or charged == used:
            return
        limiter = self.tokens
        # aiolimiter (pinned) has no public refund: its bucket level is `_level`, and waking the
        # next waiter after a refund is `_wake_next`. tests/unit/test_rate_limits.py checks both.
        limiter._level = max(0.0, limiter._level + (used - charged))
        if used < charged:
            limiter._wake_next()


def load_signal(failure: TransportError | None) -> str:
    """What a call's end says about the endpoint's load, for the adaptive limit."""
    if failure is None:
        return "ok"
    overloaded = failure.status in (408, 429, 503) or "timeout" in failure.message
    return "overload" if overloaded else "other"


def tokens_used(reply: Reply | None, charged: int) -> int:
    """Tokens a call really used: its reported usage; a failed call used none."""
    if reply is None:
        return 0
    used = reply.prompt_tokens + reply.completion_tokens
    return used if used else charged  # no usage reported: keep the estimate
