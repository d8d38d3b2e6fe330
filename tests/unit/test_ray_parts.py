"""The Ray executor's pure parts (no Ray needed): each worker's share of an endpoint's limits,
and putting blocks back together as the whole frame would have come out."""

from __future__ import annotations

import pandas as pd

from selfalign.executors.ray_executor import _concat
from selfalign.executors.ray_worker import share
from selfalign.llm.config import ModelConfig


def test_workers_share_the_endpoint_limits() -> None:
    cfg = ModelConfig(provider="test", name="t", concurrency=16, min_concurrency=4, rpm=600.0, tpm=None)
    part = share(cfg, 3)
    assert (part.concurrency, part.min_concurrency, part.rpm, part.tpm) == (5, 1, 200.0, None)
    assert share(ModelConfig(provider="test", name="t", concurrency=1), 4).concurrency == 1
    assert share(cfg, 1) == cfg


def test_blocks_come_back_in_order_with_the_whole_frames_index() -> None:
    whole = pd.DataFrame({"x": [1, 2, 3, 4]})
    blocks = [whole.iloc[0:2], whole.iloc[2:4]]
    assert _concat(blocks).index.tolist() == [0, 1, 2, 3]  # type: ignore[union-attr]
    reset = [b.reset_index(drop=True) for b in blocks]  # a stage that resets its index
    out = _concat(reset)
    assert out is not None and out.index.tolist() == [0, 1, 2, 3] and out.x.tolist() == [1, 2, 3, 4]


def test_empty_blocks_do_not_widen_dtypes() -> None:
    full = pd.DataFrame({"n": [1, 2]})
    empty = pd.DataFrame({"n": pd.Series([], dtype=object)})
    out = _concat([empty, full, None])
    assert out is not None and out.n.dtype == full.n.dtype and out.n.tolist() == [1, 2]
    assert _concat([empty, None]) is empty  # every block emptied: its columns, no rows
    assert _concat([None, None]) is None  # no block reached the stage: the driver runs it
