"""executor=ray: the same stage objects, the streaming segments spread over Ray worker actors.

The driver (this process) runs the legs of the segment walk (walk.py) that the local executor
runs too: a barrier runs here, on all rows, with the local executor's code; a streaming segment
is cut into blocks (segments.chunks, so a parent_id group stays whole) that worker actors
(ray_worker.Worker, one model client each) run through the segment's stages. The driver puts
the blocks back in order, writes each stage's checkpoint and merges the workers' stats, LLM
accounting and rejected rows into its own context, so the manifest, rejected table and resume
behave as after a local run. Why actors and not Ray Data:
docs/execution.md, "Ray executor".
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from selfalign.checkpoint import Stored
from selfalign.context import RunContext
from selfalign.errors import ConfigError, RunFailed
from selfalign.executors.local import check_failures, run_whole
from selfalign.executors.ray_budget import SharedBudget, shared_budget
from selfalign.executors.ray_worker import Worker
from selfalign.llm.budget import BudgetExceeded
from selfalign.llm.session import DEFAULT
from selfalign.runner import Built
from selfalign.segments import Segment, chunks, split
from selfalign.walk import Leg, Walk

log = logging.getLogger("selfalign")
CONNECT_TIMEOUT_S = 5.0  # to the cluster's port, before ray.init (which retries for minutes)


@contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator[None]:
    """Join the cluster at `address`, or start a local Ray; one already running (a test's, a
    notebook's) is used as it is and left running."""
    import ray

    started = not ray.is_initialized()
    if started:
        check_address(address)
        # no address: a Ray of our own ("local"), never one that happens to run on this machine
        # (ray.init(None) joins the last `ray start` cluster it finds in /tmp/ray)
        target = address or os.environ.get("RAY_ADDRESS") or "local"
        keep = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(address=target, num_cpus=num_cpus if target == "local" else None, log_to_driver=False)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            raise RunFailed(f"ray.address={address}: cannot join the Ray cluster: {exc}") from None
        if keep is not None and threading.current_thread() is threading.main_thread():
            # ray.init's SIGTERM handler aborts the driver (a C++ stack dump, the manifest left
            # "running"); SIGTERM ends the run like Ctrl-C (aio.run), exit 143
            signal.signal(signal.SIGTERM, keep)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def check_address(address: str | None) -> None:
    """Before ray.init: the host of `address` resolves and its port answers. Ray itself retries
    an unreachable address for minutes, printing warnings, and the run would hang in "running"."""
    if address in (None, "", "auto", "local"):  # a local Ray, or the one `ray start` left
        return
    host, _, port = str(address).split("://", 1)[-1].rpartition(":")
    host = host.strip("[]")  # an IPv6 address: [::1]:6379
    if not host or not port.isdigit():
        raise ConfigError(
            f"ray.address={address}: expected HOST:PORT (the head's GCS, e.g. head:6379), "
            "ray://HOST:PORT (Ray client, e.g. ray://head:10001), auto, or null for a local Ray."
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:  # socket.gaierror (no such host) is an OSError too
        why = "no such host" if isinstance(exc, socket.gaierror) else "nothing answers at that port"
        raise RunFailed(
            f"ray.address={address}: cannot reach the Ray cluster ({why}: {exc.strerror or exc}). "
            "Start it (`ray start --head` on the head node), fix ray.address, or drop it to run "
            "on a local Ray."
        ) from None


async def execute_ray(built: Built, cfg: DictConfig) -> Stored:
    """executors.local.execute's contract (stage files, reuse of matching checkpoints, the final
    dataset) with the streaming segments run by Ray workers."""
    rs = built.settings.ray
    with ray_session(rs.address, rs.num_cpus), shared_budget(built.ctx) as budget:
        pool = Pool(built, cfg, budget)
        if any(seg.streams for seg in split(built.stages)):
            pool.start()  # the workers import and build while the driver runs the first barrier
        try:
            return await _execute(built, pool)
        finally:
            await pool.close()


async def _execute(built: Built, pool: Pool) -> Stored:
    walk = Walk(built, split(built.stages), sources=False)  # a load runs on the driver
    for leg in walk:
        walk.ran(leg, await _run_leg(built, pool, leg))
    return walk.output()


async def _run_leg(built: Built, pool: Pool, leg: Leg) -> list[Stored]:
    """A streamed leg's rows through the workers; a barrier, or a stage that no rows reached,
    on the driver as in a local run."""
    ctx = built.ctx
    outs = await pool.run(leg.segment, leg.input) if leg.streams and len(leg.input) else {}
    df, got = leg.input, []
    for step in leg.steps:
        out = outs.get(step.index)
        if out is None:  # a barrier, or no rows left to send
            stored = await run_whole(ctx, step, df)
        else:
            st = ctx.stats.stage(step.stage.name)
            st.finished = True
            step.ck.save(out, step.fp, st, ctx.llm.accounting.dump_stage(step.stage.name))
            name = step.stage.name
            log.info("%s: %d rows in, %d out on Ray in %.1fs", name, st.rows_in, len(out), st.wall_s)
            check_failures(step.stage, st)
            stored = Stored.kept(step.ck, out)
        got.append(stored)
        df = stored.frame()
    return got


class Pool:
    """The worker actors, started on the first streaming segment and reused by the others."""

    def __init__(self, built: Built, cfg: DictConfig, budget: SharedBudget | None) -> None:
        self.built, self.cfg, self.budget = built, cfg, budget
        self.actors: list[Any] = []

    def start(self) -> None:
        import ray

        rs, ctx = self.built.settings.ray, self.built.ctx
        cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
        n = rs.num_workers or int(cpus)
        refs = {
            r or DEFAULT
            for seg in split(self.built.stages)
            if seg.streams
            for s in seg.stages
            for r in s.model_refs()
        }
        servers = {  # the embedded model: the driver's one server, for every worker
            name: client.server.borrowed()  # type: ignore[attr-defined]
            for name, cfg in ctx.llm.models.items()
            if cfg.provider == "local" and name in refs and (client := ctx.llm.client(name)) is not None
        }
        remote = ray.remote(num_cpus=min(1.0, cpus / n))(Worker)
        conf = OmegaConf.to_yaml(self.cfg, resolve=True)
        attempt = ctx.rejected.attempt
        assert ctx.run_dir is not None
        self.actors = [
            remote.remote(conf, str(ctx.run_dir), os.getcwd(), attempt, n, servers, self.budget)
            for _ in range(n)
        ]
        log.info("ray: %d workers (%s CPUs in the cluster)", n, f"{cpus:g}")

    async def run(self, seg: Segment, df: pd.DataFrame) -> dict[int, pd.DataFrame | None]:
        """Every block of `df` through the segment's stages; each stage's output, in row order
        (None for a stage that no block reached: every row was dropped before it)."""
        if not self.actors:
            self.start()
        ctx, rs = self.built.ctx, self.built.settings.ray
        blocks = list(chunks(df, rs.block_rows))
        results: list[dict[str, Any]] = [{} for _ in blocks]
        names = " → ".join(s.name for s in seg.stages)
        log.info("%s: %d rows in %d blocks on Ray", names, len(df), len(blocks))
        todo = iter(range(len(blocks)))
        last = seg.indexes[-1]
        start = time.time()
        stop: list[BudgetExceeded] = []
        with ctx.progress(f"{names} (rows)", len(df)) as bar:
            bar.add_total(len(df))

            async def feed(actor: Any) -> None:
                for b in todo:  # the shared iterator: each block goes to the first free slot
                    try:
                        results[b] = await _unwrap(actor.run_block.remote(b, seg.first, last, blocks[b]))
                    except BudgetExceeded as exc:
                        stop.append(exc)
                    if stop:  # the budget is used up: no new block (the others finish)
                        return
                    bar.advance(len(blocks[b]))

            slots = [asyncio.ensure_future(feed(a)) for a in self.actors for _ in range(rs.blocks_per_worker)]
            try:
                await asyncio.gather(*slots)
            except BaseException:  # one block failed: send no more (close() stops the workers)
                for task in slots:
                    task.cancel()
                await asyncio.gather(*slots, return_exceptions=True)
                raise
        # After a budget stop every block has come back: each worker's calls in flight were
        # answered and cached (the budget refuses every new one at once), and what they sent
        # and spent goes into the driver's stats and manifest like a finished segment's.
        takes = [await _unwrap(a.take.remote()) for a in self.actors]
        merge(ctx, seg, takes, [r.get("done", []) for r in results], start)
        if stop:
            raise stop[0]
        return {i: _concat([r["outs"][j] for r in results]) for j, i in enumerate(seg.indexes)}

    async def close(self) -> None:
        import ray

        for actor in self.actors:
            try:
                await _unwrap(actor.close.remote())
            except Exception as exc:  # noqa: BLE001 — closing a client must not hide the run's error
                log.debug("ray worker close: %s", exc)
            ray.kill(actor)
        self.actors = []


async def _unwrap(ref: Any) -> Any:
    """An actor's own error (RunFailed, BudgetExceeded …) raised here as itself, so exit codes
    and messages are those of a local run."""
    import ray

    try:
        return await ref
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise


def _concat(frames: list[pd.DataFrame | None]) -> pd.DataFrame | None:
    """Blocks back into one frame. Empty blocks are left out (their dtypes would widen the
    others'); a stage that reset its index gets 0..n-1, as on the whole frame."""
    ran = [f for f in frames if f is not None]
    full = [f for f in ran if len(f)]
    if not full:
        return ran[0] if ran else None
    fresh = all(isinstance(f.index, pd.RangeIndex) and f.index.start == 0 for f in full)
    return pd.concat(full, ignore_index=fresh) if len(full) > 1 else full[0]


def merge(ctx: RunContext, seg: Segment, takes: list[dict[str, Any]], done: list[list], start: float) -> None:
    """The workers' stats, accounting and rejected rows into the driver's, in stage and block
    order (the order a local run writes them in); their log lines into the driver's log."""
    for j, stage in enumerate(seg.stages):
        st = ctx.stats.stage(stage.name)
        for take in takes:
            part = take["stats"].get(stage.name)
            if part is None:
                continue
            st.rows_in, st.rows_out = st.rows_in + part.rows_in, st.rows_out + part.rows_out
            st.drops.update(part.drops)
            st.counts.update(part.counts)
            st.jobs, st.failed = st.jobs + part.jobs, st.failed + part.failed
            st.llm_failed += part.llm_failed
            st.first_error = st.first_error or part.first_error
        ends = [d[j] for d in done if len(d) > j]
        st.wall_s = round(max(ends, default=start) - start, 3)
    for w, take in enumerate(takes):
        for level, line in take["log"]:
            log.log(level, "[ray worker %d] %s", w, line)
        for key, part in take["llm"].items():
            ctx.llm.accounting.counters[key].merge(part)
    order = {s.name: j for j, s in enumerate(seg.stages)}
    records = [r for take in takes for r in take["rejected"]]
    records.sort(key=lambda r: (order.get(r[1]["stage"], len(order)), r[0]))
    for _, rec in records:
        ctx.rejected.add(**rec)
