"""Hugging Face datasets as `load` input: a `save_to_disk` folder, a folder of a Hub dataset's
files, or a Hub id read from the local Hugging Face cache (never from the network).

`datasets` and `huggingface_hub` are imported only here and only when such an input is named, so
they stay an optional extra (`pip install 'selfalign[hf]'`). See docs/inputs.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.errors import InputError

HUB_PREFIXES = ("hf://datasets/", "hf:")
_DATA_EXT = {".parquet", ".jsonl", ".json", ".csv", ".arrow", ".ndjson", ".tsv"}
_TEXT_TYPES = {"string", "large_string", "null"}
_INSTALL = "pip install 'selfalign[hf]'"


@dataclass
class Source:
    """A Hugging Face dataset named by the load stage: `path`, and which split of which subset."""

    path: str
    split: str | None = None
    subset: str | None = None
    revision: str | None = None

    @property
    def repo_id(self) -> str:
        for prefix in HUB_PREFIXES:
            if self.path.startswith(prefix):
                return self.path[len(prefix) :].strip("/")
        return self.path

    def label(self) -> str:
        at = f"@{self.revision}" if self.revision else ""
        return f"{self.path}{at}" + (f" [{self.subset}]" if self.subset else "")


def kind(path: str, fmt: str | None) -> str | None:
    """'disk' (save_to_disk), 'files' (a folder of data files), 'hub' (a Hub id), or None when
    `path` is not a Hugging Face dataset (io reads it as a file, or a folder of text files)."""
    if fmt not in (None, "hf"):
        return None
    if path.startswith(HUB_PREFIXES):
        return "hub"
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
            return "disk"
        if any(f.suffix.lower() in _DATA_EXT for f in _files(p)):
            return "files"
    if fmt == "hf":
        if not p.exists() and path.count("/") == 1:
            return "hub"  # format: hf with a bare ORG/NAME
        raise InputError(
            f"{path}: not a Hugging Face dataset (no save_to_disk folder, no folder of "
            f".parquet/.jsonl/.csv files, no Hub id). Point the load stage's `path` at one, e.g. "
            "hf://datasets/ORG/NAME, or set `format` to the file's format."
        )
    return None


def _files(p: Path) -> list[Path]:
    """Data files of a folder, leaving out hidden and cache folders (.cache, .git …)."""
    return sorted(
        f for f in p.rglob("*") if f.is_file() and not any(x.startswith(".") for x in f.relative_to(p).parts)
    )


def _hf_home() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").expanduser()


def hub_cache() -> Path:
    """Where `hf download` and `datasets.load_dataset` keep Hub files (read at call time, so a
    changed environment is seen even after huggingface_hub was imported)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(env).expanduser() if env else _hf_home() / "hub"


def datasets_cache() -> Path:
    env = os.environ.get("HF_DATASETS_CACHE")
    return Path(env).expanduser() if env else _hf_home() / "datasets"


def _modules() -> tuple[Any, Any]:
    try:
        import datasets
        import huggingface_hub
    except ImportError:
        raise InputError(
            f"reading a Hugging Face dataset needs the `datasets` package, which is not "
            f"installed. Install it with: {_INSTALL}"
        ) from None
    return datasets, huggingface_hub


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """No request leaves the machine while `datasets` reads (its and huggingface_hub's offline
    switches are module globals read at call time)."""
    datasets, hub = _modules()
    saved = datasets.config.HF_HUB_OFFLINE, hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.constants.HF_HUB_OFFLINE = saved


def _download_hint(src: Source) -> str:
    rev = f" --revision {src.revision}" if src.revision else ""
    return (
        f"Download it first, on a machine with network: `hf download {src.repo_id} --repo-type "
        f"dataset{rev}` (set HF_HOME or HF_HUB_CACHE to the cache selfalign reads; now "
        f"{hub_cache()}); with HF_HUB_OFFLINE=1 copy that cache folder over."
    )


def snapshot(src: Source) -> Path:
    """The local folder of a Hub dataset at `revision` (a branch, tag or commit), from the cache."""
    _, hub = _modules()
    try:
        folder = hub.snapshot_download(
            src.repo_id,
            repo_type="dataset",
            revision=src.revision,
            cache_dir=str(hub_cache()),
            local_files_only=True,
        )
    except (hub.errors.LocalEntryNotFoundError, hub.errors.EntryNotFoundError, OSError):
        raise InputError(
            f"{src.label()}: the Hub dataset '{src.repo_id}' (revision "
            f"{src.revision or 'main'}) is not in the local Hugging Face cache; selfalign reads "
            f"Hub datasets from the cache only, never from the network. {_download_hint(src)}"
        ) from None
    return Path(folder)


def _pick(src: Source, names: list[str]) -> str:
    if src.split is not None:
        if src.split not in names:
            raise InputError(
                f"{src.label()}: no split '{src.split}'. Splits: {', '.join(names)}. Set the load "
                "stage's `split` to one of them."
            )
        return src.split
    if "train" in names or len(names) == 1:
        return "train" if "train" in names else names[0]
    raise InputError(
        f"{src.label()}: the dataset has splits {', '.join(names)}. Set the load stage's `split` "
        "to one of them."
    )


def open_split(src: Source) -> Any:
    """The chosen split as a `datasets.Dataset`; every failure is an InputError."""
    datasets, _ = _modules()
    how = kind(src.path, "hf")
    if src.revision and how != "hub":
        raise InputError(f"{src.path}: `revision` applies to a Hub id only. Remove it, or name a Hub id.")
    with _offline():
        try:
            if how == "disk":
                ds = datasets.load_from_disk(str(Path(src.path).expanduser()))
                return ds[_pick(src, list(ds))] if isinstance(ds, datasets.DatasetDict) else ds
            folder = snapshot(src) if how == "hub" else Path(src.path).expanduser()
            cache = str(datasets_cache())
            names = datasets.get_dataset_split_names(str(folder), src.subset)
            return datasets.load_dataset(str(folder), src.subset, split=_pick(src, names), cache_dir=cache)
        except InputError:
            raise
        except (ValueError, FileNotFoundError, OSError, KeyError) as exc:
            raise InputError(
                f"{src.label()}: cannot read it as a Hugging Face dataset: {_first(exc)}"
            ) from None


def _first(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def scan(src: Source, text_columns: list[str]) -> io.Scan:
    """Columns, rows and text columns whose type is not text (for the load stage's check)."""
    ds = open_split(src)
    problems = []
    for col in text_columns:
        feature = ds.features.get(col)
        dtype = getattr(feature, "dtype", None)
        if feature is not None and dtype not in _TEXT_TYPES:
            problems.append(
                f"{src.label()}: column '{col}' is used as text but its type in the dataset is "
                f"{feature}. Map a text column instead, or set the load stage's non_text=coerce (or drop)."
            )
    if not ds.num_rows:
        raise InputError(f"{src.label()}: the split has no rows. Point the load stage at a non-empty split.")
    return io.Scan(problems=problems, columns=list(ds.column_names), rows=ds.num_rows)


def iter_table(src: Source, first: int | None = None, fixed: bool = False) -> Iterator[pd.DataFrame]:
    """The split as DataFrames indexed by row number: all at once, or `first` rows, then twice as
    many each time (or `first` each time when `fixed`; as io.iter_table), so a `limit` converts
    only the rows it needs."""
    ds = open_split(src)
    start, size = 0, first
    while start < ds.num_rows:
        end = ds.num_rows if size is None else min(ds.num_rows, start + size)
        # Python values, not numpy arrays: stages test nested values with isinstance(v, list)
        rows = ds.select(range(start, end)).to_list()
        df = pd.DataFrame.from_records(rows, columns=ds.column_names, index=pd.RangeIndex(start, end))
        yield df
        if size is not None and not fixed:
            size = min(size * 2, 65_536)
        start = end


def fingerprint(src: Source) -> str:
    """Changes when the dataset's files do (for the load stage's checkpoint)."""
    how = kind(src.path, "hf")
    folder = snapshot(src) if how == "hub" else Path(src.path).expanduser()
    h = hashlib.sha256(f"{folder.resolve()}|{src.split}|{src.subset}".encode())
    for f in _files(folder):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
