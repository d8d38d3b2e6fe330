"""Text in any script: words, token and word counts, length filters, dedup normalisation and the
ALMoST ROUGE-L pool on Cyrillic, Japanese, Chinese, Arabic and Devanagari; ASCII unchanged."""

import random
import re
import string

import pandas as pd
import pytest
from helpers import make_stage, run_stage
from rouge_score import rouge_scorer, tokenizers

from selfalign.stages.dedup import normalize
from selfalign.stages.methods.almost.pool import RougePool
from selfalign.text import count_tokens, count_words, shingles, words

CYRILLIC = "Как испечь хлеб дома?"
JAPANESE = "東京でおすすめのラーメン屋はどこですか？"
CHINESE = "我有3只猫。"
ARABIC = "كيف أخبز الخبز في المنزل؟"
DEVANAGARI = "हिन्दी भाषा सुंदर है।"


def test_words_in_five_scripts():
    assert words(CYRILLIC) == ["как", "испечь", "хлеб", "дома"]
    assert words(ARABIC) == ["كيف", "أخبز", "الخبز", "في", "المنزل"]
    # vowel signs and virama are combining marks: the stdlib's \w cut these words into pieces
    assert words(DEVANAGARI) == ["हिन्दी", "भाषा", "सुंदर", "है"]
    # no spaces between words: each character is a word; digits of other scripts stay runs
    assert words(CHINESE) == ["我", "有", "3", "只", "猫"]
    assert words(JAPANESE)[:4] == ["東", "京", "で", "お"] and "ー" in words(JAPANESE)


def test_counts_in_five_scripts():
    assert (count_words(CYRILLIC), count_tokens(CYRILLIC)) == (4, 5)  # 4 words + "?"
    assert (count_words(ARABIC), count_tokens(ARABIC)) == (5, 6)
    assert (count_words(DEVANAGARI), count_tokens(DEVANAGARI)) == (4, 5)  # + "।"
    assert (count_words(CHINESE), count_tokens(CHINESE)) == (5, 6)  # + "。"
    assert count_words(JAPANESE) == 19 and count_tokens(JAPANESE) == 20  # + "？"
    assert count_words("我喜欢 Python 3 — 真的") == 7  # a dash alone is no word next to CJK


def test_ascii_text_counts_and_splits_exactly_as_before():
    """The old rules: \\w+|[^\\w\\s] tokens, \\w+ words, str.split() words, rouge-score tokens."""
    rouge = tokenizers.DefaultTokenizer(use_stemmer=False)
    rng = random.Random(7)
    for _ in range(3000):
        s = "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 40)))
        assert count_tokens(s) == len(re.findall(r"\w+|[^\w\s]", s))
        assert words(s) == re.findall(r"\w+", s.lower())
        assert count_words(s) == len(s.split())
        assert words(s, underscore=False) == rouge.tokenize(s)


def test_shingles_work_without_spaces():
    assert shingles("東京の", 2, "word") == {"東 京", "京 の"}
    assert shingles("Ab  c", 3, "char") == {"ab ", "b c"}
    assert shingles("hi", 5, "char") == {"hi"}  # shorter than n: one shingle
    assert shingles("", 3) == set() and shingles("  ", 3, "char") == set()
    assert shingles("ＡＢＣ abc", 1, "word") == {"abc"}  # NFKC: full-width letters


@pytest.mark.parametrize(
    "op, value, text, keeps",
    [
        ("min_words", 4, CHINESE, True),  # 5 words, not 1 whitespace chunk
        ("max_words", 4, CHINESE, False),
        ("min_words", 5, DEVANAGARI, False),
        ("max_tokens", 5, DEVANAGARI, True),  # 4 words + danda, not 13 pieces
        ("min_words", 4, CYRILLIC, True),
        ("max_words", 3, ARABIC, False),
    ],
)
def test_length_filters_in_other_scripts(ctx, op, value, text, keeps):
    df = pd.DataFrame({"row_id": ["0"], "t": [text]})
    out = run_stage(
        make_stage("filter_rows", ctx, "f", rules=[{"column": "t", "op": op, "value": value}]), df
    )
    assert len(out) == int(keeps)


def test_dedup_normalisation_keeps_marks_and_folds_width():
    s = pd.Series(["हिन्दी!", "हनद", "ＡＢＣ  def", "abc def", "Москва.", "москва"])
    assert list(normalize(s, "lower_ws")) == ["हिन्दी", "हनद", "abc def", "abc def", "москва", "москва"]
    assert list(normalize(pd.Series(["Cafe\u0301", "Café"]), "lower")) == ["café", "café"]  # NFD = NFC


def test_dedup_exact_in_other_scripts(ctx):
    df = pd.DataFrame({"row_id": list("abcdef"), "t": ["हिन्दी", "हनद", "東京。", "東京", "Мир!", "мир"]})
    out = run_stage(make_stage("dedup_exact", ctx, "d", column="t", normalize="lower_ws"), df)
    # the stdlib's \w removed the vowel signs, so हिन्दी and हनद were "duplicates"
    assert list(out.row_id) == ["a", "b", "c", "e"]


@pytest.mark.parametrize("text", [CYRILLIC, JAPANESE, ARABIC, DEVANAGARI])
def test_rouge_pool_catches_duplicates_in_other_scripts(text):
    pool = RougePool(0.5)
    pool.add(text)
    match = pool.similar(text)  # rouge-score's tokenizer saw no tokens here: never similar
    assert match is not None and match.fmeasure == 1.0
    assert pool.similar("What is the tallest mountain on Earth?") is None


def test_rouge_pool_near_duplicates_by_character_in_japanese():
    pool = RougePool(0.5)
    pool.add(JAPANESE)
    assert pool.similar("東京でおすすめのラーメン店はどこですか？").fmeasure > 0.9  # 屋 → 店
    assert pool.similar("大阪の天気はどうですか？") is None


def test_rouge_pool_equals_rouge_score_on_ascii():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pool = RougePool(0.5)
    pairs = [
        ("How do I bake bread?", "how do i bake_bread at home"),
        ("Tell me a joke about cats.", "Tell me 2 jokes about dogs!"),
        ("A-B-C", "a b c d"),
    ]
    for a, b in pairs:
        assert pool.fmeasure(a, b) == scorer.score(a, b)["rougeL"].fmeasure
