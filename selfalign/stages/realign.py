"""ReAlign shared helpers: find data files beside the prompts and load the closed task label set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from selfalign.errors import ConfigError

if TYPE_CHECKING:
    from selfalign.context import RunContext

# The tasks whose queries get retrieved evidence in the original (its RAG_TASKS).
RAG_TASKS = ["how_to_generation", "open_qa", "fact_verification", "recommendations",
             "explain_answer"]


@dataclass(frozen=True)
class LabelSet:
    labels: list[dict[str, str]]  # [{name, description, group?}] in file order
    fallback: str
    path: str

    @property
    def names(self) -> list[str]:
        return [t["name"] for t in self.labels]


def find_data_file(ctx: RunContext, name: str, where: str) -> Path:
    """`name` as a path, else relative to the prompt search path (so users can override it by
    putting their own copy in a `prompts.search_path` folder)."""
    direct = Path(name).expanduser()
    if direct.is_absolute() or direct.exists():
        if direct.is_file():
            return direct
        raise ConfigError(f"{where}: file not found: {direct}.")
    dirs = list(getattr(ctx.prompts, "search_path", []))
    for d in dirs:
        if (Path(d) / name).is_file():
            return Path(d) / name
    raise ConfigError(f"{where}: data file '{name}' not found as a path or in the prompt folders "
                      f"({', '.join(map(str, dirs)) or 'none'}). Give a path or add a folder with "
                      "`prompts.search_path=[DIR]`.")


def load_labels(path: Path, fallback: str | None, where: str) -> LabelSet:
    """Read `{fallback: NAME, tasks: [{name, description}, ...]}` (or a plain list of names)."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot read label file {path}: {exc}") from None
    items = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: {path} needs a non-empty `tasks:` list of "
                          "{name, description} entries.")
    labels = []
    for i, item in enumerate(items):
        entry = {"name": item} if isinstance(item, str) else dict(item or {})
        if not str(entry.get("name") or "").strip():
            raise ConfigError(f"{where}: {path} tasks[{i}] has no `name`.")
        entry["name"] = str(entry["name"]).strip()
        entry.setdefault("description", "")
        labels.append(entry)
    names = [t["name"] for t in labels]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: {path} lists these labels twice: {', '.join(dupes)}.")
    fb = fallback or (data.get("fallback") if isinstance(data, dict) else None) or names[-1]
    if fb not in names:
        raise ConfigError(f"{where}: fallback label '{fb}' is not in {path} "
                          f"(labels: {', '.join(names)}).")
    return LabelSet(labels, fb, str(path))
