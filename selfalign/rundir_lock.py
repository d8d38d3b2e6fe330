"""One run per run directory: a run holds an exclusive OS lock (flock) on `.selfalign.lock` in
its run dir for its whole life. The lock dies with the process, so a run killed with kill -9
leaves nothing that blocks the next one (a leftover file naming a dead pid is not a lock). A
second run into a live dir stops with exit 2, naming the process that holds it, before it writes
anything there. Reading a live dir (`selfalign report`) takes no lock."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from selfalign.errors import ConfigError
from selfalign.redact import redact_text

LOCK_FILE = ".selfalign.lock"
# run dir (resolved) → [open lock file descriptor, holders]: the CLI takes the lock before Hydra
# starts the job, and the job (api.run_config) takes it again; flock would refuse a second
# open file of the same process, so a dir this process holds is counted, not locked twice.
_HELD: dict[Path, list[int]] = {}


class RunDirLocked(ConfigError):
    """Another live run holds this run dir (exit 2: choose another dir or wait)."""


def acquire(run_dir: Path) -> None:
    """Lock `run_dir` for this process (creating it), or raise RunDirLocked naming the holder."""
    key = run_dir.expanduser().resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return
    try:
        key.mkdir(parents=True, exist_ok=True)
        # O_CREAT without O_TRUNC: a refused run must not wipe the holder's details
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # e.g. a read-only dir, another user's, a path under a file
        raise _cannot(key, "create", exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirLocked(_refusal(key)) from None
    except OSError as exc:  # e.g. a file system without flock: say so rather than run unguarded
        os.close(fd)
        raise _cannot(key, "lock", exc) from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(_holder()).encode())
    if not _HELD:
        atexit.register(_release_all)  # a CLI run exits holding it: leave no pid behind
    _HELD[key] = [fd, 1]


def _cannot(run_dir: Path, what: str, exc: OSError) -> ConfigError:
    return ConfigError(
        f"run dir {run_dir}: cannot {what} {run_dir / LOCK_FILE} ({exc.strerror or exc}); "
        "choose another run dir (on a local disk) with hydra.run.dir=DIR (hydra.sweep.dir=DIR for -m)."
    )


def release(run_dir: Path) -> None:
    """Undo one acquire; the last one empties the file (no stale pid) and unlocks."""
    key = run_dir.expanduser().resolve()
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    os.ftruncate(held[0], 0)  # before unlocking: after it, the file is the next holder's
    os.close(held[0])  # closing the only descriptor releases the flock


def _release_all() -> None:
    for key, held in list(_HELD.items()):
        held[1] = 1
        release(key)


@contextmanager
def holding(run_dir: Path) -> Iterator[None]:
    acquire(run_dir)
    try:
        yield
    finally:
        release(run_dir)


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": redact_text(shlex.join(getattr(sys, "orig_argv", sys.argv)))[:500],  # no key on disk
    }


def _refusal(run_dir: Path) -> str:
    try:
        info = json.loads((run_dir / LOCK_FILE).read_text(encoding="utf-8"))
        who = f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):  # the holder has not written it yet
        who = "a process that is starting"
    return (
        f"run dir {run_dir} is in use by another selfalign run ({who}). One run at a time "
        "writes a run dir: wait for that run to end (re-running into the same dir then resumes "
        "it), or choose another dir with hydra.run.dir=DIR (hydra.sweep.dir=DIR for -m)."
    )
