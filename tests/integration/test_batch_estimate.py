"""`selfalign estimate` prices stages with batch: true at model.batch_price_factor (offline)."""

from __future__ import annotations

import pytest
from helpers import TINY, TINY_DIRS

from selfalign.commands.estimate import estimate

ROWS = 5  # tiny.jsonl after its filter; answer has n=2


def test_the_estimate_prices_batched_stages_at_batch_price() -> None:
    base = [
        "model=openai",
        "model.price={input_per_mtok: 1000, output_per_mtok: 1000}",
        *TINY,
    ]
    live = {s["stage"]: s for s in estimate(base, TINY_DIRS)["stages"]}
    batched = {
        s["stage"]: s for s in estimate([*base, "pipeline.stages.answer.batch=true"], TINY_DIRS)["stages"]
    }
    assert batched["answer"]["calls"] == live["answer"]["calls"] == 2 * ROWS  # the same requests
    assert batched["answer"]["batch"] and not batched["judge"]["batch"]
    assert batched["answer"]["usd_high"] == pytest.approx(live["answer"]["usd_high"] * 0.5)
    assert batched["judge"]["usd_high"] == pytest.approx(live["judge"]["usd_high"])
