"""`classify_text` and the `label` parser: put each row into one label of a closed set (ReAlign's
46 task types by default), with tolerant matching and a counted fallback label."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.parsers import parser
from selfalign.stages.base import ROW_ID, register_stage
from selfalign.stages.generate import GenerateParams, GenerateText
from selfalign.stages.llm_util import Job, run_jobs
from selfalign.stages.realign import find_data_file, load_labels

# a label line often comes dressed up: "Task type: `open_qa`." / "**open_qa**"
_PREFIX = re.compile(r"^\s*(?:task\s*(?:type|name)?|label|category|answer)\s*[:=-]\s*", re.I)
_EDGES = "`*\"'.,:;!?()[]{}<> \t"


def normalize_label(text: str) -> str:
    """Case, surrounding punctuation/backticks and inner spaces or hyphens don't matter."""
    return re.sub(r"[\s\-]+", "_", text.strip().strip(_EDGES).strip()).lower()


def _search(text: str, labels: list[str]) -> str | None:
    """The label mentioned earliest in the text as a whole word ('open qa' matches open_qa);
    at the same position the longer label wins."""
    best: tuple[int, int, str] | None = None
    low = text.lower()
    for name in labels:
        words = [re.escape(w) for w in name.lower().split("_") if w]
        pattern = r"(?<![a-z0-9_])" + r"[\s_\-]+".join(words) + r"(?![a-z0-9_])"
        m = re.search(pattern, low)
        if m and (best is None or (m.start(), -len(name)) < (best[0], best[1])):
            best = (m.start(), -len(name), name)
    return best[2] if best else None


@parser("label", fields=lambda o: ["match"])
def parse_label(text: str, labels: list[str] = (), fallback: str = "default",  # type: ignore[assignment]
                search: bool = True) -> dict[str, Any]:
    """One label of a closed set. `match` says how it was found: exact | normalized | search |
    fallback (the answer named no known label, so `fallback` is used). Never raises."""
    names = list(labels)
    by_norm = {normalize_label(n): n for n in names}
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    if line.strip() in names:
        return {"value": line.strip(), "match": "exact"}
    key = normalize_label(_PREFIX.sub("", line.strip().strip("*`")))
    # a plural slip ('recommendation' for recommendations) is the same label
    hit = by_norm.get(key) or by_norm.get(key + "s") or by_norm.get(key.removesuffix("s"))
    if hit:
        return {"value": hit, "match": "normalized"}
    found = _search(text, names) if search else None
    if found:
        return {"value": found, "match": "search"}
    return {"value": fallback, "match": "fallback"}


@dataclass
class ClassifyParams(GenerateParams):
    prompt: str = doc("prompt template; gets `labels` ([{name, description}]) and row columns",
                      "realign/classify")
    labels: str = doc("label file: a path, or a name under the prompt folders",
                      "realign/tasks.yaml")
    fallback: str | None = doc("label for answers naming no known label (null = the file's "
                               "`fallback`)", None)
    search: bool = doc("if the answer is not a bare label, take the first label it mentions", True)
    skip_labelled: bool = doc("rows whose output column already holds a known label are kept "
                              "as they are, without a model call", True)
    output: str = doc("column for the label (plus <output>_match)", "category")
    temperature: float | None = doc("sampling temperature (greedy, as the original)", 0.0)
    top_p: float | None = doc("nucleus sampling", 1.0)
    max_tokens: int = doc("completion token limit", 50)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n != 1 or self.explode_list:
            raise ValueError("classify_text takes one answer per row: set n: 1 and "
                             "explode_list: false")


@register_stage
class ClassifyText(GenerateText):
    """Ask the model for one label per row from a closed set read from a data file."""

    kind = "classify_text"
    Params = ClassifyParams

    def __init__(self, name: str, params: ClassifyParams, ctx: Any) -> None:
        where = f"pipeline.stages.{name}"
        path = find_data_file(ctx, params.labels, f"{where}.labels")
        self.label_set = load_labels(path, params.fallback, f"{where}.labels")
        # the label list reaches the template as a constant, so reads() does not ask for it
        params = dataclasses.replace(
            params, vars={**params.vars, "labels": self.label_set.labels},
            parser={"kind": "label", "labels": self.label_set.names,
                    "fallback": self.label_set.fallback, "search": params.search})
        super().__init__(name, params, ctx)

    async def run(self, df: pd.DataFrame) -> pd.DataFrame:
        p: ClassifyParams = self.params
        out, match = p.output, f"{p.output}_match"
        rows = io.records(df)
        given = [p.skip_labelled and r.get(out) in self.label_set.names for r in rows]
        labels = [r.get(out) if g else None for r, g in zip(rows, given, strict=True)]
        how = ["given" if g else None for g in given]
        raws: list[str | None] = [None] * len(rows)
        jobs = [Job(str(r[ROW_ID]), self.render(r), 0, i)
                for i, r in enumerate(rows) if not given[i]]
        if jobs:
            with self.ctx.progress(self.name, 0) as prog:
                outcomes = await run_jobs(self.ctx, self.name, p, jobs, self.parse, prog)
            for o in outcomes:
                # a failed call still yields a row: the fallback label, marked 'error'
                labels[o.job.tag] = o.fields["value"] if o.ok else self.label_set.fallback
                how[o.job.tag] = o.fields.get("match", "exact") if o.ok else "error"
                raws[o.job.tag] = o.raw
        result = df.copy()
        result[out], result[match] = labels, how
        if p.keep_raw:
            result[f"{out}_raw"] = raws
        self._report(Counter(how))
        return result

    def _report(self, counts: Counter[str]) -> None:
        odd = counts.get("fallback", 0) + counts.get("error", 0)
        if odd:
            self.ctx.console.log(
                f"{self.name}: {odd} row(s) got the fallback label '{self.label_set.fallback}' "
                f"(unknown answer: {counts.get('fallback', 0)}, failed call: "
                f"{counts.get('error', 0)}); see column {self.params.output}_match.")
