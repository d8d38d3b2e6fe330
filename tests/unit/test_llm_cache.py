"""ResponseCache: round trips, WAL, and several processes writing the same file at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from selfalign.llm.cache import ResponseCache


def test_roundtrip_and_miss(tmp_path: Path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert cache.get("k1") is None
    cache.put("k1", "m", "hello", {"prompt_tokens": 3})
    assert cache.get("k1") == ("hello", {"prompt_tokens": 3})
    cache.put("k1", "m", "again", {})  # a refresh overwrites
    assert cache.get("k1") == ("again", {})
    assert len(cache) == 1
    cache.close()
    assert ResponseCache(tmp_path / "c.sqlite").get("k1") == ("again", {})  # it persisted


def test_wal_mode(tmp_path: Path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert cache._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = textwrap.dedent("""
    import sys
    from selfalign.llm.cache import ResponseCache
    path, who, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = ResponseCache(path)
    for i in range(n):
        cache.put(f"{who}-{i}", "m", f"text {who} {i}", {"i": i})
        cache.put(f"shared-{i}", "m", "same", {})      # every process writes these too
        assert cache.get(f"{who}-{i}") == (f"text {who} {i}", {"i": i})
    print("done")
""")


def test_several_processes_share_one_file(tmp_path: Path):
    path = tmp_path / "shared.sqlite"
    n, procs = 400, 4
    root = Path(__file__).resolve().parents[2]
    running = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"p{j}", str(n)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for j in range(procs)
    ]
    for p in running:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "done"
    cache = ResponseCache(path)
    assert len(cache) == procs * n + n  # no write lost, no "database is locked"
    assert cache.get("p3-399") == ("text p3 399", {"i": 399})
