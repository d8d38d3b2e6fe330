"""`selfalign` with the embedded llama.cpp server replaced by the mock OpenAI-compatible server, in
the sweep's parent process only: `python tests/standin_server.py LOG ARGS…` is `selfalign ARGS…`.

The parent of a parallel sweep starts the shared servers (selfalign/parallel.py); here each one is
a MockServer that insists on the server's own random API key. Every start and stop is appended to
LOG. The job processes run the real code: they must find the server in the environment and send
to it; a job that started its own llama.cpp server instead would fail (model.path is no model).
$STANDIN_LATENCY_S sets the mock's latency per request.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from mockserver import MockServer


class StandIn:
    """LocalServer's interface (api_key, wait_ready → url, stop), served by a MockServer."""

    log: Path

    def __init__(self, cfg: Any, model: Path, log_path: Path) -> None:
        self.api_key = secrets.token_urlsafe(24)
        latency = float(os.environ.get("STANDIN_LATENCY_S", "0"))
        self.mock = MockServer(require_key=self.api_key, latency_s=latency).start()
        self.stopped = False
        self._note(f"start n_ctx={cfg.n_ctx} log={log_path.name}")

    def _note(self, line: str) -> None:
        with open(StandIn.log, "a") as f:
            f.write(line + "\n")

    def wait_ready(self, timeout_s: float) -> str:
        return self.mock.url.removesuffix("/v1")

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self._note(f"stop requests={self.mock.requests} ok={self.mock.outcomes['ok']}")
            self.mock.stop()


def main() -> None:
    from selfalign.cli import entry
    from selfalign.llm import shared

    StandIn.log = Path(sys.argv.pop(1))
    shared.LocalServer = StandIn  # type: ignore[misc,assignment]
    entry()


if __name__ == "__main__":
    main()
