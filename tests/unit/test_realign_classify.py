"""`classify_text` on ReAlign's 46 tasks: the label file, the `label` parser's matching modes."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import REALIGN_TASKS, make_stage, run_stage

from selfalign.errors import ConfigError
from selfalign.parsers import normalize_label, parse_label
from selfalign.paths import resource_dir
from selfalign.stages.classify import load_labels

TASKS_FILE = resource_dir("prompts") / "realign" / "tasks.yaml"
EXPECTED = REALIGN_TASKS  # METHODS §5.2: the 46 task names of the original's classifier prompt
LABELS = [
    "open_qa",
    "closed_qa",
    "code_to_text_translation",
    "text_to_code_translation",
    "recommendations",
    "default",
]


def requests(ctx, stage: str) -> int:
    return sum(c["requests"] for c in ctx.llm.accounting.for_stage(stage).values())


def classify(ctx, name: str = "c", **params):
    """A classify_text stage on the shipped ReAlign prompt and task file, as the pipeline sets it."""
    return make_stage(
        "classify_text", ctx, name, **{"prompt": "realign/classify", "labels": "realign/tasks.yaml", **params}
    )


def test_task_file_has_the_46_tasks_each_described():
    ls = load_labels(TASKS_FILE, None, "t")
    assert sorted(ls.names) == sorted(EXPECTED) and len(ls.names) == 46
    assert ls.fallback == "default"
    assert all(len(t.description.split()) >= 4 for t in ls.labels)


@pytest.mark.parametrize(
    "answer, label, how",
    [
        ("open_qa", "open_qa", "exact"),
        ("open_qa\nbecause it is a question", "open_qa", "exact"),
        ("  Open_QA  ", "open_qa", "normalized"),
        ("`closed_qa`", "closed_qa", "normalized"),
        ("**closed_qa**.", "closed_qa", "normalized"),
        ("Task type: open qa", "open_qa", "normalized"),
        ("task name: Code-To-Text-Translation", "code_to_text_translation", "normalized"),
        ("recommendation", "recommendations", "normalized"),
        ("open_qas", "open_qa", "normalized"),
        ("code_generation", "default", "fallback"),
        ("I think this is closed_qa, not open_qa.", "closed_qa", "search"),
        ("The answer: open QA.", "open_qa", "search"),
        ("reopen_qa_thing", "default", "fallback"),  # not a whole word
        ("poetry", "default", "fallback"),
        ("", "default", "fallback"),
    ],
)
def test_label_parser_tolerant_matching(answer, label, how):
    assert parse_label(answer, labels=LABELS, fallback="default") == {"value": label, "match": how}


def test_label_parser_search_can_be_turned_off():
    out = parse_label("it is closed_qa", labels=LABELS, fallback="default", search=False)
    assert out == {"value": "default", "match": "fallback"}


def test_normalize_label():
    assert normalize_label(" `Text To-Code  Translation`. ") == "text_to_code_translation"


@pytest.mark.parametrize(
    "content, message",
    [
        ({"tasks": []}, "non-empty `tasks:`"),
        ({"tasks": [{"description": "x"}]}, r"tasks\[0\]\.name: required key is missing"),
        ({"tasks": [{"name": " "}]}, r"tasks\[0\] has no `name`"),
        (
            {"tasks": [{"name": "a", "descripton": "x"}]},
            r"tasks\[0\]\.descripton: unknown key\. Did you mean 'description'\?",
        ),
        ({"tasks": [{"name": "a", "description": 3}]}, r"tasks\[0\]\.description: expected str"),
        ({"fallbak": "a", "tasks": ["a"]}, r"fallbak: unknown key\. Did you mean 'fallback'\?"),
        ("just a string", "non-empty `tasks:`"),
        ({"tasks": ["a", "b", "a"]}, "twice: a"),
        ({"tasks": ["a", "b"], "fallback": "zzz"}, "fallback label 'zzz' is not in"),
    ],
)
def test_label_file_errors(tmp_path: Path, content, message):
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match=message):
        load_labels(path, None, "pipeline.stages.c.labels")


def test_classify_stage_skips_given_labels_and_counts_fallback(ctx, tmp_path: Path, test_model):
    labels = tmp_path / "labels.yaml"
    labels.write_text(
        yaml.safe_dump(
            {
                "fallback": "other",
                "tasks": [{"name": "greeting", "description": "says hello"}, {"name": "other"}],
            }
        )
    )
    stage = classify(ctx, labels=str(labels))
    df = pd.DataFrame(
        {
            "row_id": ["0", "1", "2"],
            "instruction": ["hi", "yo", "hey"],
            "category": ["greeting", None, "not_a_label"],
        }
    )
    test_model.queue("I am not sure.", "No idea, sorry.")  # no label in either answer
    out = run_stage(stage, df)
    assert list(out.category) == ["greeting", "other", "other"]
    assert list(out.category_match) == ["given", "fallback", "fallback"]
    assert requests(ctx, "c") == 2  # row 0 kept its label without a call
    assert [r.row_id for r in test_model.requests] == ["1", "2"] and test_model.pending() == 0
    assert "- greeting: says hello" in test_model.requests[0].user


def test_classify_prompt_lists_every_label_with_description(ctx):
    stage = classify(ctx)
    msgs = stage.render({"row_id": "0", "instruction": "Why is the sky blue?"})
    text = msgs[-1]["content"]
    assert all(f"- {name}: " in text for name in EXPECTED)
    assert text.rstrip().endswith("Task type:") and "Why is the sky blue?" in text
    assert stage.reads() == {"instruction"}
    assert stage.params.temperature == 0.0 and stage.params.max_tokens == 50


def test_classify_keep_raw(ctx, test_model):
    stage = classify(ctx, keep_raw=True)
    df = pd.DataFrame({"row_id": ["0"], "instruction": ["What causes the seasons?"]})
    test_model.queue("The request is an open_qa question.")
    out = run_stage(stage, df)
    assert "category_raw" in stage.writes()
    assert out.category_raw[0] == "The request is an open_qa question."
    assert (out.category[0], out.category_match[0]) == ("open_qa", "search")
    assert "What causes the seasons?" in test_model.requests[0].user


def test_classify_takes_one_answer_per_row(ctx):
    # not a generate_text: there is no n / parser / explode_list to set
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.c\.n: unknown key"):
        classify(ctx, n=2)
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.c\.parser: unknown key"):
        classify(ctx, parser="text")


def test_classify_needs_a_prompt_and_a_label_file(ctx):
    with pytest.raises(ConfigError, match=r"c: `labels` is required"):
        make_stage("classify_text", ctx, "c", prompt="realign/classify")
    with pytest.raises(ConfigError, match=r"c: `prompt` is required"):
        make_stage("classify_text", ctx, "c", labels="realign/tasks.yaml")


def test_classify_unknown_label_file(ctx):
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.c\.labels: data file 'nope\.yaml'"):
        classify(ctx, labels="nope.yaml")


def test_an_edited_label_file_changes_the_fingerprint(ctx, tmp_path: Path):
    labels = tmp_path / "labels.yaml"
    labels.write_text(yaml.safe_dump({"tasks": ["greeting", "other"]}))
    before = classify(ctx, labels=str(labels)).fingerprint_extra()
    assert classify(ctx, labels=str(labels)).fingerprint_extra() == before
    labels.write_text(yaml.safe_dump({"tasks": ["greeting", "farewell", "other"]}))
    assert classify(ctx, labels=str(labels)).fingerprint_extra() != before


def test_empty_replies_are_retried_then_fall_back_as_failures(ctx, test_model):
    """An empty or whitespace-only reply is a failed attempt: a new sample is asked for; after the
    last one the row keeps the fallback label, but the job counts as failed (exit code) and the
    rejected table holds what came back. Nothing empty is cached."""
    stage = classify(ctx)
    test_model.queue("", "open_qa")  # one row at a time: the queue is answered in call order
    ok = run_stage(stage, pd.DataFrame({"row_id": ["0"], "instruction": ["What causes the seasons?"]}))
    test_model.queue(" \n\t", "", "   ")  # retries: 2, so three samples, none usable
    bad = run_stage(stage, pd.DataFrame({"row_id": ["1"], "instruction": ["Hi"]}))
    assert (ok.category[0], ok.category_match[0]) == ("open_qa", "exact")
    assert (bad.category[0], bad.category_match[0]) == ("default", "error")
    st = ctx.stats.stage("c")
    assert (st.jobs, st.failed, st.llm_failed) == (2, 1, 1)
    assert st.first_error == "llm_error: empty reply (no text)"
    (rec,) = [json.loads(x) for x in (ctx.run_dir / "rejected.jsonl").read_text().splitlines()]
    assert rec["row_id"] == "1" and rec["raw"] == "   " and rec["samples_tried"] == 3
    assert len(ctx.llm.cache) == 1 and test_model.pending() == 0  # only row 0's usable answer
