"""Cost and time estimate of a run before it is made, offline.

The calls are counted exactly by a dry run of the pipeline on its real input with every model
swapped for the offline test model (a fresh, private response cache, so repeated requests are
counted once, as in a real fresh run). Fan-outs, parse retries and best-of are what the test
model's replies make them; for a real model the stages whose call count depends on its replies
(retries of unparsable output, list lengths) may differ. Prompt tokens come from the rendered
prompts with litellm's offline tokenizer for the named model; completion tokens are a range:
worst case max_tokens, expected from `pilot` real calls per stage (else unknown).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from selfalign.llm.budget import DEFAULT_MAX_TOKENS, price_for
from selfalign.llm.config import ModelConfig, Price
from selfalign.llm.testmodel import Recorded

DEFAULT_LATENCY_S = 2.0  # per call, when no pilot measured one


@dataclass
class StageEstimate:
    stage: str
    model: str  # model ref: default or a name under `models:`
    calls: int = 0
    prompt_tokens: int = 0
    completion_worst: int = 0
    completion_expected: int | None = None  # from the pilot; None = unknown
    usd_low: float = 0.0  # prompt tokens only
    usd_expected: float | None = None
    usd_high: float = 0.0  # every completion at max_tokens
    latency_s: float = DEFAULT_LATENCY_S
    wall_s: float = 0.0
    pilot_calls: int = 0
    batch: bool = False  # sent through a batch API: priced at model.batch_price_factor
    requests: list[Recorded] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        # not asdict(): it would deep-copy every recorded request only to drop them
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "requests"}
        for k in ("usd_low", "usd_expected", "usd_high"):
            out[k] = None if out[k] is None else round(out[k], 6)
        return out


def dry_config(cfg: DictConfig, models: dict[str, ModelConfig]) -> DictConfig:
    """The user's config with every model replaced by the test model (named after its ref, so
    each recorded call says which model it was for; asked for JSON where the real one would
    be, so the requests are the real ones), no budget and no preflight."""
    dry = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(dry, False)

    def stand_in(ref: str) -> dict[str, Any]:
        m = models[ref]
        return {
            "provider": "test",
            "name": ref,
            "concurrency": m.concurrency,
            "supports_json_schema": m.supports_json_schema,
        }

    dry.model = stand_in("default")
    dry.models = {ref: stand_in(ref) for ref in models if ref != "default"}
    dry.budget = {"max_usd": None, "max_tokens": None}
    for stage in (dry.pipeline.get("stages") or {}).values():
        if isinstance(stage, DictConfig) and stage.get("batch"):
            stage.batch = False  # the test model has no batch API; the same requests, sent live
    dry.preflight = False
    return dry


def record_calls(cfg: DictConfig, models: dict[str, ModelConfig], overrides: list[str]) -> list[Recorded]:
    """Every request a fresh run of `cfg` makes, in order, from a dry run on the test model."""
    from selfalign import api
    from selfalign.llm.testmodel import scripted

    dry = dry_config(cfg, models)
    with tempfile.TemporaryDirectory(prefix="selfalign-estimate-") as tmp, scripted() as script:
        dry.cache = {"enabled": True, "path": str(Path(tmp) / "cache.sqlite"), "refresh_stages": []}
        api.run_config(dry, Path(tmp) / "run", overrides, frame=False, report=False)  # nobody reads them
        return list(script.requests)


def max_tokens_of(req: Recorded, cfg: ModelConfig) -> int:
    value = req.params.get("max_tokens") or cfg.extra_params.get("max_tokens")
    return int(value) if value else DEFAULT_MAX_TOKENS


def tally(requests: list[Recorded], models: dict[str, ModelConfig]) -> list[StageEstimate]:
    """Calls and tokens per (stage, model), in the order the stages first called."""
    from selfalign.llm.litellm_adapter import count_tokens

    by: dict[tuple[str, str], StageEstimate] = {}
    # The n samples of one prompt (and a judge's retries) send the same messages: each distinct
    # prompt is counted once; litellm's counter costs ~0.1 ms a call.
    counted: dict[tuple[str, tuple[tuple[tuple[str, str], ...], ...]], int] = {}
    for req in requests:
        key = (req.stage, req.model)
        est = by.setdefault(key, StageEstimate(req.stage, req.model))
        cfg = models[req.model]
        est.calls += 1
        prompt = (cfg.name, tuple(tuple(m.items()) for m in req.messages))
        if prompt not in counted:
            counted[prompt] = count_tokens(cfg.name, req.messages)
        est.prompt_tokens += counted[prompt]
        est.completion_worst += max_tokens_of(req, cfg)
        est.requests.append(req)
    return list(by.values())


def price(models: dict[str, ModelConfig]) -> dict[str, Price | None]:
    return {ref: price_for(cfg) for ref, cfg in models.items()}


def finish(
    stages: list[StageEstimate], models: dict[str, ModelConfig], prices: dict[str, Price | None]
) -> dict[str, Any]:
    """$ range and wall time per stage, and the totals (stages run one after another)."""
    for est in stages:
        p, cfg = prices.get(est.model), models[est.model]
        if p is not None and est.batch:
            p = Price(p.input_per_mtok * cfg.batch_price_factor, p.output_per_mtok * cfg.batch_price_factor)
        if p is not None:
            est.usd_low = p.cost(est.prompt_tokens, 0)
            est.usd_high = p.cost(est.prompt_tokens, est.completion_worst)
            if est.completion_expected is not None:
                est.usd_expected = p.cost(est.prompt_tokens, est.completion_expected)
        est.wall_s = wall_time(est, cfg)
    known = all(e.completion_expected is not None for e in stages)
    unpriced = sorted({e.model for e in stages if prices.get(e.model) is None})
    totals = {
        "calls": sum(e.calls for e in stages),
        "prompt_tokens": sum(e.prompt_tokens for e in stages),
        "completion_worst": sum(e.completion_worst for e in stages),
        "completion_expected": sum(e.completion_expected or 0 for e in stages) if known else None,
        "usd_low": round(sum(e.usd_low for e in stages), 6),
        "usd_expected": round(sum(e.usd_expected or 0 for e in stages), 6) if known else None,
        "usd_high": round(sum(e.usd_high for e in stages), 6),
        "wall_s": round(sum(e.wall_s for e in stages), 1),
    }
    return {
        "stages": [e.to_json() for e in stages],
        "totals": totals,
        "unpriced_models": unpriced,
        "models": {ref: cfg.name for ref, cfg in models.items()},
    }


def wall_time(est: StageEstimate, cfg: ModelConfig) -> float:
    """calls / throughput, the throughput bounded by concurrency/latency, rpm and tpm (all
    three per endpoint: several api_base URLs multiply them)."""
    n = cfg.total_concurrency // cfg.concurrency  # endpoints
    per_s = [cfg.total_concurrency / max(est.latency_s, 1e-3)]
    if cfg.rpm:
        per_s.append(n * cfg.rpm / 60)
    if cfg.tpm and est.calls:
        tokens = est.prompt_tokens + (est.completion_expected or est.completion_worst)
        per_s.append(n * cfg.tpm / 60 / max(tokens / est.calls, 1))
    return round(est.calls / min(per_s), 1) if est.calls else 0.0


async def pilot(stages: list[StageEstimate], session: Any, k: int) -> None:
    """Send the first `k` recorded requests of each stage to the real model (through the
    response cache, so the run reuses them) and scale their completion tokens and latency."""
    from selfalign.llm.base import ChatRequest

    for est in stages:
        ref = None if est.model == "default" else est.model
        reqs = [
            ChatRequest.make(r.messages, r.params, r.sample, stage=est.stage, row_id=r.row_id)
            for r in est.requests[:k]
        ]
        results = [r for r in await session.complete(est.stage, ref, reqs) if r.ok]
        est.pilot_calls = len(results)
        if not results:
            continue
        mean = sum(r.completion_tokens for r in results) / len(results)
        est.completion_expected = round(mean * est.calls)
        sent = [r.latency_s for r in results if not r.cached]
        if sent:
            est.latency_s = round(sum(sent) / len(sent), 3)
