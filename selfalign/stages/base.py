"""The Stage interface and the stage registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd

from selfalign.registry import Registry
from selfalign.stages.kinds import KINDS

if TYPE_CHECKING:
    from selfalign.context import RunContext

ROW_ID, PARENT_ID = "row_id", "parent_id"


@dataclass(frozen=True)
class StageSpec:
    """Another stage of the pipeline as the runner parsed it: name, kind and typed params.
    A stage that names another one in its params (`refs`) gets that stage's spec at build time,
    so no stage ever reads the composed config."""

    name: str
    kind: str
    params: Any


class Stage:
    """DataFrame in → new DataFrame out. Subclasses set `kind`, `Params` and `run`.

    `reads()` / `writes()` let the runner check the whole column flow before any model call.
    `check(columns)` may be overridden for stages whose columns depend on data (load).
    """

    kind: ClassVar[str] = ""
    Params: ClassVar[type] = object
    uses_llm: ClassVar[bool] = False
    # params field naming another stage → the kind that stage must have (resolved by the runner)
    refs: ClassVar[dict[str, str]] = {}
    # True: an output row depends only on its own input row (and the rows fanned out of it,
    # which stay together), so the runner may run the stage on any chunk of rows and concatenate
    # the results in order: it streams. False: a barrier that needs all rows at once (dedup,
    # pool growth, quantiles, splits, anything with a random stream across rows). Row-wise LLM
    # stages (stages/llm.py RowLLMStage) are row-local unless they set it False.
    row_local: ClassVar[bool] = False

    def __init__(
        self, name: str, params: Any, ctx: RunContext, peers: dict[str, StageSpec] | None = None
    ) -> None:
        self.name = name
        self.params = params
        self.ctx = ctx
        self.peers = peers or {}  # the stages named by `refs` fields, by stage name

    @property
    def where(self) -> str:
        return f"pipeline.stages.{self.name}"

    def is_row_local(self) -> bool:
        """May this stage run chunk by chunk now? (Params can make a row-local stage a barrier.)"""
        return self.row_local

    def reads(self) -> set[str]:
        return set()

    def writes(self) -> set[str]:
        return set()

    def removes(self) -> set[str]:
        return set()

    def prompt_hashes(self) -> dict[str, str]:
        return {}

    def model_refs(self) -> set[str | None]:
        """Named models this stage calls (None = the run's model), for the preflight."""
        return {getattr(self.params, "model", None)} if self.uses_llm else set()

    def check(self, columns: set[str]) -> tuple[set[str], list[str]]:
        """Columns after this stage, and problems (missing columns) as messages."""
        problems: list[str] = [MissingColumn(self, c, columns) for c in sorted(self.reads() - columns)]
        return (columns | self.writes()) - self.removes(), problems

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def preview(self, df: pd.DataFrame, k: int) -> list[list[dict[str, str]]]:
        """For LLM stages: the first k requests' messages, rendered from real rows."""
        return []


class MissingColumn(str):
    """A "needs column X" problem; the runner merges those of one column into one message."""

    def __new__(cls, stage: Stage, column: str, available: set[str]) -> MissingColumn:
        text = (
            f"{stage.where} ({stage.kind}) needs column '{column}', but no earlier stage "
            f"produces it. Columns available here: {', '.join(sorted(available)) or '(none)'}."
        )
        obj = super().__new__(cls, text)
        obj.stage, obj.column, obj.available = stage, column, set(available)
        return obj


STAGES: Registry[type[Stage]] = Registry("stage kind", lazy=KINDS)


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator: `@register_stage class MyStage(Stage): kind = 'my_stage' ...`."""
    STAGES.add(cls.kind, cls)
    return cls
