"""Text helpers shared by stages: Unicode-aware words, token counts and n-grams (no tokenizer download).

Words are runs of letters, combining marks and digits in any script (so Devanagari vowel signs stay
inside their word). Scripts written without spaces (Chinese, Japanese, Thai, Lao, Khmer, Myanmar,
Tibetan) have no such runs, so each of their characters is a word of its own. On ASCII text every
function here gives exactly what the ASCII-only rules it replaced gave.
"""

from __future__ import annotations

import re
import unicodedata

import regex

# Scripts written without spaces between words; the prolonged sound mark ー is script Common.
NO_SPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}\u30fc"
_ONE = rf"[{NO_SPACE}]\p{{M}}*"  # one character of those scripts, with its combining marks
_RUN = rf"(?:(?![{NO_SPACE}])[\p{{L}}\p{{M}}\p{{N}}])+"  # a word of a spaced script
_RUN_U = rf"(?:(?![{NO_SPACE}])[\p{{L}}\p{{M}}\p{{N}}_])+"  # … counting '_' as a letter (like \w)
_WORD = regex.compile(rf"{_ONE}|{_RUN}")
_WORD_U = regex.compile(rf"{_ONE}|{_RUN_U}")
_TOKEN = regex.compile(rf"{_ONE}|{_RUN_U}|[^\p{{L}}\p{{M}}\p{{N}}_\s]")
_HAS_NO_SPACE = regex.compile(rf"[{NO_SPACE}]")
# ASCII fast paths (the same results; the Unicode patterns are ~2x slower on ASCII text)
_ASCII_WORD, _ASCII_WORD_U, _ASCII_TOKEN = (
    re.compile(p, re.A) for p in (r"[a-z0-9]+", r"\w+", r"\w+|[^\w\s]")
)


def has_unspaced_script(text: str) -> bool:
    """True when the text holds a character of a script written without spaces."""
    return _HAS_NO_SPACE.search(text) is not None


def count_tokens(text: str) -> int:
    """Words and single punctuation marks: a tokenizer-free stand-in that needs no download.
    On ASCII text this is the old `\\w+|[^\\w\\s]` count."""
    return len((_ASCII_TOKEN if text.isascii() else _TOKEN).findall(text))


def count_words(text: str) -> int:
    """Whitespace-separated words; in text with characters of an unspaced script, each of those
    characters plus each run of letters/digits of other scripts (punctuation is not a word)."""
    if not has_unspaced_script(text):
        return len(text.split())
    return len(_WORD.findall(text))


def words(text: str, underscore: bool = True) -> list[str]:
    """Lower-cased words. `underscore=False` splits at '_' too, as rouge-score and BM25 did."""
    low = text.lower()
    if low.isascii():
        return (_ASCII_WORD_U if underscore else _ASCII_WORD).findall(low)
    return (_WORD_U if underscore else _WORD).findall(low)


def normalize_text(text: str) -> str:
    """NFKC then lower case: full-width and compatibility forms, and composed or decomposed
    accents, compare equal. ASCII text is only lower-cased."""
    return unicodedata.normalize("NFKC", text).lower()


def shingles(text: str, n: int, unit: str = "word") -> set[str]:
    """The set of n-grams of words ("word") or of characters ("char", after collapsing
    whitespace) of the normalised text; a text shorter than n is one shingle of all of it."""
    norm = normalize_text(text)
    if unit == "char":
        s = " ".join(norm.split())
        return {s[i : i + n] for i in range(len(s) - n + 1)} or ({s} if s else set())
    toks = words(norm, underscore=False)
    grams = {" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)}
    return grams or ({" ".join(toks)} if toks else set())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
