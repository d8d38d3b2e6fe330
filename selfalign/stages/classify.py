"""`classify_text`: put each row into one label of a closed set read from a data file, with
tolerant matching (the `label` parser) and a counted fallback label; no row is ever dropped."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from selfalign.config import doc, parse_params
from selfalign.engine import Job, Outcome, Policy
from selfalign.errors import ConfigError
from selfalign.parsers import parse_label
from selfalign.stages.base import register_stage
from selfalign.stages.llm import PromptParams, RowLLMStage

if TYPE_CHECKING:
    from selfalign.context import RunContext


@dataclass
class Label:
    """One entry of a label file."""

    name: str = doc("the label the model must answer with")
    description: str = doc("one-line gloss shown to the model in the prompt", "")
    group: str | None = doc("informational grouping", None)


@dataclass
class LabelFile:
    """A label file: `{fallback: NAME, tasks: [{name, description, group}, ...]}`."""

    tasks: list[Label] = doc("the closed label set, in prompt order", factory=list)
    fallback: str | None = doc("label for answers naming no known label (null = the last)", None)


@dataclass(frozen=True)
class LabelSet:
    labels: list[Label]  # in file order
    fallback: str
    path: str
    sha256: str  # of the file's bytes: part of the stage fingerprint

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.labels]


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
    raise ConfigError(
        f"{where}: data file '{name}' not found as a path or in the prompt folders "
        f"({', '.join(map(str, dirs)) or 'none'}). Give a path or add a folder with "
        "`prompts.search_path=[DIR]`."
    )


def _read_label_file(path: Path, where: str) -> tuple[LabelFile, bytes]:
    try:
        blob = path.read_bytes()
        data: Any = yaml.safe_load(blob)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot read label file {path}: {exc}") from None
    if isinstance(data, list):
        data = {"tasks": data}  # a plain list of names or entries
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise ConfigError(
            f"{where}: {path} needs a non-empty `tasks:` list of {{name, description}} entries."
        )
    tasks = [{"name": t} if isinstance(t, str) else t for t in data["tasks"]]
    try:
        # typed entries: a misspelt key gets a did-you-mean naming tasks[i]
        return parse_params(LabelFile, {**data, "tasks": tasks}, ""), blob
    except ConfigError as exc:
        raise ConfigError(f"{where}: {path}: {str(exc).lstrip('.')}") from None


def load_labels(path: Path, fallback: str | None, where: str) -> LabelSet:
    """Read `{fallback: NAME, tasks: [{name, description}, ...]}` (or a plain list of names)."""
    spec, blob = _read_label_file(path, where)
    for i, t in enumerate(spec.tasks):
        t.name = t.name.strip()
        if not t.name:
            raise ConfigError(f"{where}: {path} tasks[{i}] has no `name`.")
    names = [t.name for t in spec.tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}: {path} lists these labels twice: {', '.join(dupes)}.")
    fb = fallback or spec.fallback or names[-1]
    if fb not in names:
        raise ConfigError(f"{where}: fallback label '{fb}' is not in {path} (labels: {', '.join(names)}).")
    return LabelSet(spec.tasks, fb, str(path), hashlib.sha256(blob).hexdigest())


@dataclass
class ClassifyParams(PromptParams):
    labels: str = doc(
        "label file (required): a path, or a name under the prompt folders; the "
        "prompt gets its entries as `labels` ([{name, description, group}])",
        "",
    )
    fallback: str | None = doc("label for answers naming no known label (null = the file's `fallback`)", None)
    search: bool = doc("if the answer is not a bare label, take the first label it mentions", True)
    skip_labelled: bool = doc(
        "rows whose output column already holds a known label are kept as they are, without a model call",
        True,
    )
    output: str = doc("column for the label (plus <output>_match)", "category")
    keep_raw: bool = doc("also keep the raw model text in <output>_raw", False)
    temperature: float | None = doc("sampling temperature (greedy: one stable answer)", 0.0)
    top_p: float | None = doc("nucleus sampling", 1.0)
    max_tokens: int = doc("completion token limit", 50)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.labels:
            raise ValueError("`labels` is required (a label file: a path or a name under the prompt folders)")


@register_stage
class ClassifyText(RowLLMStage):
    """Ask the model for one label per row from a closed set read from a data file."""

    kind = "classify_text"
    sees_failures = True  # a failed call gets the fallback label
    Params = ClassifyParams
    injected = frozenset({"labels"})  # the label list, from the data file

    def __init__(self, name: str, params: ClassifyParams, ctx: RunContext) -> None:
        super().__init__(name, params, ctx)
        where = f"{self.where}.labels"
        self.label_set = load_labels(find_data_file(ctx, params.labels, where), params.fallback, where)
        self.parse = partial(
            parse_label, labels=self.label_set.names, fallback=self.label_set.fallback, search=params.search
        )

    def render(self, row: dict[str, Any], role: str = "prompt", **extra: Any) -> list[dict[str, str]]:
        return super().render(row, role, labels=self.label_set.labels, **extra)

    def writes(self) -> set[str]:
        return set(self.new_columns())

    def fingerprint_extra(self) -> str:
        return self.label_set.sha256  # an edited label file re-runs the stage

    def new_columns(self) -> list[str]:
        out = self.params.output
        return [out, f"{out}_match"] + ([f"{out}_raw"] if self.params.keep_raw else [])

    def policy(self) -> Policy:
        return Policy(parse=self.parse)

    def jobs(self, row: dict[str, Any]) -> list[Job]:
        p: ClassifyParams = self.params
        given = p.skip_labelled and row.get(p.output) in self.label_set.names
        return [] if given else [self.job(row)]

    def columns(self, row: dict[str, Any], o: Outcome | None) -> dict[str, Any]:
        out = self.params.output
        if o is None:  # labelled already: kept as it is
            label, how = row.get(out), "given"
        elif o.ok:
            label, how = o.value, o.fields.get("match", "exact")
        else:  # a failed call still yields a row: the fallback label, marked 'error'
            label, how = self.label_set.fallback, "error"
        raw = {f"{out}_raw": o.raw if o else None} if self.params.keep_raw else {}
        return {out: label, f"{out}_match": how, **raw}

    def report(self, out: pd.DataFrame) -> None:
        counts = Counter(out[f"{self.params.output}_match"])
        odd = counts.get("fallback", 0) + counts.get("error", 0)
        if odd:
            self.ctx.console.log(
                f"{self.name}: {odd} row(s) got the fallback label '{self.label_set.fallback}' "
                f"(unknown answer: {counts.get('fallback', 0)}, failed call: "
                f"{counts.get('error', 0)}); see column {self.params.output}_match."
            )
