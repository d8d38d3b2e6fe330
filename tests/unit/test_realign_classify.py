"""ReAlign classification: the label file, the `label` parser's matching modes, `classify_text`."""

from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError
from selfalign.paths import resource_dir
from selfalign.stages.realign import load_labels
from selfalign.stages.realign_classify import normalize_label, parse_label

TASKS_FILE = resource_dir("prompts") / "realign" / "tasks.yaml"
# METHODS §5.2: the 46 task names of the original's classifier prompt
_NAMES = """question_generation story_generation poem_generation email_generation data_generation
advice_giving recommendations how_to_generation planning instructional_rewriting language_polishing
paraphrasing text_correction code_correction code_simplification information_extraction
keywords_extraction table_extraction title_generation text_summarization note_summarization
explain_code explain_answer text_to_text_translation text_to_code_translation
code_to_code_translation code_to_text_translation open_qa closed_qa fill_in_the_blank
fact_verification math_puzzles language_learning_questions natural_language_learning_tutor
exam_problem_solving_tutor ml_ai_language_model_tutor general_classification ordering
sentiment_analysis code_language_classification language_classification topic_classification
value_judgement rejecting roleplay default"""
EXPECTED = _NAMES.split()
LABELS = ["open_qa", "closed_qa", "code_to_text_translation", "text_to_code_translation",
          "recommendations", "default"]


def requests(ctx, stage: str) -> int:
    return sum(c["requests"] for c in ctx.llm.accounting.for_stage(stage).values())


def test_task_file_has_the_46_tasks_each_described():
    ls = load_labels(TASKS_FILE, None, "t")
    assert sorted(ls.names) == sorted(EXPECTED) and len(ls.names) == 46
    assert ls.fallback == "default"
    assert all(len(t["description"].split()) >= 4 for t in ls.labels)


@pytest.mark.parametrize("answer, label, how", [
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
])
def test_label_parser_tolerant_matching(answer, label, how):
    assert parse_label(answer, labels=LABELS, fallback="default") == {"value": label, "match": how}


def test_label_parser_search_can_be_turned_off():
    out = parse_label("it is closed_qa", labels=LABELS, fallback="default", search=False)
    assert out == {"value": "default", "match": "fallback"}


def test_normalize_label():
    assert normalize_label(" `Text To-Code  Translation`. ") == "text_to_code_translation"


@pytest.mark.parametrize("content, message", [
    ({"tasks": []}, "non-empty `tasks:`"),
    ({"tasks": [{"description": "x"}]}, r"tasks\[0\] has no `name`"),
    ({"tasks": ["a", "b", "a"]}, "twice: a"),
    ({"tasks": ["a", "b"], "fallback": "zzz"}, "fallback label 'zzz' is not in"),
])
def test_label_file_errors(tmp_path: Path, content, message):
    path = tmp_path / "labels.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError, match=message):
        load_labels(path, None, "pipeline.stages.c.labels")


def test_classify_stage_skips_given_labels_and_counts_fallback(ctx, tmp_path: Path, test_model):
    labels = tmp_path / "labels.yaml"
    labels.write_text(yaml.safe_dump({"fallback": "other", "tasks": [
        {"name": "greeting", "description": "says hello"}, {"name": "other"}]}))
    stage = make_stage("classify_text", ctx, "c", labels=str(labels))
    df = pd.DataFrame({"row_id": ["0", "1", "2"], "instruction": ["hi", "yo", "hey"],
                       "category": ["greeting", None, "not_a_label"]})
    test_model.queue("I am not sure.", "No idea, sorry.")  # no label in either answer
    out = run_stage(stage, df)
    assert list(out.category) == ["greeting", "other", "other"]
    assert list(out.category_match) == ["given", "fallback", "fallback"]
    assert requests(ctx, "c") == 2  # row 0 kept its label without a call
    assert [r.row_id for r in test_model.requests] == ["1", "2"] and test_model.pending() == 0
    assert "- greeting: says hello" in test_model.requests[0].user


def test_classify_prompt_lists_every_label_with_description(ctx):
    stage = make_stage("classify_text", ctx, "c")
    msgs = stage.render({"row_id": "0", "instruction": "Why is the sky blue?"})
    text = msgs[-1]["content"]
    assert all(f"- {name}: " in text for name in EXPECTED)
    assert text.rstrip().endswith("Task type:") and "Why is the sky blue?" in text
    assert stage.reads() == {"instruction"}
    assert stage.params.temperature == 0.0 and stage.params.max_tokens == 50


def test_classify_keep_raw(ctx, test_model):
    stage = make_stage("classify_text", ctx, "c", keep_raw=True)
    df = pd.DataFrame({"row_id": ["0"], "instruction": ["What causes the seasons?"]})
    test_model.queue("The request is an open_qa question.")
    out = run_stage(stage, df)
    assert "category_raw" in stage.writes()
    assert out.category_raw[0] == "The request is an open_qa question."
    assert (out.category[0], out.category_match[0]) == ("open_qa", "search")
    assert "What causes the seasons?" in test_model.requests[0].user


def test_classify_rejects_n_above_one(ctx):
    with pytest.raises(ConfigError, match="one answer per row"):
        make_stage("classify_text", ctx, "c", n=2)


def test_classify_unknown_label_file(ctx):
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.c\.labels: data file 'nope\.yaml'"):
        make_stage("classify_text", ctx, "c", labels="nope.yaml")
