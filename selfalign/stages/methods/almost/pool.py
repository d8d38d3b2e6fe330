"""ALMoST prompt pool: query parsing, the length rules, and a fast exact ROUGE-L novelty check
(in any script)."""

from __future__ import annotations

import re
import string
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from selfalign.errors import ConfigError, decode_problem
from selfalign.stages.neighbours import CosineIndex, MinHashIndex
from selfalign.text import words

ParseMode = Literal["first_line", "skip_first"]
_QUERY_LABEL = re.compile(r"query\s?:", re.I)  # the original's cut pattern
_LEADING_LABEL = re.compile(r"^\s*query\s?:\s*", re.I)
# Slack for the float comparison of the bound with the threshold: the bound is computed as
# 2*overlap/(m+n) while rouge-score computes 2PR/(P+R); the two round differently.
_EPS = 1e-9
_INT = np.dtype(f"i{array('i').itemsize}")  # numpy views over the array('i') postings


def read_seed_file(path: str, where: str) -> tuple[str, list[str]]:
    """First line = task instruction; every later non-empty line = one seed prompt."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(
            f"{where}: seed prompt file '{p}' not found. Point it at a .txt file "
            "whose first line is the instruction and each later line one seed."
        )
    data = p.read_bytes()
    if problem := decode_problem(p, data, "Re-save the file as UTF-8."):
        raise ConfigError(f"{where}: {problem}")
    lines = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").split("\n")  # as read_text()
    instruction = lines[0].strip()
    seeds = [s.strip() for s in lines[1:] if s.strip()]
    if not instruction or not seeds:
        raise ConfigError(
            f"{where}: '{p}' needs an instruction on line 1 and at least one seed "
            f"prompt on the following lines (found {len(seeds)} seeds)."
        )
    return instruction, seeds


def parse_query(text: str, mode: ParseMode = "first_line") -> str | None:
    """The generated query in a continuation of a request that ends with 'Query:'.

    first_line: the first non-empty line (a repeated leading 'Query:' label is dropped).
    skip_first: the original's rule: the first line that starts with 'Query:', i.e. the query
    the model wrote AFTER the one it was asked for. Both cut at any further 'query:' label.
    Returns None when skip_first finds no 'Query:' line, '' when first_line finds no text.
    """
    if mode == "skip_first":
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("Query:"):
                return _QUERY_LABEL.split(s[len("Query:") :], 1)[0].strip()
        return None
    for line in text.splitlines():
        s = _LEADING_LABEL.sub("", line).strip()
        if s:
            s = _QUERY_LABEL.split(s, 1)[0].strip()
            if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
                s = s[1:-1].strip()
            return s
    return ""


def length_reject(query: str, min_chars: int = 30, max_chars: int = 250) -> str | None:
    """Reason to reject on length, or None. Short queries pass if they end in punctuation."""
    if not query:
        return "empty"
    if len(query) < min_chars and query[-1] not in string.punctuation:
        return "too_short"
    if len(query) > max_chars:  # the original also required final punctuation here (a bug)
        return "too_long"
    return None


@dataclass
class Match:
    index: int
    text: str
    fmeasure: float


class RougePool:
    """Stored prompts, and `similar(text)`: the first one with ROUGE-L F >= threshold.

    Exactly rouge-score's ROUGE-L (its `_score_lcs`) over `selfalign.text.words` tokens, but only
    on candidates that survive a cheap bound. On ASCII text those tokens are rouge-score's own
    (DefaultTokenizer without stemming: lower-cased runs of [a-z0-9]); they also keep words of
    other scripts, and each character of Chinese, Japanese or Thai, which rouge-score drops.
    For token lists of lengths m and n, F = 2*LCS/(m+n) and LCS <= the multiset overlap of the
    two lists, so a stored prompt with 2*overlap/(m+n) < threshold cannot reach the threshold
    and is skipped. The overlaps with
    all stored prompts come from an inverted index in a few vectorised numpy operations.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"rouge threshold must be in (0, 1], got {threshold}")
        from rouge_score import rouge_scorer

        self.threshold = threshold
        self._score_lcs = rouge_scorer._score_lcs  # the function RougeScorer uses for rougeL
        self.texts: list[str] = []
        self._tokens: list[list[str]] = []
        self._lens = array("i")
        self._postings: dict[str, tuple[array, array]] = {}  # token → (prompt ids, counts)
        self.checks = self.exact_checks = 0

    def __len__(self) -> int:
        return len(self.texts)

    def tokenize(self, text: str) -> list[str]:
        return words(text, underscore=False)

    def add(self, text: str) -> None:
        tokens = self.tokenize(text)
        idx = len(self.texts)
        self.texts.append(text)
        self._tokens.append(tokens)
        self._lens.append(len(tokens))
        for tok, c in Counter(tokens).items():
            ids, counts = self._postings.setdefault(tok, (array("i"), array("i")))
            ids.append(idx)
            counts.append(c)

    def fmeasure(self, a: str, b: str) -> float:
        """rouge-score's ROUGE-L F between two texts (for tests and reports)."""
        return float(self._score_lcs(self.tokenize(a), self.tokenize(b)).fmeasure)

    def candidates(self, tokens: list[str]) -> np.ndarray:
        """Ids of stored prompts whose upper bound reaches the threshold, best bound first."""
        n = len(self.texts)
        if not tokens or n == 0:
            return np.empty(0, dtype=np.int64)
        overlap = np.zeros(n, dtype=np.int64)
        for tok, c in Counter(tokens).items():
            post = self._postings.get(tok)
            if post is not None:
                ids = np.frombuffer(post[0], dtype=_INT)
                overlap[ids] += np.minimum(np.frombuffer(post[1], dtype=_INT), c)
        lens = np.frombuffer(self._lens, dtype=_INT)
        bound = 2.0 * overlap / (len(tokens) + lens)
        hits = np.flatnonzero(bound >= self.threshold - _EPS)
        return hits[np.argsort(-bound[hits], kind="stable")]

    def similar(self, text: str) -> Match | None:
        """The first stored prompt (by bound) with ROUGE-L F >= threshold, else None."""
        self.checks += 1
        tokens = self.tokenize(text)
        for idx in self.candidates(tokens):
            self.exact_checks += 1
            f = float(self._score_lcs(self._tokens[idx], tokens).fmeasure)
            if f >= self.threshold:
                return Match(int(idx), self.texts[idx], f)
        return None


class Novelty:
    """The pool's novelty checks, in order: ROUGE-L (the original's), MinHash over character
    n-grams (spelling and inflection variants, which ROUGE-L's exact tokens miss), and, opt-in,
    sentence-embedding cosine (paraphrases). Every prompt added is stored in all of them."""

    def __init__(
        self,
        rouge: RougePool,
        minhash: MinHashIndex | None = None,
        encode: Callable[[list[str]], np.ndarray] | None = None,
        cosine: float = 0.9,
    ) -> None:
        self.rouge, self.minhash, self.encode, self.cosine = rouge, minhash, encode, cosine
        self._cos: CosineIndex | None = None
        self._last: tuple[str, np.ndarray] | None = None  # reject() then add(): encode once

    @property
    def texts(self) -> list[str]:
        return self.rouge.texts

    def __len__(self) -> int:
        return len(self.rouge)

    def add_all(self, texts: list[str]) -> None:
        vecs = self.encode(texts) if self.encode and texts else None
        for i, text in enumerate(texts):
            self.add(text, None if vecs is None else vecs[i])

    def add(self, text: str, vec: np.ndarray | None = None) -> None:
        if self.minhash is not None:
            self.minhash.add(len(self.rouge), text)
        if self.encode is not None:
            vec = self._vector(text) if vec is None else vec
            if self._cos is None:
                self._cos = CosineIndex(self.cosine, len(vec))
            self._cos.add(vec)
        self.rouge.add(text)

    def reject(self, text: str) -> tuple[str, dict[str, Any]] | None:
        """(reason, details for the rejected table) when `text` is not novel, else None."""
        if m := self.rouge.similar(text):
            return "too_similar", {"similar_to": m.text, "rouge_l": round(m.fmeasure, 4)}
        if self.minhash is not None and (hit := self.minhash.match(text)):
            return "near_duplicate", {"similar_to": self.texts[hit[0]], "jaccard": round(hit[1], 4)}
        if self._cos is not None and (near := self._cos.match(self._vector(text))):
            return "semantic_duplicate", {"similar_to": self.texts[near[0]], "cosine": round(near[1], 4)}
        return None

    def _vector(self, text: str) -> np.ndarray:
        if self._last is None or self._last[0] != text:
            assert self.encode is not None
            self._last = (text, self.encode([text])[0])
        return self._last[1]
