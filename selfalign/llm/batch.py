"""Batch submission for stages with `batch: true`: their cache misses go to the provider's batch
API (half price) instead of one HTTP call each.

How a round works: every request a batched stage makes is held until no new one has arrived for
GATHER_S (the engine starts all of a stage's jobs at once, so they arrive together), then the
round's misses go out as one batch (split at the provider's size limit). Its id is written to
`batches/<stage>.json` in the run dir *before* the first poll, so a killed run re-attaches to it on
re-run instead of paying twice. Results fill the response cache as they are read; per-request
errors come back to the engine as failed calls, so the stage's failure policy and the rejected
table treat them like any other. Retries of unparsable replies are new requests of the next
round, so they go in a second (smaller) batch, still at batch price.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfalign.errors import LLMError
from selfalign.llm.base import EMPTY_REPLY, ChatRequest, ChatResult, blank
from selfalign.llm.batch_api import BatchAPI, Item
from selfalign.llm.budget import Reservation, price_for

if TYPE_CHECKING:
    from selfalign.llm.session import LLMSession

log = logging.getLogger("selfalign.batch")
GATHER_S = 0.05  # quiet time that closes a round


class BatchPending(LLMError):
    """The batch is still running after `batch_max_wait_s`; a re-run re-attaches to it."""


class BatchEnded(LLMError):
    """The batch expired, was cancelled or failed before all its requests ran."""


@dataclass(frozen=True)
class BatchSettings:
    poll_s: float = 30.0
    max_wait_s: float | None = None


class Records:
    """`batches/<stage>.json`: every batch submitted for a stage, with its requests' keys."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []

    def open(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.items if r["model"] == model and not r.get("collected")]

    def add(self, rec: dict[str, Any]) -> None:
        self.items.append(rec)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.items, indent=1))
        tmp.replace(self.path)  # atomic: a kill never leaves half a record


class Batcher:
    """One batched stage's rounds; `send` is what the session calls for each cache miss. The
    stage's engine creates it when the stage runs and drops it when the stage is done."""

    def __init__(
        self, session: LLMSession, stage: str, settings: BatchSettings, progress: Any = None
    ) -> None:
        self.session, self.stage, self.settings = session, stage, settings
        self.progress = progress  # the stage's StageProgress: its bar shows the batch status
        self.records = Records(session.run_dir / "batches" / f"{stage}.json")
        self.pending: dict[tuple[str | None, str], tuple[ChatRequest, list[asyncio.Future]]] = {}
        self._round: asyncio.Task | None = None
        self.state = ""  # for the progress bar

    async def send(self, ref: str | None, req: ChatRequest, key: str) -> ChatResult:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending.setdefault((ref, key), (req, []))[1].append(fut)
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(self._gather())
        return await fut

    def status(self) -> str:
        return f"{self.stage}: {self.state}" if self.state else ""

    async def _gather(self) -> None:
        seen = -1
        while seen != len(self.pending):  # wait until a quiet spell closes the round
            seen = len(self.pending)
            await asyncio.sleep(GATHER_S)
        group, self.pending, self._round = self.pending, {}, None
        futs = [f for _, fs in group.values() for f in fs]
        try:
            results: dict[tuple[str | None, str], ChatResult] = {}
            for ref in {r for r, _ in group}:
                todo = {k: req for (r, k), (req, _) in group.items() if r == ref}
                got = await self._model_round(ref, todo, futs)
                results.update({(ref, k): v for k, v in got.items()})
        except BaseException as exc:  # noqa: BLE001 — every waiter gets it, the round ends
            for f in futs:
                if not f.done():
                    f.cancel() if isinstance(exc, asyncio.CancelledError) else f.set_exception(exc)
            return
        for key, (_, fs) in group.items():
            for i, f in enumerate(fs):  # the same request twice in a round: sent (and paid) once
                res = (
                    results[key]
                    if i == 0 or not results[key].ok
                    else replace(results[key], cached=True, cost=None)
                )
                if not f.done():
                    f.set_result(res)

    async def _model_round(
        self, ref: str | None, todo: dict[str, ChatRequest], futs: list[asyncio.Future]
    ) -> dict[str, ChatResult]:
        """The results of `todo` (by key): from open batches of an earlier attempt, then new ones."""
        s = self.session
        api, ident = BatchAPI(s.model_config(ref)), s.identity(ref)
        out: dict[str, ChatResult] = {}
        for rec in _reattachable(self.records, ident, todo):
            got = await self._wait(api, ref, rec, futs)
            out.update({k: v for k, v in got.items() if k in todo})
            log.info("%s: re-attached to batch %s (%d results)", self.stage, rec["id"], len(got))
        todo = {k: r for k, r in todo.items() if k not in out}
        keys = list(todo)
        for i in range(0, len(keys), api.max_requests):
            chunk = {k: todo[k] for k in keys[i : i + api.max_requests]}
            hold = self._reserve(ref, chunk)
            try:
                batch_id = await api.submit(chunk, self.stage)
            except BaseException:
                s.budget.settle(hold, 0.0, 0)  # nothing was submitted: nothing is held
                raise
            rec = {
                "id": batch_id,
                "api": api.kind,
                "model": ident,
                "keys": list(chunk),
                "created": time.time(),
            }
            self.records.add(rec)  # before the first poll: a killed run finds it
            log.info("%s: submitted batch %s (%d requests)", self.stage, batch_id, len(chunk))
            got = await self._wait(api, ref, rec, futs, hold)
            out.update(got)
            missing = len(chunk) - len(got)
            if missing:
                raise BatchEnded(
                    f"{self.stage}: batch {batch_id} ended '{rec['status']}' with {missing} of "
                    f"{len(chunk)} requests not run; the {len(got)} results are cached. Re-run into "
                    "the same run dir to submit the rest in a new batch."
                )
        return out

    def _reserve(self, ref: str | None, chunk: dict[str, ChatRequest]) -> Reservation:
        """The whole batch's worst case at batch price, before it is submitted (all or none)."""
        budget = self.session.budget
        if not budget.active:
            return Reservation(0.0, 0)
        factor = self.session.model_config(ref).batch_price_factor
        usd = tokens = 0.0
        for req in chunk.values():
            u, t = self.session._worst(ref or "default", req)
            usd, tokens = usd + u * factor, tokens + t
        return budget.reserve(usd, int(tokens))

    async def _wait(
        self,
        api: BatchAPI,
        ref: str | None,
        rec: dict[str, Any],
        futs: list[asyncio.Future],
        hold: Reservation | None = None,
    ) -> dict[str, ChatResult]:
        """Poll until the batch ends; cache and return its finished results (by key)."""
        start, status = time.monotonic(), None
        while True:
            state = await api.poll(rec["id"])
            if state.status != status:
                status = rec["status"] = state.status
                self.records.save()
                log.info("%s: batch %s %s (%d/%d)", self.stage, rec["id"], status, state.done, state.total)
            self.state = f"batch {state.status} {state.done}/{state.total or len(rec['keys'])}"
            if self.progress is not None:
                self.progress.advance(0)  # nothing finished, but the bar shows the new state
            if state.ended:
                break
            if futs and all(f.done() for f in futs):  # every waiter gone: leave it for a re-run
                raise asyncio.CancelledError
            waited = time.monotonic() - start
            if self.settings.max_wait_s is not None and waited >= self.settings.max_wait_s:
                raise BatchPending(
                    f"{self.stage}: batch {rec['id']} is still '{status}' after {waited:.0f} s "
                    f"(pipeline.stages.{self.stage}.batch_max_wait_s). Its id is in "
                    f"batches/{self.stage}.json: re-run into the same run dir to re-attach "
                    "(nothing is submitted twice)."
                )
            await asyncio.sleep(self.settings.poll_s)
        if state.ended == "failed":
            rec["collected"] = True
            self.records.save()
            raise BatchEnded(f"{self.stage}: batch {rec['id']} failed: {state.errors or 'no reason given'}")
        got = self._collect(ref, await api.results(state), hold)
        rec["collected"] = True  # its results are in the cache: never re-attach to it again
        self.records.save()
        return got

    def _collect(self, ref: str | None, items: list[Item], hold: Reservation | None) -> dict[str, ChatResult]:
        s = self.session
        cfg, ident = s.model_config(ref), s.identity(ref)
        price = s.prices.get(ref or "default") or price_for(cfg)
        out: dict[str, ChatResult] = {}
        usd = tokens = 0.0
        for it in items:
            if it.unfinished:
                continue
            if it.reply is None or it.reply.text is None:
                out[it.key] = ChatResult(text=None, error=f"batch: {it.error or 'empty reply'}", model=ident)
                continue
            if blank(it.reply.text):  # failed (the engine asks for a new sample), never cached
                out[it.key] = ChatResult(text=it.reply.text, error=EMPTY_REPLY, model=ident)
                continue
            r = it.reply
            cost = (
                price.cost(r.prompt_tokens, r.completion_tokens) * cfg.batch_price_factor if price else None
            )
            meta = {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "batch": True}
            if s.cache is not None:
                s.cache.put(it.key, ident, r.text, meta)
            out[it.key] = ChatResult(
                text=r.text,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                cost=cost,
                model=ident,
                extra={"finish_reason": r.finish_reason, "batch": True},
            )
            usd, tokens = usd + (cost or 0.0), tokens + r.prompt_tokens + r.completion_tokens
        if s.budget.active:
            s.budget.settle(hold or Reservation(0.0, 0), usd, int(tokens))
        return out


def _reattachable(records: Records, ident: str, todo: dict[str, ChatRequest]) -> list[dict[str, Any]]:
    """Batches an earlier attempt submitted and never collected that hold some of `todo`."""
    return [r for r in records.open(ident) if not todo.keys().isdisjoint(r["keys"])]
