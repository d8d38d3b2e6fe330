"""Evidence providers for `retrieve_evidence`: an offline BM25 index over a local corpus, and the
Serper.dev Google Search API (HTTP, concurrency-bounded, base URL configurable for mocks)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfalign import io
from selfalign.errors import ConfigError, InputError
from selfalign.text import words

NO_RESULT = "No good Google Search Result was found"  # the original's placeholder snippet
# Very common words carry no signal for BM25 on a small corpus; our own short list.
_STOP_WORDS = (
    "a an and are as at be by can do does for from how i in is it its me my of on or "
    "should that the this to was what when where which who why will with you your"
)
_STOP = frozenset(_STOP_WORDS.split())


def tokenize(text: str) -> list[str]:
    """Lower-cased words of any script (on ASCII: runs of [a-z0-9]), without stop words."""
    return [w for w in words(text, underscore=False) if w not in _STOP]


def clean_snippets(snippets: list[Any], drop_prefixes: list[str], top_k: int) -> list[str]:
    """Drop empty snippets, the no-result placeholder and snippets starting with a banned prefix
    ('Missing:', 'Duration:', 'Posted:' — search-page chrome, not content); keep the first k."""
    out = []
    for s in snippets:
        text = " ".join(str(s or "").split())
        if not text or text == NO_RESULT or text.startswith(tuple(drop_prefixes)):
            continue
        out.append(text)
    return out[:top_k]


class Bm25Provider:
    """BM25 (Okapi, via rank-bm25) over a JSONL/CSV/Parquet corpus with a text column."""

    def __init__(self, path: str, text_column: str, title_column: str | None, where: str) -> None:
        from rank_bm25 import BM25Okapi

        try:
            df = io.read_table(path)
        except InputError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if text_column not in df.columns:
            raise ConfigError(
                f"{where}: corpus {path} has no column '{text_column}' (columns: "
                f"{', '.join(map(str, df.columns))}). Set `corpus_text_column`."
            )
        self.texts = df[text_column].fillna("").astype(str).tolist()
        titles = (
            df[title_column].fillna("").astype(str).tolist()
            if title_column and title_column in df.columns
            else [""] * len(self.texts)
        )
        # titles are indexed too (they often hold the key term) but are not part of the snippet
        docs = [tokenize(f"{t} {x}") for t, x in zip(titles, self.texts, strict=True)]
        self.index = BM25Okapi([d or ["_empty_"] for d in docs])

    def search(self, query: str, k: int, min_score: float = 0.0, min_relative: float = 0.0) -> list[str]:
        """The k best passages that score above `min_score` and at least `min_relative` x the
        best passage's score: a passage sharing one common word with the query scores above 0."""
        terms = tokenize(query)
        if not terms:
            return []
        scores = self.index.get_scores(terms)
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
        if not ranked:
            return []
        floor = min_relative * float(scores[ranked[0]])
        return [self.texts[i] for i in ranked if scores[i] > max(min_score, 0.0) and scores[i] >= floor]


def serper_snippets(data: dict[str, Any]) -> list[str]:
    """Snippets in the original's order: answer box, knowledge graph, then organic results."""
    out: list[str] = []
    box = data.get("answerBox") or {}
    if box.get("answer"):
        out.append(str(box["answer"]))
    elif box.get("snippet"):
        out.append(str(box["snippet"]).replace("\n", " "))
    elif box.get("snippetHighlighted"):
        hl = box["snippetHighlighted"]
        out.append(" ".join(map(str, hl)) if isinstance(hl, list) else str(hl))
    kg = data.get("knowledgeGraph") or {}
    if kg.get("title") and kg.get("type"):
        out.append(f"{kg['title']}: {kg['type']}")
    if kg.get("description"):
        out.append(str(kg["description"]))
    out += [f"{k}: {v}" for k, v in (kg.get("attributes") or {}).items()]
    for item in (data.get("organic") or [])[:10]:
        if item.get("snippet"):
            out.append(str(item["snippet"]))
        out += [f"{k}: {v}" for k, v in (item.get("attributes") or {}).items()]
    return out


@dataclass
class SerperProvider:
    """POST {base_url}/search with the key in X-API-KEY; retries 429/5xx/network errors."""

    base_url: str
    api_key: str
    gl: str = "us"
    hl: str = "en"
    concurrency: int = 10
    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 0.5

    async def search_all(self, queries: list[str]) -> list[tuple[list[str], str | None]]:
        """(snippets, error) per query, all in flight at once under the concurrency bound."""
        import aiohttp

        sem = asyncio.Semaphore(self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(q: str) -> tuple[list[str], str | None]:
                async with sem:
                    return await self._query(session, q)

            return list(await asyncio.gather(*(one(q) for q in queries)))

    async def _query(self, session: Any, query: str) -> tuple[list[str], str | None]:
        import aiohttp

        url = self.base_url.rstrip("/") + "/search"
        headers = {"X-API-KEY": self.api_key, "Content-Type": "application/json"}
        error = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                async with session.post(
                    url, json={"q": query, "gl": self.gl, "hl": self.hl}, headers=headers
                ) as resp:
                    if resp.status == 200:
                        return serper_snippets(await resp.json(content_type=None)), None
                    error = f"HTTP {resp.status}"
                    if resp.status in (401, 403):
                        return [], f"{error}: the search API refused the key (check the env var)"
                    if resp.status != 429 and resp.status < 500:
                        return [], error
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                # the message never includes headers, so the key cannot leak through it
                error = f"{type(exc).__name__}: {str(exc)[:120]}"
        return [], error


def corpus_fingerprint(path: str) -> str:
    st = Path(path).expanduser().stat()
    return f"{st.st_size}:{st.st_mtime_ns}"
