"""ReAlign retrieval: snippet cleaning and assembly, BM25 on the shipped corpus, the
`retrieve_evidence` stage, and the serper provider against a mock HTTP server on 127.0.0.1."""

import asyncio
import threading

import pandas as pd
import pytest
import yaml
from aiohttp import web
from helpers import make_stage, run_stage

from selfalign import aio
from selfalign.errors import ConfigError
from selfalign.paths import resource_dir, sample_path
from selfalign.stages.methods.realign import RAG_TASKS
from selfalign.stages.search import (
    NO_RESULT,
    Bm25Provider,
    SerperProvider,
    clean_snippets,
    serper_snippets,
    tokenize,
)

CORPUS = sample_path("realign_corpus.jsonl")
DROP = ["Missing:", "Duration:", "Posted:"]


def test_clean_snippets_drops_chrome_and_keeps_first_k():
    raw = [
        "",
        "   ",
        None,
        NO_RESULT,
        "Missing: moon",
        "Duration: 3:12",
        "Posted: 2 days ago",
        "one",
        "two\n lines",
        "three",
        "four",
        "five",
        "six",
    ]
    assert clean_snippets(raw, DROP, 5) == ["one", "two lines", "three", "four", "five"]
    # a banned word later in the text is fine; only a leading prefix is chrome
    assert clean_snippets(["Not Missing: here"], DROP, 5) == ["Not Missing: here"]


def test_serper_snippet_assembly_order():
    data = {
        "answerBox": {"snippet": "line one\nline two", "snippetHighlighted": ["ignored"]},
        "knowledgeGraph": {
            "title": "Ice",
            "type": "Solid water",
            "description": "Frozen water.",
            "attributes": {"Density": "0.917 g/cm3"},
        },
        "organic": [
            {"snippet": f"hit {i}", "attributes": {"Year": "2020"} if i == 0 else {}} for i in range(12)
        ],
    }
    out = serper_snippets(data)
    assert out[:5] == [
        "line one line two",
        "Ice: Solid water",
        "Frozen water.",
        "Density: 0.917 g/cm3",
        "hit 0",
    ]
    assert out[5] == "Year: 2020" and out[-1] == "hit 9"  # organic[:10] only


def test_serper_answer_box_prefers_answer_then_highlight():
    assert serper_snippets({"answerBox": {"answer": "42", "snippet": "s"}}) == ["42"]
    assert serper_snippets({"answerBox": {"snippetHighlighted": ["a", "b"]}}) == ["a b"]
    assert serper_snippets({}) == []


def test_bm25_on_shipped_corpus_finds_the_right_passages():
    bm = Bm25Provider(CORPUS, "text", "title", "c")
    hits = bm.search("Is the Great Wall of China visible from the Moon?", 5)
    assert 1 <= len(hits) <= 5 and "myth" in hits[0]
    assert any("hexagonal" in h for h in bm.search("Why does ice float on water?", 3))
    assert bm.search("the of and", 5) == []  # stop words only: no query terms
    assert bm.search("zyxwv qqqq", 5) == []  # nothing scores above zero


def test_tokenize_drops_stop_words():
    assert tokenize("How do I repot THE plant?") == ["repot", "plant"]


def test_tokenize_keeps_words_of_every_script():
    assert tokenize("Почему лёд плавает?") == ["почему", "лёд", "плавает"]
    assert tokenize("氷はなぜ浮く") == ["氷", "は", "な", "ぜ", "浮", "く"]  # no spaces: characters
    assert tokenize("snake_case x2") == ["snake", "case", "x2"]  # ASCII: runs of [a-z0-9], as before


def test_bm25_relevance_thresholds_drop_passages_that_share_only_a_word():
    bm = Bm25Provider(CORPUS, "text", "title", "c")
    query = "Why does ice float on water?"
    loose = bm.search(query, 6)  # the old rule: any passage scoring above 0
    assert any("coffee" in h for h in loose) and any("repotting" in h for h in loose)
    relative = bm.search(query, 6, min_relative=0.5)  # >= half the best passage's score
    assert len(relative) == 2 and all("ice" in h.lower() for h in relative)
    # a query whose best passage is itself off-topic: only the absolute floor removes it
    assert len(bm.search("Fix the bug in this function", 5, min_relative=0.5)) == 1
    assert bm.search("Fix the bug in this function", 5, min_score=3.0, min_relative=0.5) == []
    assert bm.search(query, 6, min_score=3.0, min_relative=0.5) == relative


def test_realign_pipeline_sets_both_thresholds():
    pipe = yaml.safe_load((resource_dir("pipelines") / "realign.yaml").read_text())
    stage = pipe["pipeline"]["stages"]["retrieve"]
    assert stage["min_score"] == "${retrieval.min_score}" and pipe["retrieval"]["min_score"] == 3.0
    assert pipe["retrieval"]["min_relative"] == 0.5


def frame(**cols):
    n = len(next(iter(cols.values())))
    return pd.DataFrame({"row_id": [str(i) for i in range(n)], **cols})


def test_pipeline_retrieves_for_the_originals_rag_tasks():
    pipe = yaml.safe_load((resource_dir("pipelines") / "realign.yaml").read_text())
    assert pipe["retrieval"]["categories"] == RAG_TASKS


def test_stage_only_wanted_single_turn_rows_without_evidence(ctx):
    stage = make_stage("retrieve_evidence", ctx, "r", corpus=CORPUS, categories=RAG_TASKS)
    df = frame(
        instruction=["Why does ice float?"] * 4 + ["Why does ice float?"],
        category=["explain_answer", "advice_giving", "open_qa", "open_qa", None],
        num_items=[2, 2, 4, 2, 2],
        evidence=[None, None, None, ["already here"], []],
    )
    out = run_stage(stage, df)
    assert 1 <= len(out.evidence[0]) <= 5
    assert list(out.evidence[1:]) == [[], [], ["already here"], []]
    assert list(df.columns) == list(out.columns)  # evidence existed: replaced, not added twice


def test_stage_without_turns_column_and_all_categories(ctx):
    stage = make_stage("retrieve_evidence", ctx, "r", corpus=CORPUS, categories=[], top_k=2, min_relative=0)
    out = run_stage(stage, frame(instruction=["repot a houseplant roots", "zzzz"]))
    assert len(out.evidence[0]) == 2 and out.evidence[1] == []
    assert stage.reads() == {"instruction"}


def test_stage_applies_the_relevance_threshold(ctx):
    df = frame(instruction=["Why does ice float on water?"])
    out = run_stage(make_stage("retrieve_evidence", ctx, "r", corpus=CORPUS, categories=[]), df)
    assert len(out.evidence[0]) == 2  # default min_relative 0.5: the coffee and repotting passages go
    loose = make_stage("retrieve_evidence", ctx, "r", corpus=CORPUS, categories=[], min_relative=0)
    assert len(run_stage(loose, df).evidence[0]) == 5


def test_stage_config_errors(ctx, monkeypatch):
    with pytest.raises(ConfigError, match=r"min_relative` must be in \[0, 1\]"):
        make_stage("retrieve_evidence", ctx, "r", corpus=CORPUS, min_relative=2)
    with pytest.raises(ConfigError, match="provider 'bm25' needs `corpus`"):
        make_stage("retrieve_evidence", ctx, "r")
    with pytest.raises(ConfigError, match="has no column 'body'"):
        make_stage("retrieve_evidence", ctx, "r", corpus=CORPUS, corpus_text_column="body")
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    msg = r"r\.provider: 'serper' needs an API key in the env var SERPER_API_KEY"
    with pytest.raises(ConfigError, match=msg):
        make_stage("retrieve_evidence", ctx, "r", provider="serper")


class MockSerper:
    """A tiny Serper look-alike on 127.0.0.1: canned answers, a status script, counters."""

    def __init__(self, latency: float = 0.0, script: list[int] | None = None) -> None:
        self.latency, self.script = latency, list(script or [])
        self.requests: list[dict] = []
        self.keys: list[str | None] = []
        self.in_flight = self.max_in_flight = 0

    async def search(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.json()
            self.requests.append(body)
            self.keys.append(request.headers.get("X-API-KEY"))
            await asyncio.sleep(self.latency)
            status = self.script.pop(0) if self.script else 200
            if status != 200:
                return web.json_response({"message": "no"}, status=status)
            return web.json_response(
                {
                    "answerBox": {"answer": f"answer to {body['q']}"},
                    "organic": [
                        {"snippet": "Posted: yesterday"},
                        {"snippet": ""},
                        *({"snippet": f"{body['q']} result {i}"} for i in range(8)),
                    ],
                }
            )
        finally:
            self.in_flight -= 1

    def __enter__(self) -> "MockSerper":
        ready = threading.Event()

        def main() -> None:
            self.loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/search", self.search)
            self.runner = web.AppRunner(app, access_log=None)
            self.loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def test_serper_stage_against_mock(ctx, monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "secret-key-123")
    with MockSerper(latency=0.05) as mock:
        stage = make_stage(
            "retrieve_evidence",
            ctx,
            "r",
            provider="serper",
            base_url=mock.url,
            concurrency=3,
            categories=["open_qa"],
        )
        df = frame(
            instruction=[f"q{i}" for i in range(8)] + ["skip me"],
            category=["open_qa"] * 8 + ["poem_generation"],
        )
        out = run_stage(stage, df)
    assert len(mock.requests) == 8 and mock.max_in_flight <= 3
    assert set(mock.keys) == {"secret-key-123"}
    assert mock.requests[0]["gl"] == "us" and mock.requests[0]["hl"] == "en"
    # answer box first; the 'Posted:' and empty snippets are dropped; top 5 kept
    assert out.evidence[0] == ["answer to q0", "q0 result 0", "q0 result 1", "q0 result 2", "q0 result 3"]
    assert out.evidence[8] == []


def test_serper_retries_5xx_and_429_then_gives_up_on_401():
    with MockSerper(script=[500, 429]) as mock:
        prov = SerperProvider(mock.url, "k", retries=2, backoff_s=0.01)
        [(snips, err)] = aio.run(prov.search_all(["ice"]))
        assert err is None and snips[0] == "answer to ice" and len(mock.requests) == 3
    with MockSerper(script=[401]) as mock:
        prov = SerperProvider(mock.url, "top-secret", retries=3, backoff_s=0.01)
        [(snips, err)] = aio.run(prov.search_all(["ice"]))
        assert snips == [] and "refused the key" in err and "top-secret" not in err
        assert len(mock.requests) == 1  # a bad key is not retried


def test_serper_unreachable_host_is_an_error_not_a_crash():
    prov = SerperProvider("http://127.0.0.1:9", "k", retries=1, backoff_s=0.01, timeout_s=2)
    [(snips, err)] = aio.run(prov.search_all(["ice"]))
    assert snips == [] and err and "Error" in err


def test_pipeline_with_serper_provider_against_mock(run_pipeline, monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", "k-pipeline")
    with MockSerper() as mock:
        df, _, run_dir = run_pipeline(
            "pipeline=realign",
            "retrieval.provider=serper",
            f"+pipeline.stages.retrieve.base_url='{mock.url}'",
        )
    assert len(mock.requests) == 5 and set(mock.keys) == {"k-pipeline"}
    ev = dict(zip(df.category, df.evidence, strict=True))
    assert ev["open_qa"][0].startswith("answer to What causes the seasons")
    assert ev["advice_giving"] == []
    written = [f.read_bytes() for f in run_dir.rglob("*") if f.is_file()]
    assert written and not any(b"k-pipeline" in data for data in written)  # key never stored
