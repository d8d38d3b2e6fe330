"""ShareGPT-style records ↔ flat columns: `unpack_sharegpt` after load (items → instruction,
response, category, evidence) and `pack_sharegpt` before export (columns → id + items)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.stages.base import Stage, register_stage
from selfalign.stages.load_rows import blank_values


def turn_pair(items: Any, user: list[str], assistant: list[str]) -> tuple[int, int] | None:
    """Indexes of the first user item and the assistant item right after it, or None."""
    if not isinstance(items, list):
        return None
    for i, item in enumerate(items[:-1]):
        if isinstance(item, dict) and item.get("from") in user:
            nxt = items[i + 1]
            if isinstance(nxt, dict) and nxt.get("from") in assistant:
                return i, i + 1
            return None
    return None


@dataclass
class UnpackParams:
    mode: Literal["auto", "sharegpt", "plain"] = doc(
        "auto: unpack when the items column exists, else pass rows through", "auto"
    )
    items_column: str = doc("column with the [{from, value, category?, evidence?}] list", "items")
    user_roles: list[str] = doc("`from` values of the user turn", factory=lambda: ["human", "user"])
    assistant_roles: list[str] = doc("`from` values of the reply", factory=lambda: ["gpt", "assistant"])
    question_column: str = doc("column for the first user turn", "instruction")
    response_column: str = doc("column for the reply to it", "response")
    category_column: str = doc("column for items[user].category (null if absent)", "category")
    evidence_column: str = doc("column for items[user].evidence ([] if absent)", "evidence")
    turns_column: str = doc("column for len(items) (retrieval skips multi-turn rows)", "num_items")
    required: list[str] = doc(
        "text columns every row needs (unpacked or plain input): a row where one is missing, "
        "empty or whitespace-only is dropped, counted as empty:COLUMN",
        factory=list,
    )


@register_stage
class UnpackSharegpt(Stage):
    """ShareGPT records → flat columns; rows with no user→assistant pair or no required text are dropped."""

    kind = "unpack_sharegpt"
    row_local = True
    Params = UnpackParams

    def _active(self, columns: set[str] | pd.Index) -> bool:
        p: UnpackParams = self.params
        return p.mode == "sharegpt" or (p.mode == "auto" and p.items_column in columns)

    def writes(self) -> set[str]:
        p: UnpackParams = self.params
        return {p.question_column, p.response_column, p.category_column, p.evidence_column, p.turns_column}

    def check(self, columns: set[str]) -> tuple[set[str], list[str]]:
        p: UnpackParams = self.params
        if not self._active(columns):
            return columns, []
        if p.items_column not in columns:
            return columns, [
                f"{self.where}: mode 'sharegpt' needs column '{p.items_column}', "
                f"which the input lacks (columns: {', '.join(sorted(columns))}). "
                f"Set {self.where}.items_column or mode=plain."
            ]
        return columns | self.writes(), []

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        return self._drop_blank(await self._unpack(df))

    def _drop_blank(self, df: pd.DataFrame) -> pd.DataFrame:
        """Rows with no text in a `required` column: nothing to prompt with or to train on."""
        for col in self.params.required:
            if col in df.columns:  # an absent column is the column check's to report
                empty = blank_values(df[col])
                self.ctx.stats.drop(self.name, f"empty:{col}", int(empty.sum()))
                df = df[~empty]
        return df

    async def _unpack(self, df: pd.DataFrame) -> pd.DataFrame:
        p: UnpackParams = self.params
        if not self._active(df.columns):
            return df
        keep, values = [], []
        for r in io.records(df):
            pair = turn_pair(r.get(p.items_column), p.user_roles, p.assistant_roles)
            keep.append(pair is not None)
            if pair is None:
                continue
            items = r[p.items_column]
            q, a = items[pair[0]], items[pair[1]]
            ev = q.get("evidence")
            values.append(
                {
                    p.question_column: q.get("value"),
                    p.response_column: a.get("value"),
                    p.category_column: q.get("category"),
                    p.evidence_column: list(ev) if isinstance(ev, list) else [],
                    p.turns_column: len(items),
                }
            )
        self.ctx.stats.drop(self.name, "no_user_assistant_pair", keep.count(False))
        out = df[keep].reset_index(drop=True)
        for col in self.writes():
            out[col] = pd.Series([v[col] for v in values], dtype=object)
        return out


@dataclass
class PackParams:
    items_column: str = doc("column for the packed item list (an input list is updated)", "items")
    id_column: str = doc("record id column (created as 0..N-1 if missing)", "id")
    renumber: bool = doc("always set ids to 0..N-1 (the original's scripts index by id)", False)
    question_column: str = doc("user turn", "instruction")
    response_column: str = doc("assistant turn (the chosen text)", "response")
    category_column: str = doc("copied to the user item, if the column exists", "category")
    evidence_column: str = doc("copied to the user item when non-empty, if it exists", "evidence")
    tag_column: str = doc("copied to the assistant item, if the column exists", "tag")
    user_role: str = doc("`from` of a new user item", "human")
    assistant_role: str = doc("`from` of a new assistant item", "gpt")
    file: str | None = doc("also write <run dir>/<file>.json as one JSON list (null = don't)", None)


@register_stage
class PackSharegpt(Stage):
    """Flat columns → {id, items}; an existing items list keeps its other turns and fields."""

    kind = "pack_sharegpt"
    Params = PackParams

    def reads(self) -> set[str]:
        p: PackParams = self.params
        return {p.question_column, p.response_column}

    def writes(self) -> set[str]:
        return {self.params.items_column, self.params.id_column}

    def record(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        p: PackParams = self.params
        items = copy.deepcopy(row.get(p.items_column))
        pair = turn_pair(items, ["human", "user", p.user_role], ["gpt", "assistant", p.assistant_role])
        if pair is None:
            items, pair = [{"from": p.user_role}, {"from": p.assistant_role}], (0, 1)
        q, a = items[pair[0]], items[pair[1]]
        q["value"], a["value"] = row.get(p.question_column), row.get(p.response_column)
        if row.get(p.category_column) is not None:
            q["category"] = row[p.category_column]
        ev = row.get(p.evidence_column)
        if isinstance(ev, list) and ev:
            q["evidence"] = ev
        else:
            q.pop("evidence", None)  # the original deletes an emptied evidence key
        if row.get(p.tag_column) is not None:
            a["tag"] = row[p.tag_column]
        return items

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: PackParams = self.params
        rows = io.records(df)
        out = df.copy()
        out[p.items_column] = pd.Series([self.record(r) for r in rows], index=df.index, dtype=object)
        if p.renumber or p.id_column not in df.columns:
            out[p.id_column] = list(range(len(df)))
        if p.file and self.ctx.run_dir is not None:
            recs = [
                {"id": r[p.id_column], "items": r[p.items_column]}
                for r in io.records(out[[p.id_column, p.items_column]])
            ]
            io.write_json(recs, self.ctx.run_dir / f"{p.file}.json")
        return out
