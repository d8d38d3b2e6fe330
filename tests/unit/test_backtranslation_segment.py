"""`segment()` and the `segment_text` stage on hand-made documents."""

import pandas as pd
import pytest
from helpers import make_stage, run_stage

from selfalign.errors import ConfigError
from selfalign.stages.segment import segment
from selfalign.text import count_tokens


def test_short_text_is_one_piece_and_blank_is_none():
    assert segment("  One short answer.  ", 50) == ["One short answer."]
    assert segment("", 5) == []
    assert segment(" \n\n \t", 5) == []


def test_paragraphs_are_packed_greedily_within_the_limit():
    text = "a b c.\n\nd e f.\n\ng h i."  # 4 tokens per paragraph
    assert segment(text, 8) == ["a b c.\n\nd e f.", "g h i."]
    assert segment(text, 12) == [text]
    assert segment(text, 4) == ["a b c.", "d e f.", "g h i."]


def test_long_paragraph_falls_back_to_sentences_then_words():
    para = "One two three. Four five six. Seven eight nine ten eleven twelve."
    assert segment(para, 8) == ["One two three. Four five six.", "Seven eight nine ten eleven twelve."]
    pieces = segment("w1 w2 w3 w4 w5 w6 w7", 3)
    assert pieces == ["w1 w2 w3", "w4 w5 w6", "w7"]


def test_every_piece_fits_and_no_word_is_lost():
    doc = ("Alpha beta gamma. Delta epsilon!\n\n" * 5 + "Zeta eta theta iota kappa lambda mu nu. ") * 3
    for limit in (3, 7, 20, 1000):
        pieces = segment(doc, limit)
        assert all(count_tokens(p) <= limit for p in pieces)
        assert " ".join(pieces).split() == doc.split()


def test_a_word_longer_than_the_limit_stays_whole():
    assert segment("see https://example.com/a/b ok", 2) == ["see", "https://example.com/a/b", "ok"]


def frame(texts):
    return pd.DataFrame(
        {"row_id": [str(i) for i in range(len(texts))], "text": texts, "origin": ["x"] * len(texts)}
    )


def test_stage_keeps_ids_of_unsplit_documents_and_numbers_pieces(ctx):
    df = frame(["short one.", "a b c.\n\nd e f.", "   "])
    out = run_stage(
        make_stage("segment_text", ctx, "seg", column="text", output="response", max_tokens=4), df
    )
    assert list(out.row_id) == ["0", "1.s0", "1.s1"]
    assert list(out.doc_id) == ["0", "1", "1"]
    assert list(out.segment) == [0, 0, 1]
    assert list(out.response) == ["short one.", "a b c.", "d e f."]
    assert "text" not in out.columns and list(out.origin) == ["x"] * 3
    assert ctx.stats.stage("seg").drops == {"empty:text": 1}


def test_stage_without_limit_only_strips(ctx):
    out = run_stage(
        make_stage("segment_text", ctx, "seg", column="text", output="text"),
        frame(["  keep me whole.\n\nsecond paragraph  "]),
    )
    assert list(out.text) == ["keep me whole.\n\nsecond paragraph"]
    assert list(out.row_id) == ["0"]


def test_bad_limit_is_a_config_error(ctx):
    with pytest.raises(ConfigError, match=r"pipeline\.stages\.seg: `max_tokens` must be >= 1"):
        make_stage("segment_text", ctx, "seg", max_tokens=0)
