"""Child process that runs xllamacpp's OpenAI-compatible server (`python -m selfalign.llm._serve`).

Native crashes stay in this process. It prints `LISTENING <url>` on stdout once the server is up,
sends its logs to stderr (the parent points that at run_dir/llama_server.log), and exits by itself
when the parent goes away: stdin is a pipe from the parent, and EOF on it means the parent died
(even by kill -9) or closed it on purpose. It also watches os.getppid() as a second guard.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time


def _watch_parent(parent: int) -> None:
    def on_eof() -> None:
        try:
            sys.stdin.buffer.read()  # blocks until the parent closes the pipe or dies
        finally:
            os._exit(0)  # the native server has no clean stop; the OS frees everything

    def on_reparent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=on_eof, daemon=True).start()
    threading.Thread(target=on_reparent, daemon=True).start()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-ctx", type=int, default=8192)
    ap.add_argument("--n-parallel", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--alias", default="local")
    a = ap.parse_args()
    _watch_parent(os.getppid())

    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = a.model
    params.model_alias = {a.alias}  # a set of names; a bare str would become its letters
    params.hostnames = ["127.0.0.1"]  # never reachable from another machine
    params.port = 0  # the OS picks a free port; listening_address reports it
    params.n_ctx = a.n_ctx
    params.n_parallel = a.n_parallel
    key = os.environ.pop("SELFALIGN_SERVER_KEY", "")
    if key:  # every route but /health needs `Authorization: Bearer <key>`
        params.api_keys = [key]
    params.cont_batching = True
    params.warmup = True
    if a.threads > 0:
        params.cpuparams.n_threads = a.threads
        params.cpuparams_batch.n_threads = a.threads
    print(
        json.dumps(
            {
                "event": "starting",
                "model": a.model,
                "n_ctx": a.n_ctx,
                "n_parallel": a.n_parallel,
                "threads": a.threads,
            }
        ),
        file=sys.stderr,
        flush=True,
    )
    server = xlc.Server(params)
    print(f"LISTENING {server.listening_address}", flush=True)
    while True:  # the server runs in its own threads; keep this process (and `server`) alive
        time.sleep(3600)


if __name__ == "__main__":
    main()
