"""A mock of the OpenAI Batch API and the Anthropic Message Batches API on 127.0.0.1, beside the
chat route of tests/mockserver.py (whose counters say whether anything was sent live).

OpenAI: POST /v1/files (multipart, purpose=batch), POST /v1/batches, GET /v1/batches/{id},
GET /v1/files/{id}/content. Anthropic: POST /v1/messages/batches, GET /v1/messages/batches/{id},
GET /v1/messages/batches/{id}/results.

Each poll of a batch moves it one step along `statuses` (OpenAI's words; the Anthropic routes
show them as in_progress / canceling / ended). When it reaches its last status the results are
made: a request whose messages contain a `fail_when` needle gets that error; with an `expired` or
`cancelled` end only the first `ran` requests have results, the rest are reported unfinished the
way each provider does; `failed` has no results at all.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from mockserver import MockServer, serve_forever

STEPS = ["validating", "in_progress", "finalizing", "completed"]
_ANTHROPIC = {"cancelling": "canceling", "completed": "ended", "expired": "ended", "cancelled": "ended"}


def reply_text(body: dict[str, Any], tag: str, no_score_at: float | None = None) -> str:
    """A deterministic answer (`tag`: part of the custom_id, so two samples differ); a prompt that
    asks for 'Score:' gets one it can parse, unless it was sent at temperature `no_score_at`."""
    msgs = body["messages"]
    last = next((str(m.get("content", "")) for m in reversed(msgs) if m.get("role") == "user"), "")
    if "Score:" not in last:
        return f"batch reply {tag} to: {last[:50]}"
    return "no verdict" if body.get("temperature") == no_score_at else "Fine answer. Score: 4"


def words(body: dict[str, Any]) -> int:
    """The mock's 'prompt tokens': words in the messages (and the system prompt)."""
    return sum(len(str(m.get("content", "")).split()) for m in body["messages"]) + len(
        str(body.get("system", "")).split()
    )


@dataclass
class Batch:
    id: str
    api: str  # openai | anthropic
    lines: list[dict[str, Any]]  # OpenAI: JSONL lines; Anthropic: {custom_id, params}
    polls: int = 0
    files: dict[str, str] = field(default_factory=dict)  # output / error → file id


class MockBatchServer(MockServer):
    def __init__(self, **faults: Any) -> None:
        self.statuses = list(STEPS)
        self.fail_when: dict[str, str] = {}  # needle in a request → error (http status or code)
        self.ran = 0  # with an expired/cancelled end: how many requests got results
        self.no_score_at: float | None = None  # judge prompts at this temperature get no score
        self.poll_errors = 0  # the next this many polls answer 503 (a flaky API)
        super().__init__(**faults)

    def reset(self) -> None:
        super().reset()
        self.batches: dict[str, Batch] = {}
        self.files: dict[str, str] = {}
        self.calls: Counter[str] = Counter()  # upload, create, poll, download
        self.seen_statuses: list[str] = []
        self.auth: list[dict[str, str]] = []
        self._ids = itertools.count(1)

    def stats(self) -> dict[str, Any]:
        sizes = [len(b.lines) for b in self.batches.values()]
        return {**super().stats(), "batch_calls": dict(self.calls), "batch_sizes": sizes}

    def batch_calls(self) -> int:
        return sum(self.calls.values())

    # ---- shared ----------------------------------------------------------------------------
    def _status(self, b: Batch) -> str:
        word = self.statuses[min(b.polls, len(self.statuses) - 1)]
        b.polls += 1
        self.seen_statuses.append(word)
        return word

    def _outcome(self, i: int, messages: list[dict[str, Any]]) -> str:
        """'ok', an error (a needle's value), or 'unfinished' for request i of a batch."""
        end = self.statuses[-1]
        if end in ("expired", "cancelled") and i >= self.ran:
            return "unfinished"
        text = json.dumps(messages)
        return next((v for k, v in self.fail_when.items() if k in text), "ok")

    def _note(self, request: web.Request, what: str) -> None:
        self.calls[what] += 1
        h = request.headers
        self.auth.append({k: h[k] for k in ("Authorization", "x-api-key", "anthropic-version") if k in h})

    # ---- OpenAI ----------------------------------------------------------------------------
    async def _upload(self, request: web.Request) -> web.Response:
        self._note(request, "upload")
        form = await request.post()
        assert form["purpose"] == "batch"
        fid = f"file-{next(self._ids)}"
        self.files[fid] = form["file"].file.read().decode()  # type: ignore[union-attr]
        return web.json_response({"id": fid, "object": "file", "purpose": "batch"})

    async def _create(self, request: web.Request) -> web.Response:
        self._note(request, "create")
        body = await request.json()
        assert body["endpoint"] == "/v1/chat/completions" and body["completion_window"] == "24h"
        lines = [json.loads(x) for x in self.files[body["input_file_id"]].splitlines() if x.strip()]
        b = Batch(f"batch_{next(self._ids)}", "openai", lines)
        self.batches[b.id] = b
        return web.json_response(self._openai(b, "validating"))

    async def _get(self, request: web.Request) -> web.Response:
        """Either provider's poll: one step along `statuses`, in that provider's shape."""
        self._note(request, "poll")
        if self.poll_errors:
            self.poll_errors -= 1
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        b = self.batches[request.match_info["id"]]
        shape = self._openai if b.api == "openai" else self._anthropic
        return web.json_response(shape(b, self._status(b)))

    def _openai(self, b: Batch, status: str) -> dict[str, Any]:
        n = len(b.lines)
        ended = status in ("completed", "expired", "cancelled")
        if ended and not b.files:
            self._openai_files(b)
        done = n if ended else 0
        bad = [self._outcome(i, x["body"]["messages"]) != "ok" for i, x in enumerate(b.lines)]
        failed = sum(bad) if ended else 0
        errors = {"object": "list", "data": [{"code": "invalid", "message": "mock says no", "line": 1}]}
        return {
            "id": b.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "status": status,
            "errors": errors if status == "failed" else None,
            "output_file_id": b.files.get("output"),
            "error_file_id": b.files.get("error"),
            "request_counts": {"total": n, "completed": done - failed, "failed": failed},
        }

    def _openai_files(self, b: Batch) -> None:
        out, err = [], []
        for i, line in enumerate(b.lines):
            body, cid = line["body"], line["custom_id"]
            outcome = self._outcome(i, body["messages"])
            if outcome == "unfinished":
                code = "batch_expired" if self.statuses[-1] == "expired" else "batch_cancelled"
                err.append(
                    {"custom_id": cid, "response": None, "error": {"code": code, "message": "not run"}}
                )
            elif outcome not in ("ok", "empty"):
                bad = {"status_code": int(outcome), "body": {"error": {"message": f"mock error {outcome}"}}}
                err.append({"custom_id": cid, "response": bad, "error": None})
            else:  # "empty": a 200 whose content is ""
                text = "" if outcome == "empty" else reply_text(body, cid[:6], self.no_score_at)
                usage = {"prompt_tokens": words(body), "completion_tokens": len(text.split())}
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
                resp = {"status_code": 200, "body": {"choices": [choice], "usage": usage}}
                out.append({"custom_id": cid, "response": resp, "error": None})
        for name, rows in (("output", out), ("error", err)):
            if rows:
                fid = f"file-{next(self._ids)}"
                self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows)
                b.files[name] = fid

    async def _content(self, request: web.Request) -> web.Response:
        self._note(request, "download")
        return web.Response(text=self.files[request.match_info["id"]])

    # ---- Anthropic ---------------------------------------------------------------------------
    async def _a_create(self, request: web.Request) -> web.Response:
        self._note(request, "create")
        reqs = (await request.json())["requests"]
        b = Batch(f"msgbatch_{next(self._ids)}", "anthropic", reqs)
        self.batches[b.id] = b
        return web.json_response(self._anthropic(b, "in_progress"))

    def _anthropic(self, b: Batch, status: str) -> dict[str, Any]:
        word = _ANTHROPIC.get(status, "in_progress")
        counts = Counter({"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
        for i, r in enumerate(b.lines):
            kind = self._a_kind(i, r) if word == "ended" else "processing"
            counts[kind] += 1
        url = f"http://127.0.0.1:{self.port}/v1/messages/batches/{b.id}/results"
        return {
            "id": b.id,
            "type": "message_batch",
            "processing_status": word,
            "request_counts": dict(counts),
            "results_url": url if word == "ended" else None,
        }

    def _a_kind(self, i: int, r: dict[str, Any]) -> str:
        outcome = self._outcome(i, r["params"]["messages"])
        if outcome == "unfinished":
            return "expired" if self.statuses[-1] == "expired" else "canceled"
        return "succeeded" if outcome == "ok" else "errored"

    async def _a_results(self, request: web.Request) -> web.Response:
        self._note(request, "download")
        b = self.batches[request.match_info["id"]]
        rows = []
        for i, r in enumerate(b.lines):
            kind = self._a_kind(i, r)
            result: dict[str, Any] = {"type": kind}
            if kind == "succeeded":
                text = reply_text(r["params"], r["custom_id"][:6], self.no_score_at)
                usage = {"input_tokens": words(r["params"]), "output_tokens": len(text.split())}
                content = [{"type": "text", "text": text}]
                result["message"] = {
                    "type": "message",
                    "role": "assistant",
                    "content": content,
                    "usage": usage,
                }
            elif kind == "errored":
                err = {"type": "invalid_request_error", "message": "mock says no"}
                result["error"] = {"type": "error", "error": err}
            rows.append({"custom_id": r["custom_id"], "result": result})
        return web.Response(text="".join(json.dumps(x) + "\n" for x in rows))

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post("/v1/files", self._upload)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches/{id}", self._get)
        app.router.add_get("/v1/files/{id}/content", self._content)
        app.router.add_post("/v1/messages/batches", self._a_create)
        app.router.add_get("/v1/messages/batches/{id}", self._get)
        app.router.add_get("/v1/messages/batches/{id}/results", self._a_results)
        return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--in-progress-polls", type=int, default=1, help="polls a batch stays in_progress")
    a = ap.parse_args()
    server = MockBatchServer()
    server.statuses = ["validating", *["in_progress"] * a.in_progress_polls, "finalizing", "completed"]
    serve_forever(server, a.port)


if __name__ == "__main__":
    main()
