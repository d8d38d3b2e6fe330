"""Aligners critique + correction: the marker parser, every domain's demonstrations, the stage."""

import pandas as pd
import pytest
import yaml
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError, ParseError
from selfalign.parsers import parse_critique_correction
from selfalign.paths import resource_dir
from selfalign.prompts import PromptLibrary

DOMAINS = {
    path.stem: yaml.safe_load(path.read_text())
    for path in sorted((resource_dir("conf") / "domain").glob("*.yaml"))
}


def parse(text, domain="ethical", **kw):
    d = DOMAINS[domain]
    return parse_critique_correction(text, d["critique_marker"], d["correction_marker"], **kw)


def demonstrations(domain):
    """(input, completion) of each demonstration in the domain's rendered prompt."""
    d = DOMAINS[domain]
    text = (
        PromptLibrary([resource_dir("prompts")])
        .get(d["prompt"])
        .render(
            question="What now?",
            critique_marker=d["critique_marker"],
            correction_marker=d["correction_marker"],
        )
    )
    examples = text.split("## Examples")[1].split("## Your turn")[0]
    out = []
    for block in examples.split("Input:\n")[1:]:
        question, completion = block.split("\nResponse:\n", 1)
        out.append((question.strip(), completion.strip()))
    return out


@pytest.mark.parametrize("domain", ["ethical", "factuality", "helpful"])
def test_every_domain_parses_its_own_demonstrations(domain):
    """The original's helpful demonstrations used other markers than its parser, so every
    helpful row was lost; here markers feed both the prompt and the parser."""
    demos = demonstrations(domain)
    assert len(demos) >= 4
    parsed = [parse(completion, domain) for _, completion in demos]
    for p in parsed:
        assert p["value"] and p["critique"] and p["aligned"]
        assert "principle" in p["critique"]
        assert DOMAINS[domain]["critique_marker"] not in p["value"] + p["aligned"]
    unchanged = [p for p in parsed if p["value"] == p["aligned"]]
    assert len(unchanged) == 1  # the one "nothing wrong" demonstration
    assert "breaks no principle" in unchanged[0]["critique"]


def test_demonstrations_parsed_with_another_domains_markers_fail_like_the_original_bug():
    _, completion = demonstrations("helpful")[0]
    with pytest.raises(ParseError) as exc:
        parse(completion, "ethical")
    assert exc.value.reason == "missing_critique_marker"


def test_domains_have_distinct_markers():
    markers = [(d["critique_marker"], d["correction_marker"]) for d in DOMAINS.values()]
    assert len(set(markers)) == len(markers) == 3


def test_parse_with_echoed_label_markdown_and_a_runaway_next_example():
    text = (
        "**Response:** You people never listen.\n\n**Ethics review:** Rude, principle 2.\n"
        "### Respectful response:\nPlease consider the options calmly.\n\nInput:\nNext?\n"
    )
    assert parse(text) == {
        "value": "You people never listen.",
        "critique": "Rude, principle 2.",
        "aligned": "Please consider the options calmly.",
    }


def test_aligned_ends_at_a_repeated_marker_and_markers_are_case_insensitive():
    text = "Bad.\nethics REVIEW:\nBreaks principle 1.\nRespectful response: Good.\nEthics review: again\n"
    assert parse(text)["aligned"] == "Good."


def test_marker_must_start_a_line():
    text = "I wrote Ethics review: inline.\nRespectful response:\nFine."
    with pytest.raises(ParseError) as exc:
        parse(text)
    assert exc.value.reason == "missing_critique_marker"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Just an answer.", "missing_critique_marker"),
        ("Bad.\nEthics review:\nIt is rude.", "missing_correction_marker"),
        ("Respectful response:\nGood.\nEthics review:\nRude.", "missing_correction_marker"),
        ("Response:\nEthics review:\nRude.\nRespectful response:\nGood.", "empty:misaligned"),
        ("Bad.\nEthics review:\nRespectful response:\nGood.", "empty:critique"),
        ("Bad.\nEthics review:\nRude.\nRespectful response:\n\nInput:\nX", "empty:aligned"),
    ],
)
def test_parse_failures_have_reasons(text, reason):
    with pytest.raises(ParseError) as exc:
        parse(text)
    assert exc.value.reason == reason


def test_the_originals_marker_pair_parses():
    text = "Bad.\nCorrector (identify problems with response): \nRude.\nCorrector:\nGood."
    out = parse_critique_correction(text, "Corrector (identify problems with response):", "Corrector:")
    assert (out["value"], out["critique"], out["aligned"]) == ("Bad.", "Rude.", "Good.")


QUESTIONS = pd.DataFrame(
    {
        "row_id": ["a", "b", "c"],
        "question": ["Why is the sky blue?", "How do I apologise?", "Is tea healthy?"],
    }
)


@pytest.mark.parametrize("domain", ["ethical", "factuality", "helpful"])
def test_stage_fills_three_columns_in_every_domain(ctx, domain):
    d = DOMAINS[domain]
    stage = make_stage(
        "critique_and_correct",
        ctx,
        "respond",
        prompt=d["prompt"],
        critique_marker=d["critique_marker"],
        correction_marker=d["correction_marker"],
        temperature=0.0,
    )
    assert stage.reads() == {"question"}
    out = run_stage(stage, QUESTIONS)
    assert list(out.row_id) == ["a", "b", "c"]
    assert out[["misaligned", "critique", "aligned"]].map(bool).all().all()
    assert not out.misaligned.str.startswith("Response:").any()
    (msgs,) = stage.preview(QUESTIONS, 1)
    assert msgs[-1]["content"].endswith("Input:\nWhy is the sky blue?")


def test_unparsable_rows_are_dropped_into_the_rejected_table(ctx, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "r.j2").write_text("{{ critique_marker }} {{ correction_marker }} {{ question }}")
    ctx.prompts = PromptLibrary([tmp_path, resource_dir("prompts")])
    stage = make_stage("critique_and_correct", ctx, "r", prompt="mine/r", retries=1)
    out = run_stage(stage, QUESTIONS)
    assert out.empty and list(out.columns)[-3:] == ["misaligned", "critique", "aligned"]
    assert ctx.stats.stage("r").drops == {"parse:missing_critique_marker": 3}
    assert ctx.rejected.count == 3


def test_template_must_use_both_markers(ctx, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "r.j2").write_text("Corrector: {{ question }}")
    ctx.prompts = PromptLibrary([tmp_path, resource_dir("prompts")])
    with pytest.raises(ConfigError, match=r"never uses \['critique_marker', 'correction_marker'\]"):
        make_stage("critique_and_correct", ctx, "r", prompt="mine/r")


@pytest.mark.parametrize("a, b", [("Review:", "review:"), ("Fix:", "Fix"), ("", "Fix:")])
def test_ambiguous_markers_are_refused(ctx, a, b):
    with pytest.raises(ConfigError, match="neither may"):
        make_stage(
            "critique_and_correct",
            ctx,
            "r",
            prompt="aligners/respond_ethical",
            critique_marker=a,
            correction_marker=b,
        )


def test_the_originals_markers_are_accepted_as_params(ctx):
    make_stage(
        "critique_and_correct",
        ctx,
        "r",
        prompt="aligners/respond_ethical",
        critique_marker="Corrector (identify problems with response):",
        correction_marker="Corrector:",
    )
