"""`classify_text` and the `label` parser: put each row into one label of a closed set (ReAlign's
46 task types by default), with tolerant matching and a counted fallback label."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd

from selfalign import io
from selfalign.config import doc
from selfalign.stages.base import ROW_ID, register_stage
from selfalign.stages.generate import GenerateParams, GenerateText
from selfalign.stages.llm_util import Job, run_jobs
from selfalign.stages.realign import find_data_file, load_labels


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
