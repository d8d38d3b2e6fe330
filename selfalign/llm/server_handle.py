"""ServerHandle: the one handle on an embedded llama.cpp server (llm/local.py), whoever owns it.

A run that starts the server owns it (`owner` is the LocalServer, stopped with the client); a
job of a parallel sweep (llm/shared.py) and a Ray worker (executors/ray_worker.py) borrow one
that another process started (no owner: stop() does nothing, that process stops it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class ServerHandle:
    url: str  # http://127.0.0.1:PORT, without /v1
    api_key: str  # the server's per-run key (never in argv, a file or the cache identity)
    model: str = ""  # the GGUF file it serves ("" when it is the embedded one)
    owner: Any = dataclasses.field(default=None, repr=False)  # the LocalServer, when ours

    def borrowed(self) -> ServerHandle:
        """The same server for another process (picklable, and stopping it stops nothing)."""
        return ServerHandle(self.url, self.api_key, self.model)

    def stop(self) -> None:
        if self.owner is not None:
            self.owner.stop()
