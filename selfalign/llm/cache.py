"""Response cache: SQLite in WAL mode, content-addressed, shared by stages, pipelines and processes."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    meta TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class ResponseCache:
    """get/put of successful responses by cache key. Safe for several processes at once:
    WAL lets readers run beside one writer, and busy_timeout waits out a writer's lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        # busy_timeout first: switching to WAL takes a brief exclusive lock, and another
        # process opening the same file at that moment must wait, not fail.
        self._db.execute("PRAGMA busy_timeout=60000")
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a network filesystem without shared memory
            log.warning(
                "response cache %s: WAL unavailable (journal_mode=%s); several "
                "processes sharing it will be slower",
                self.path,
                mode,
            )
        # NORMAL in WAL mode never corrupts; a power cut can lose only the last few answers.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._warned = False

    def get(self, key: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute("SELECT text, meta FROM responses WHERE key=?", (key,)).fetchone()
        return (row[0], json.loads(row[1])) if row else None

    def put(self, key: str, model: str, text: str, meta: dict[str, Any]) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                    (key, model, text, json.dumps(meta), time.time()),
                )
            except sqlite3.OperationalError as exc:
                # The cache only saves work: a full disk or a lock held past busy_timeout
                # must not fail the run that already has its answer.
                if not self._warned:
                    log.warning(
                        "response cache %s: could not store an answer (%s); "
                        "the run goes on without caching it",
                        self.path,
                        exc,
                    )
                    self._warned = True

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
