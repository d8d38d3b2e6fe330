"""Sample rows for the report: per stage that dropped rows, some it kept beside some it dropped,
with the reason and the raw model text (rejected.jsonl) where there is one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from selfalign.html_report.rundata import RunData

SHOWN = 5  # text fields shown on a card; the others fold away
NUMBERS = 12  # numbers shown on a card's one line of numbers
MAX_CHARS = 4000  # of one value: a report stays light whatever the model wrote
_IDS = {"row_id", "parent_id", "sample"}
_REJECTED_META = {"attempt", "stage", "row_id", "reason", "attempts", "raw"}


@dataclass
class Card:
    row_id: str
    reason: str | None = None
    raw: str | None = None
    attempts: int | None = None
    fields: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, text, long)
    more: list[tuple[str, str, bool]] = field(default_factory=list)


@dataclass
class StageSample:
    stage: str
    kind: str
    kept: list[Card]
    kept_total: int
    dropped: list[Card]
    dropped_total: int
    drops: dict[str, int]


def text(value: Any) -> tuple[str, bool]:
    """A value as display text (cut at MAX_CHARS) and whether it is long enough for a block."""
    if isinstance(value, (dict, list)):
        s = json.dumps(value, ensure_ascii=False, indent=1, default=str)
    elif isinstance(value, float) and value.is_integer():
        s = str(int(value))
    else:
        s = str(value)
    if len(s) > MAX_CHARS:
        s = s[:MAX_CHARS] + f"… [{len(s) - MAX_CHARS} more characters]"
    return s, len(s) > 120 or "\n" in s


def row_card(row: dict[str, Any], reason: str | None = None) -> Card:
    """A row as a card: its text columns newest first (stages append their columns), then its
    numbers on one line; the rest folds away."""
    items = [
        (k, v) for k, v in reversed(list(row.items())) if k not in _IDS and not is_missing(v) and v != ""
    ]
    texts = [(k, *text(v)) for k, v in items if not isinstance(v, (int, float))]
    nums = [(k, text(v)[0]) for k, v in items if isinstance(v, (int, float))]
    fields = texts[:SHOWN]
    if nums:
        fields.append(("numbers", " · ".join(f"{k} {v}" for k, v in nums[:NUMBERS]), False))
    more = texts[SHOWN:] + [(k, v, False) for k, v in nums[NUMBERS:]]
    return Card(str(row.get("row_id", "")), reason, fields=fields, more=more)


def rejected_card(rec: dict[str, Any]) -> Card:
    extra = [(k, *text(v)) for k, v in rec.items() if k not in _REJECTED_META]
    raw = rec.get("raw")
    return Card(
        str(rec.get("row_id", "")),
        str(rec.get("reason") or "?"),
        None if raw is None else text(raw)[0],
        rec.get("attempts"),
        fields=extra,
    )


def final_cards(data: RunData, k: int = 3) -> list[Card]:
    return [row_card(r) for r in data.dataset.head(k).to_dict(orient="records")]


def stage_samples(data: RunData, k: int = 3) -> list[StageSample]:
    out = []
    for i, stage in enumerate(data.stages):
        rejected = [r for r in data.rejected if r.get("stage") == stage["name"]]
        drops = stage.get("drops") or {}
        if stage.get("status") == "not run" or not (rejected or sum(drops.values())):
            continue
        output = data.frame(i)
        cards = [rejected_card(r) for r in rejected[:k]]
        dropped = _dropped_rows(data, i, drops)
        covered = {c.row_id for c in cards}
        cards += [c for c in dropped if c.row_id not in covered][: max(0, k - len(cards))]
        total = max(sum(drops.values()), len(rejected))
        kept = [row_card(r) for r in output.head(2).to_dict(orient="records")]
        out.append(
            StageSample(
                stage["name"],
                stage.get("kind", "?"),
                kept,
                int(stage.get("rows_out") or 0),
                cards,
                total,
                dict(drops),
            )
        )
    return out


def _dropped_rows(data: RunData, i: int, drops: dict[str, int]) -> list[Card]:
    """Rows of the stage's input that are in its output neither by row_id nor by content (a
    selection renames the row it keeps to its parent's id). Only for a stage that filters (rows
    in = rows out + drops), with both files read whole, and when exactly the dropped number of
    rows is found: a stage that merges rows (pairs, groups) cannot be read this way."""
    stage, dropped = data.stages[i], sum(drops.values())
    if i == 0 or not dropped or stage.get("rows_in") != (stage.get("rows_out") or 0) + dropped:
        return []
    if not (data.complete(i - 1) and data.complete(i)):
        return []
    before, after = data.frame(i - 1), data.frame(i)
    if before.empty or "row_id" not in before.columns:
        return []
    common = [c for c in before.columns if c in after.columns and c not in _IDS]
    kept_ids = set(after["row_id"].astype(str)) if "row_id" in after.columns else set()
    kept_keys = {_key(r, common) for r in after.to_dict(orient="records")}
    gone = [
        r
        for r in before.to_dict(orient="records")
        if str(r.get("row_id")) not in kept_ids and _key(r, common) not in kept_keys
    ]
    if len(gone) != dropped:
        return []
    reason = next(iter(drops)) if len(drops) == 1 else "one of: " + ", ".join(drops)
    return [row_card(r, reason) for r in gone[:5]]


def _key(row: dict[str, Any], columns: list[str]) -> str:
    return json.dumps([row.get(c) for c in columns], default=str, sort_keys=True)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))
