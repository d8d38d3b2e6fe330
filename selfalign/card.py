"""The dataset card (README.md) of a run dir: the Hub's YAML header, then what made the data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from selfalign import io
from selfalign.redact import redact
from selfalign.stages.export import ViewFiles

CARD = "README.md"
DEFAULT_LICENSE = "unknown"  # the data's terms follow its inputs and the models' terms
# root keys of conf/config.yaml that say how to run, not what the method did
_RUN_KEYS = {
    "allow_empty",
    "retry_failed",
    "preflight",
    "models",
    "plugins",
    "prompts",
    "cache",
    "model",
    "pipeline",
    "hydra",
}
_SIZES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
]
_ARROW_DTYPE = {"double": "float64", "float": "float32", "halffloat": "float16"}

# ------------------------------------------------------------------------------------------------
# what the view files hold


def data_file(run_dir: Path, v: ViewFiles, stem: str) -> Path:
    """The file a card config points at: Parquet when the view wrote it, else JSONL."""
    ext = "parquet" if "parquet" in v.formats else "jsonl"
    return run_dir / f"{stem}.{ext}"


def file_schema(path: Path) -> Any:
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.read_schema(path)
    with path.open(encoding="utf-8") as fh:
        head = [json.loads(line) for _, line in zip(range(1000), fh, strict=False) if line.strip()]
    import pandas as pd

    return io.arrow_table(pd.DataFrame.from_records(head)).schema


def file_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def file_bytes(path: Path) -> int:
    """A split's `num_bytes`: its uncompressed size for Parquet (near its Arrow size, which
    `datasets` means by it and does not check), its size on disk for JSONL."""
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        meta = pq.ParquetFile(path).metadata
        return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return path.stat().st_size


def feature(name: str | None, t: Any) -> dict[str, Any]:
    """An Arrow type as the Hub's `features` YAML entry (as `datasets` writes it)."""
    import pyarrow as pa

    out: dict[str, Any] = {"name": name} if name is not None else {}
    if pa.types.is_struct(t):
        out["struct"] = [feature(t.field(i).name, t.field(i).type) for i in range(t.num_fields)]
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        inner = feature(None, t.value_type)
        out["list"] = inner["dtype"] if set(inner) == {"dtype"} else inner.get("struct", inner)
    else:
        out["dtype"] = _ARROW_DTYPE.get(str(t), str(t))
    return out


def trl_type(schema: Any) -> str:
    """Which TRL dataset type a view's columns make (how TRL itself tells them apart)."""
    import pyarrow as pa

    names = set(schema.names)
    if "messages" in names:
        return "language modeling, conversational"
    kind = (
        "preference"
        if {"prompt", "chosen", "rejected"} <= names
        else "prompt-completion"
        if {"prompt", "completion"} <= names
        else "text classification"
        if {"text", "label"} <= names
        else ""
    )
    if not kind or kind == "text classification":
        return kind or "rows"
    conversational = pa.types.is_list(schema.field("prompt").type)
    return f"{kind}, {'conversational' if conversational else 'standard'}"


# ------------------------------------------------------------------------------------------------
# the YAML header


def present(run_dir: Path, views: list[ViewFiles]) -> list[ViewFiles]:
    """The views whose files are there (a disabled export stage wrote none), without their
    empty splits: `datasets` cannot load an empty file (a view with no rows is left out)."""
    out = []
    for v in views:
        if not all(data_file(run_dir, v, stem).exists() for stem in v.splits.values()):
            continue
        splits = {s: stem for s, stem in v.splits.items() if file_rows(data_file(run_dir, v, stem))}
        if splits:
            out.append(ViewFiles(v.name, v.kind, v.format, splits, list(v.formats)))
    return out


def header(run_dir: Path, views: list[ViewFiles], pipeline: str, license: str) -> dict[str, Any]:
    configs, infos, total = [], [], 0
    for i, v in enumerate(views):
        files = {split or "train": data_file(run_dir, v, stem) for split, stem in v.splits.items()}
        configs.append(
            {
                "config_name": v.name,
                "data_files": [{"split": s, "path": p.name} for s, p in files.items()],
                **({"default": True} if i == 0 else {}),
            }
        )
        schema = file_schema(next(iter(files.values())))
        splits = [
            {"name": s, "num_bytes": file_bytes(p), "num_examples": file_rows(p)} for s, p in files.items()
        ]
        total = max(total, sum(s["num_examples"] for s in splits))
        infos.append(
            {
                "config_name": v.name,
                "features": [feature(n, schema.field(n).type) for n in schema.names],
                "splits": splits,
            }
        )
    size = next((label for bound, label in _SIZES if total < bound), "n>10M")
    return {
        "license": license,
        "task_categories": ["text-generation"],
        "tags": ["synthetic", "selfalign", pipeline, "trl"],
        "size_categories": [size],
        "pretty_name": f"selfalign {pipeline}",
        "configs": configs,
        "dataset_info": infos,
    }


# ------------------------------------------------------------------------------------------------
# the body


def _portable(value: Any) -> Any:
    """Local absolute paths become file names: the card is meant to be published."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return Path(value).name
    return value


def _portable_override(override: str) -> str:
    key, sep, value = override.partition("=")
    return f"{key}{sep}{_portable(value)}" if sep else override


def _models(cfg: dict[str, Any]) -> list[str]:
    base = cfg.get("model") or {}
    named = {"default": base, **{k: {**base, **(v or {})} for k, v in (cfg.get("models") or {}).items()}}
    return [f"| `{k}` | `{m.get('provider', '?')}` | `{m.get('name', '?')}` |" for k, m in named.items()]


def _stages(manifest: dict[str, Any]) -> list[str]:
    rows = ["| stage | kind | rows in | rows out | dropped (by reason) | noted |", "| --- " * 6 + "|"]
    for s in manifest.get("stages", []):
        drops = ", ".join(f"{k}: {n}" for k, n in (s.get("drops") or {}).items()) or "-"
        counts = ", ".join(f"{k}: {n}" for k, n in (s.get("counts") or {}).items()) or "-"
        rows.append(
            f"| {s['name']} | `{s['kind']}` | {s.get('rows_in', '-')} | {s.get('rows_out', '-')} "
            f"| {drops} | {counts} |"
        )
    return rows


def _files(run_dir: Path, views: list[ViewFiles]) -> list[str]:
    rows = ["| config | split | file | rows | TRL type |", "| --- " * 5 + "|"]
    for v in views:
        for split, stem in v.splits.items():
            path = data_file(run_dir, v, stem)
            rows.append(
                f"| `{v.name}` | {split or 'train'} | `{path.name}` | {file_rows(path)} "
                f"| {trl_type(file_schema(path))} |"
            )
    return rows


_BODY = """# selfalign `{name}` data

{description}

Made with `selfalign run {overrides}` (started {started}, status **{status}**, {rows} final rows,
selfalign {version}).

## Files

{files}

Load a config with `datasets` (from this folder, or from the Hub once pushed) and hand it to TRL
as it is (selfalign's docs/train.md):

```python
from datasets import load_dataset

ds = load_dataset("REPO_ID_OR_THIS_FOLDER", "{first}", split="train")
```

## Models

| name | provider | model |
| --- | --- | --- |
{models}

## Key parameters

```yaml
{params}
```

## Stages

{stages}

Model calls: {requests} requests ({cache_hits} from the response cache), {prompt_tokens} prompt
and {completion_tokens} completion tokens, cost ${cost_usd}.

## License

Synthetic data: its terms follow those of the input data and of the models that wrote it. Set
the `license` field above (or `selfalign push --license ID`) before publishing.
"""
_CITATION = """
## Citation

The method this pipeline implements:

```bibtex
{}
```
"""


def body(run_dir: Path, views: list[ViewFiles], cfg: dict[str, Any], manifest: dict[str, Any]) -> str:
    pipe = cfg.get("pipeline") or {}
    name = pipe.get("name", manifest.get("pipeline", "?"))
    params = {k: v for k, v in cfg.items() if k not in _RUN_KEYS}
    totals = {"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    totals.update({k: v for k, v in (manifest.get("llm_totals") or {}).items() if k in totals})
    text = _BODY.format(
        name=name,
        description=pipe.get("description", ""),
        overrides=" ".join(_portable_override(o) for o in manifest.get("overrides", [])),
        started=manifest.get("started", "?"),
        status=manifest.get("status", "?"),
        rows=manifest.get("rows", "?"),
        version=(manifest.get("versions") or {}).get("selfalign", "?"),
        files="\n".join(_files(run_dir, views)),
        first=views[0].name if views else "CONFIG",
        models="\n".join(_models(cfg)),
        params=yaml.safe_dump(_portable(params), sort_keys=False).rstrip(),
        stages="\n".join(_stages(manifest)),
        **totals,
    )
    bibtex = citation_bibtex(cfg)
    return text + (_CITATION.format(bibtex) if bibtex else "")


def citation_bibtex(cfg: dict[str, Any]) -> str | None:
    """The BibTeX of the run's `pipeline.citation` (pipelines/<name>.yaml), None without one."""
    citation = (cfg.get("pipeline") or {}).get("citation") or {}
    bibtex = str(citation.get("bibtex") or "").strip() if isinstance(citation, dict) else ""
    return bibtex or None


def render(run_dir: Path, views: list[ViewFiles], license: str = DEFAULT_LICENSE) -> str:
    """The card for the run dir and these views (their files must exist)."""
    # redacted again: the card is uploaded, and a run dir written before redaction may hold a key
    cfg = redact(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {})
    manifest = redact(json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")))
    pipeline = (cfg.get("pipeline") or {}).get("name", manifest.get("pipeline", "run"))
    head = yaml.safe_dump(header(run_dir, views, str(pipeline), license), sort_keys=False, allow_unicode=True)
    return f"---\n{head}---\n\n{body(run_dir, views, cfg, manifest)}"


def views_of(stages: list[Any]) -> list[ViewFiles]:
    """Every view the run's export stages declare."""
    return [v for s in stages if callable(getattr(s, "outputs", None)) for v in s.outputs()]


def write(run_dir: Path, stages: list[Any]) -> Path:
    """Write README.md for the views whose files exist; returns its path."""
    path = run_dir / CARD
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(render(run_dir, present(run_dir, views_of(stages))), encoding="utf-8")
    os.replace(tmp, path)
    return path


def views_in(card: str) -> list[ViewFiles]:
    """The views a card's `configs` point at (what `selfalign push` uploads)."""
    if not card.startswith("---\n"):
        return []
    meta = yaml.safe_load(card.split("---\n", 2)[1]) or {}
    out = []
    for c in meta.get("configs", []):
        splits = {f["split"]: Path(f["path"]).stem for f in c.get("data_files", [])}
        fmt = Path(c["data_files"][0]["path"]).suffix.lstrip(".") if c.get("data_files") else "jsonl"
        out.append(ViewFiles(c["config_name"], "", "", splits, [fmt]))
    return out
