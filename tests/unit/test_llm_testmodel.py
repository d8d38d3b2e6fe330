"""The deterministic test model's scripted interface: queued replies (in call order, per model or
shared, falling back to the reply rules), the request history, and how they meet the response
cache and a whole pipeline run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import FIXTURES, TINY, TINY_DIRS

from selfalign import aio
from selfalign.llm.base import ChatRequest
from selfalign.llm.cache import ResponseCache
from selfalign.llm.config import ModelConfig
from selfalign.llm.session import LLMSession
from selfalign.llm.testmodel import Script, TestModel, active_script, scripted


def ask(model: TestModel, text: str, stage: str = "", **params: object) -> str:
    req = ChatRequest.make([{"role": "user", "content": text}], params or None, stage=stage)
    result = aio.run(model.complete(req))
    assert result.ok
    return result.text or ""


def model(name: str = "m", **kw: object) -> TestModel:
    return TestModel(ModelConfig(provider="test", name=name, **kw))  # type: ignore[arg-type]


def test_queued_replies_go_out_in_order_then_the_rules_answer(test_model: Script):
    m = model(rules=[{"match": "ping", "reply": "pong"}])
    test_model.queue("first", "second")
    assert test_model.pending() == 2
    assert [ask(m, "ping"), ask(m, "ping"), ask(m, "ping")] == ["first", "second", "pong"]
    assert test_model.pending() == 0
    assert [r.scripted for r in test_model.requests] == [True, True, False]
    # the fallback is exactly the unscripted answer
    assert ask(m, "what is this?") == m.reply(ChatRequest.make([("user", "what is this?")]))


def test_history_records_messages_params_and_ids_in_call_order(test_model: Script):
    m = model()
    test_model.queue("ok")
    req = ChatRequest.make(
        [("system", "be brief"), ("user", "hello")],
        {"temperature": 0.3, "max_tokens": 9},
        sample=2,
        stage="gen",
        row_id="7.1",
    )
    aio.run(m.complete(req))
    ask(m, "again", stage="other", temperature=1.0)
    first, second = test_model.requests
    assert first.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    assert (first.system, first.user) == ("be brief", "hello")
    assert first.params == {"max_tokens": 9, "temperature": 0.3}
    assert (first.model, first.stage, first.row_id, first.sample, first.reply) == ("m", "gen", "7.1", 2, "ok")
    assert (second.stage, second.system, second.params) == ("other", None, {"temperature": 1.0})
    assert test_model.for_stage("other") == [second]


def test_concurrent_calls_take_queued_replies_in_call_order(test_model: Script):
    m = model(concurrency=2, latency_s=0.001)
    test_model.queue(*(f"reply {i}" for i in range(6)))

    async def main() -> list[str]:
        reqs = [ChatRequest.make([("user", f"q{i}")], row_id=str(i)) for i in range(6)]
        return [r.text or "" for r in await asyncio.gather(*(m.complete(r) for r in reqs))]

    assert aio.run(main()) == [f"reply {i}" for i in range(6)]
    assert [r.row_id for r in test_model.requests] == [str(i) for i in range(6)]


def test_a_models_own_queue_comes_before_the_shared_one(test_model: Script):
    judge, writer = model("judge"), model("writer")
    test_model.queue("shared")
    test_model.queue("for the judge", model="judge")
    assert test_model.pending(model="judge") == 1 and test_model.pending() == 1
    assert ask(writer, "x") == "shared"
    assert ask(judge, "x") == "for the judge"
    assert ask(judge, "x").startswith("Test answer")  # both queues empty: the rules
    assert [r.model for r in test_model.requests] == ["writer", "judge", "judge"]


def test_replies_queued_by_stage_and_row_go_to_that_rows_calls(test_model: Script):
    m = model("judge")
    test_model.queue("shared")
    test_model.queue("j, row 1: first", "j, row 1: second", stage="j", row="1")
    test_model.queue("j, any row", stage="j")
    test_model.queue("row 1 of any stage", row="1")

    def ask_row(stage: str, row: str) -> str:
        req = ChatRequest.make([("user", "x")], stage=stage, row_id=row)
        return aio.run(m.complete(req)).text or ""

    # rows in any order: each call takes the most specific queue that matches it
    assert ask_row("j", "0") == "j, any row"
    assert ask_row("j", "1") == "j, row 1: first"
    assert ask_row("k", "1") == "row 1 of any stage"
    assert ask_row("j", "1") == "j, row 1: second"
    assert ask_row("j", "1") == "shared"  # its own queues are empty: the shared one
    assert test_model.pending(stage="j", row="1") == test_model.pending(stage="j") == 0
    assert ask_row("j", "1").startswith("Test answer")  # all empty: the rules
    assert [r.scripted for r in test_model.requests] == [True] * 5 + [False]


def test_replies_must_be_strings(test_model: Script):
    with pytest.raises(TypeError, match="must be a str"):
        test_model.queue("fine", 5)  # type: ignore[arg-type]
    assert test_model.pending() == 0  # nothing half-queued


def test_clear_forgets_queue_and_history(test_model: Script):
    m = model()
    test_model.queue("a", "b")
    ask(m, "x")
    test_model.clear()
    assert test_model.requests == [] and test_model.pending() == 0


def test_without_a_script_nothing_is_recorded_and_scripts_nest():
    assert active_script() is None  # the fixture is not used here
    m = model(rules=[{"match": "ping", "reply": "pong"}])
    assert ask(m, "ping") == "pong"
    with scripted() as outer:
        outer.queue("outer")
        with scripted() as inner:
            assert active_script() is inner
            assert ask(m, "ping") == "pong"  # the inner script has no queue
        assert active_script() is outer and ask(m, "ping") == "outer"
    assert active_script() is None
    assert len(outer.requests) == 1 and len(inner.requests) == 1


def test_a_cache_hit_consumes_no_reply_and_is_not_recorded(test_model: Script, tmp_path: Path):
    cfg = ModelConfig(provider="test", name="cached")
    session = LLMSession({"default": cfg}, tmp_path, ResponseCache(tmp_path / "c.sqlite"))
    test_model.queue("one", "two")
    req = ChatRequest.make([("user", "same question")], stage="s")
    first = aio.run(session.call("s", None, req))
    again = aio.run(session.call("s", None, req))
    assert (first.text, first.cached) == ("one", False)
    assert (again.text, again.cached) == ("one", True)
    assert len(test_model.requests) == 1 and test_model.pending() == 1


def test_a_pipeline_run_is_recorded_per_stage(test_model: Script, run_pipeline, monkeypatch):
    monkeypatch.setenv("TINY_DATA", str(FIXTURES / "data" / "tiny.jsonl"))
    _, manifest, _ = run_pipeline(
        *TINY,
        config_dirs=TINY_DIRS,
    )
    counted = {
        s["name"]: sum(m["requests"] for m in s["llm"].values()) for s in manifest["stages"] if s.get("llm")
    }
    assert counted == {"answer": 10, "judge": 10}  # 5 questions of ≥ 2 words × n=2
    recorded = {stage: len(test_model.for_stage(stage)) for stage in counted}
    assert recorded == counted
    first = test_model.for_stage("answer")[0]
    assert first.user.startswith("Answer the question briefly.\nQuestion: ")
    assert first.params["temperature"] == 0.7 and first.params["max_tokens"] == 64
