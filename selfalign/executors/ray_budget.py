"""budget.max_usd / max_tokens under executor=ray: one Budget for the driver and every worker.

Each process checking its own copy would let N workers spend N budgets. So the run's Budget
lives in one small actor; every reservation and settlement goes through it (two actor round
trips per call sent, only when a budget is set), and the driver takes the final state back for
the manifest and budget.json at the end of the run. The actor runs on the driver's node, as it
writes the durable record (budget.ledger) into the run dir there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from selfalign.context import RunContext
from selfalign.llm.budget import Budget, BudgetExceeded, Reservation


class Holder:
    """The actor's body (wrapped by ray.remote in shared_budget): the one real Budget."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def reserve(self, usd: float, tokens: int) -> Reservation | str:
        try:
            return self.budget.reserve(usd, tokens)
        except BudgetExceeded as exc:
            return str(exc)  # raised again by the caller, in its own process

    def settle(self, res: Reservation, usd: float, tokens: int) -> None:
        self.budget.settle(res, usd, tokens)

    def status(self) -> str:
        return self.budget.status()

    def get(self) -> Budget:
        return self.budget


class SharedBudget:
    """What the session sees instead of a Budget: the same methods, answered by the actor."""

    active = True

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def reserve(self, usd: float, tokens: int) -> Reservation:
        import ray

        out = ray.get(self.actor.reserve.remote(usd, tokens))
        if isinstance(out, str):
            raise BudgetExceeded(out)
        return out

    def settle(self, res: Reservation, usd: float, tokens: int) -> None:
        import ray

        # waited for: the driver reads the final state right after the last block returns
        ray.get(self.actor.settle.remote(res, usd, tokens))

    def status(self) -> str:
        import ray

        return ray.get(self.actor.status.remote())


@contextmanager
def shared_budget(ctx: RunContext) -> Iterator[SharedBudget | None]:
    """While the block is open ctx.llm.budget is a SharedBudget (when a budget is set); after
    it, the real Budget again, with everything every process spent."""
    if not ctx.llm.budget.active:
        yield None
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # on the driver's node: the actor appends each reservation to the run dir's budget.ledger
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, scheduling_strategy=here)(Holder).remote(ctx.llm.budget)
    shared = SharedBudget(actor)
    ctx.llm.budget = shared  # type: ignore[assignment]
    try:
        yield shared
    finally:
        ctx.llm.budget = ray.get(actor.get.remote())
        ray.kill(actor)
