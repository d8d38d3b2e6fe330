"""One embedded llama.cpp server for every job of a parallel sweep.

A sweep on a process launcher (joblib) runs each job in its own process, and each would start its
own server (~0.5 GB of weights and a KV cache each). Instead the sweep's parent process starts one
server per distinct server config before the jobs launch (selfalign/parallel.py) and lists them in
$SELFALIGN_SHARED_SERVERS (JSON: fingerprint → url and API key); the job processes inherit it, and
`start_local_client` connects to a listed server instead of spawning one. The key travels in the
environment, never in argv or a file, as for the server child itself (llm/local.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from selfalign.llm.config import ModelConfig
from selfalign.llm.local import LOG_NAME, SHARED_ENV, LocalServer, fingerprint, resolve_model_path

# This module is the table's writing side (the sweep's parent); the reading side, a job's
# lookup of its server, is in llm/local.py, so neither module imports the other.


def start(models: Iterable[ModelConfig], log_dir: Path) -> list[LocalServer]:
    """Start one server per distinct fingerprint (logs in log_dir) and publish them in $SHARED_ENV
    for the job processes started after this. If one fails to start, those already up are stopped."""
    servers: list[LocalServer] = []
    table: dict[str, dict[str, str]] = {}
    try:
        for cfg in models:
            model = resolve_model_path(cfg)
            key = fingerprint(cfg, model)
            if key in table:
                continue
            name = LOG_NAME if not servers else LOG_NAME.replace(".log", f"_{len(servers)}.log")
            server = LocalServer(cfg, model, log_dir / name)
            servers.append(server)
            table[key] = {"url": server.wait_ready(cfg.startup_timeout_s), "api_key": server.api_key}
    except BaseException:
        stop(servers)
        raise
    if table:
        os.environ[SHARED_ENV] = json.dumps(table)
    return servers


def stop(servers: list[LocalServer]) -> None:
    """Stop the servers and unpublish them (a later sweep in this process starts its own)."""
    for server in servers:
        server.stop()
    servers.clear()
    os.environ.pop(SHARED_ENV, None)
