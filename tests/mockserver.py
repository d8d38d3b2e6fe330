"""A small OpenAI-compatible mock server on 127.0.0.1: fixed latency, fault injection, counters.

Used by the LLM unit tests (in a thread, `MockServer().start()`) and by the benchmarks (as a
separate process: `python tests/mockserver.py --latency 0.1`, which prints `PORT <n>`).

Faults are drawn per request: first from `fail_when` (text in the messages → outcome, always),
then from `script` (a queue of outcomes consumed in order), then at random from the `rate_*`
probabilities. Outcomes: ok, 429, 500, 503, 401, 400, 404, timeout
(hang for `hang_s`), malformed (200 with a broken JSON body), nochoices (200, valid JSON, no
choices), empty (200, a completion whose content is ""), null (200, content null).
`max_concurrency` plays a provider's concurrency cap: a request that arrives with that many
already in flight gets 429 at once.
`GET /_stats`, `POST /_config` (JSON of Faults fields) and `POST /_reset` drive it over HTTP when
it runs in another process.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web


@dataclass
class Faults:
    latency_s: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_timeout: float = 0.0
    rate_malformed: float = 0.0
    retry_after: str | None = "0"  # header sent with 429/503; None = no header
    hang_s: float = 30.0
    script: list[str] = field(default_factory=list)
    require_key: str | None = None  # 401 unless `Authorization: Bearer <key>`
    fail_when: dict[str, str] = field(default_factory=dict)  # text in the request → outcome
    seed: int = 0
    max_concurrency: int | None = None  # 429 (+ Retry-After, no latency) above this many in flight
    replies: str = "echo"  # "test": content from the test model's reply rules (real pipelines parse it)
    # ("empty": every reply's content is "")


class MockServer:
    def __init__(self, **faults: Any) -> None:
        self.faults = Faults(**faults)
        self._rng = random.Random(self.faults.seed)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # ---- counters -------------------------------------------------------------------------
    def reset(self) -> None:
        self.requests = 0
        self.first_request_at: float | None = None  # time.time() of the first arrival
        self.in_flight = 0
        self.max_in_flight = 0
        self.outcomes: Counter[str] = Counter()
        self.history: deque[str] = deque(maxlen=100_000)  # outcomes in arrival order
        self.over_cap = 0  # requests refused by max_concurrency
        self.bodies: deque[dict[str, Any]] = deque(maxlen=200)
        self.headers: deque[dict[str, str]] = deque(maxlen=200)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "first_request_at": self.first_request_at,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "outcomes": dict(self.outcomes),
            "over_cap": self.over_cap,
        }

    def configure(self, **changes: Any) -> None:
        self.faults = dataclasses.replace(self.faults, **changes)
        if "seed" in changes:
            self._rng = random.Random(self.faults.seed)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- HTTP -----------------------------------------------------------------------------
    def _outcome(self, body: dict[str, Any]) -> str:
        f = self.faults
        if f.fail_when:
            text = json.dumps(body.get("messages", []))
            for needle, outcome in f.fail_when.items():
                if needle in text:
                    return outcome
        if f.script:
            return f.script.pop(0)
        x = self._rng.random()
        for name, rate in (
            ("429", f.rate_429),
            ("500", f.rate_500),
            ("timeout", f.rate_timeout),
            ("malformed", f.rate_malformed),
        ):
            if x < rate:
                return name
            x -= rate
        return "ok"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.first_request_at is None:  # the startup benchmark: process start → first call
            self.first_request_at = time.time()
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.json()
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
            f = self.faults
            if f.max_concurrency is not None and self.in_flight > f.max_concurrency:
                self.over_cap += 1  # a provider's concurrency cap answers at once
                self.outcomes["429"] += 1
                self.history.append("429")
                return await self._respond("429", body, request)
            outcome = self._outcome(body)
            if f.require_key and request.headers.get("Authorization") != f"Bearer {f.require_key}":
                outcome = "401"
            self.outcomes[outcome] += 1
            self.history.append(outcome)
            if f.latency_s:
                await asyncio.sleep(f.latency_s)
            return await self._respond(outcome, body, request)
        finally:
            self.in_flight -= 1

    async def _respond(self, outcome: str, body: dict[str, Any], req: web.Request) -> web.Response:
        f = self.faults
        if outcome == "timeout":
            await asyncio.sleep(f.hang_s)
            outcome = "ok"
        if outcome in ("429", "503"):
            headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
            return web.json_response(
                _err("rate limited" if outcome == "429" else "overloaded"),
                status=int(outcome),
                headers=headers,
            )
        if outcome == "401":
            # Real providers echo (part of) the key: the client must scrub it from its errors.
            got = req.headers.get("Authorization", "")
            return web.json_response(_err(f"Incorrect API key provided: {got}"), status=401)
        if outcome in ("400", "404", "500"):
            return web.json_response(_err(f"mock error {outcome}"), status=int(outcome))
        if outcome == "malformed":
            return web.Response(text='{"id": "x", "choices": [', content_type="application/json")
        if outcome == "nochoices":
            return web.json_response({"id": "x", "object": "chat.completion"})
        if outcome == "empty":
            return web.json_response(_completion(body, "empty"))
        if outcome == "null":
            data = _completion(body, "empty")
            data["choices"][0]["message"]["content"] = None
            return web.json_response(data)
        return web.json_response(_completion(body, f.replies))

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _config(self, request: web.Request) -> web.Response:
        self.configure(**(await request.json()))
        return web.json_response(dataclasses.asdict(self.faults))

    async def _reset(self, _: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.stats())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/health", self._health)
        app.router.add_get("/_stats", self._stats)
        app.router.add_post("/_config", self._config)
        app.router.add_post("/_reset", self._reset)
        return app

    async def serve(self, port: int = 0) -> None:
        # A short shutdown: stopping must not wait out requests the mock is told to hang.
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # ---- in a background thread (tests) --------------------------------------------------
    def start(self, port: int = 0) -> MockServer:
        """Serve in a thread; `port` to come back on the port of a stopped server."""
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve(port))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, daemon=True, name="mockserver")
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        runner, self._runner = self._runner, None
        asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def _err(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "mock_error"}}


_TEST_MODEL: Any = None


def _test_reply(body: dict[str, Any]) -> str:
    """What `model=test` would answer: shipped pipelines can run against the mock and parse."""
    global _TEST_MODEL
    if _TEST_MODEL is None:
        from selfalign.llm.base import ChatRequest
        from selfalign.llm.config import ModelConfig
        from selfalign.llm.testmodel import TestModel
        from selfalign.paths import resource_dir

        rules = resource_dir("conf") / "test_model"
        _TEST_MODEL = (TestModel(ModelConfig(provider="test"), rules), ChatRequest)
    model, request = _TEST_MODEL
    params = {k: v for k, v in body.items() if k not in ("messages", "model", "stream")}
    msgs = [{"role": m["role"], "content": str(m.get("content", ""))} for m in body.get("messages", [])]
    return model.reply(request.make(msgs, params, sample=int(body.get("seed") or 0)))


def _completion(body: dict[str, Any], replies: str = "echo") -> dict[str, Any]:
    msgs = body.get("messages", [])
    last = next((m.get("content", "") for m in reversed(msgs) if m.get("role") == "user"), "")
    if replies == "empty":
        text = ""
    elif replies == "test":
        text = _test_reply(body)
    elif isinstance(body.get("response_format"), dict):
        text = json.dumps({"answer": str(last)[:40]})
    else:
        text = f"mock reply to: {str(last)[-60:]}"  # the end: where prompts differ
    n_in = sum(len(str(m.get("content", "")).split()) for m in msgs)
    n_out = len(text.split())
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
    }


def spawn(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """This server in a process of its own (the benchmarks' endpoint): (the process, its base
    URL without /v1). `flags` are main()'s, e.g. "--latency", "0.1"."""
    here = Path(__file__).resolve()
    proc = subprocess.Popen(
        [sys.executable, str(here), *flags],
        stdout=subprocess.PIPE,
        text=True,
        cwd=here.parents[1],  # --replies test imports selfalign from the checkout
        env={**os.environ, "PYTHONPATH": str(here.parents[1])},
    )
    port = int(proc.stdout.readline().split()[1])  # type: ignore[union-attr]
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--rate-429", type=float, default=0.0)
    ap.add_argument("--rate-500", type=float, default=0.0)
    ap.add_argument("--retry-after", default="0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replies", choices=["echo", "test"], default="echo", help="test: test-model rules")
    ap.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="answer 429 (with Retry-After) above this many requests in flight",
    )
    a = ap.parse_args()
    server = MockServer(
        latency_s=a.latency,
        rate_429=a.rate_429,
        rate_500=a.rate_500,
        retry_after=a.retry_after,
        seed=a.seed,
        max_concurrency=a.max_concurrency,
        replies=a.replies,
    )
    serve_forever(server, a.port)


def serve_forever(server: MockServer, port: int) -> None:
    """Run `server` in this process (it prints `PORT <n>` once listening) until interrupted."""

    async def run() -> None:
        await server.serve(port)
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
