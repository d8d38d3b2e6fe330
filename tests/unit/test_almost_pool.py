"""ALMoST prompt generation rules: query parsing, length rules, the exact-and-fast ROUGE-L pool."""

import random

import pytest
from rouge_score import rouge_scorer

from selfalign.errors import ConfigError
from selfalign.stages.methods.almost.pool import RougePool, length_reject, parse_query, read_seed_file

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


# --- parsing -------------------------------------------------------------------------------


def test_first_line_takes_the_continuation():
    out = " How do I fix a flat tyre?\nQuery: Next one?"
    assert parse_query(out) == "How do I fix a flat tyre?"


def test_first_line_drops_a_repeated_label_quotes_and_blank_lines():
    assert parse_query("\n\n  Query: What is rain?  ") == "What is rain?"
    assert parse_query('"Why is the sky blue?"') == "Why is the sky blue?"
    assert parse_query("QUERY : Tell me a joke") == "Tell me a joke"


def test_first_line_cuts_at_a_second_label_on_the_same_line():
    assert parse_query("Plan a trip. query: another one") == "Plan a trip."


def test_first_line_empty_output():
    assert parse_query("") == ""
    assert parse_query("\n  \n") == ""


def test_skip_first_takes_the_next_query_line_like_the_original():
    out = " How do I fix a flat tyre?\nQuery: What is a good pasta recipe?\nQuery: third"
    assert parse_query(out, "skip_first") == "What is a good pasta recipe?"
    assert parse_query("  Query: inline  Query: cut here", "skip_first") == "inline"


def test_skip_first_without_a_query_line_is_none():
    assert parse_query("Only the continuation.", "skip_first") is None
    assert parse_query("query: lower case does not count", "skip_first") is None


# --- length rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("Too short and no stop", "too_short"),  # 21 chars, ends with a letter
        ("Short but ends well?", None),  # < 30 chars with final punctuation: kept
        ("Short but ends with quote'", None),  # any string.punctuation counts
        ("x" * 29 + ".", None),
        ("x" * 30, None),  # exactly 30 chars: not "shorter than 30"
        ("x" * 250, None),
        ("x" * 251, "too_long"),  # no final punctuation: still rejected
        ("x" * 250 + ".", "too_long"),  # the original rejected only this one
    ],
)
def test_length_reject(text, reason):
    assert length_reject(text) == reason


def test_length_bounds_are_configurable():
    assert length_reject("abcdef", min_chars=5) is None
    assert length_reject("abcdef", min_chars=5, max_chars=5) == "too_long"


# --- seed file -----------------------------------------------------------------------------


def test_seed_file_first_line_is_the_instruction(tmp_path):
    f = tmp_path / "seeds.txt"
    f.write_text("Write a query.\n\nFirst seed?\n  \nSecond seed.\n")
    assert read_seed_file(str(f), "w") == ("Write a query.", ["First seed?", "Second seed."])


def test_seed_file_errors_say_where(tmp_path):
    with pytest.raises(ConfigError, match=r"stage\.seed_file: seed prompt file .* not found"):
        read_seed_file(str(tmp_path / "nope.txt"), "stage.seed_file")
    (tmp_path / "only.txt").write_text("Instruction only\n")
    with pytest.raises(ConfigError, match="at least one seed"):
        read_seed_file(str(tmp_path / "only.txt"), "w")


# --- ROUGE-L pool ----------------------------------------------------------------------------


def brute(pool: RougePool, text: str, thr: float = 0.5) -> bool:
    return any(SCORER.score(s, text)["rougeL"].fmeasure >= thr for s in pool.texts)


def test_fmeasure_is_rouge_score_rouge_l():
    pool = RougePool()
    a, b = "How do I bake bread at home?", "How can I bake a cake at home quickly?"
    assert pool.fmeasure(a, b) == SCORER.score(a, b)["rougeL"].fmeasure


def test_exact_threshold_is_inclusive():
    pool = RougePool(0.5)
    pool.add("a b c d")  # 4 tokens
    assert pool.fmeasure("a b c d", "a b x y") == 0.5
    assert pool.similar("a b x y") is not None  # F = 0.5 exactly → rejected (>=)
    assert pool.similar("a x y z") is None  # F = 0.25


def test_similar_reports_the_match():
    pool = RougePool(0.5)
    for t in ["What is the capital of France?", "How do magnets work?"]:
        pool.add(t)
    m = pool.similar("what is the capital of spain")
    assert m is not None and m.index == 0 and m.text.startswith("What is")
    assert m.fmeasure == pytest.approx(
        SCORER.score(m.text, "what is the capital of spain")["rougeL"].fmeasure
    )


def test_texts_without_tokens_never_match():
    pool = RougePool(0.5)
    pool.add("!!! ???")
    pool.add("hello world")
    assert pool.similar("...") is None
    assert pool.similar("¿¿") is None


def test_empty_pool_and_threshold_validation():
    assert RougePool().similar("anything at all") is None
    with pytest.raises(ValueError):
        RougePool(0.0)


def test_same_decisions_as_brute_force_rouge_score():
    """Random texts over a small vocabulary (many near-ties) and thresholds: the prefilter
    never changes a decision of the plain rouge-score check."""
    rng = random.Random(7)
    vocab = [
        "the",
        "a",
        "of",
        "to",
        "how",
        "do",
        "i",
        "what",
        "is",
        "way",
        "make",
        "cake",
        "river",
        "plan",
        "trip",
        "why",
        "sky",
        "blue",
    ]
    for thr in (0.3, 0.5, 0.7):
        pool = RougePool(thr)
        for _ in range(300):
            text = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))
            fast = pool.similar(text) is not None
            assert fast == brute(pool, text, thr), text
            if not fast:
                pool.add(text)
        assert pool.exact_checks < pool.checks * len(pool)  # the bound did prune


def test_repeated_tokens_count_by_multiplicity():
    pool = RougePool(0.5)
    pool.add("go go go go go go")
    # overlap is min-count (1 'go'), so the bound 2*1/(6+1) < 0.5 prunes it, and rightly so
    assert pool.similar("go") is None and not brute(pool, "go")
    assert pool.similar("go go go") is not None and brute(pool, "go go go")
