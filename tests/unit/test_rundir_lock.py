"""The run dir lock (selfalign/rundir_lock.py) and the interrupt handling of aio.run: a dir held
by another process is refused with its pid, a leftover file of a dead process is not a lock, the
in-process API takes the lock too, and a signal during aio.run cancels every task and raises
Interrupted (exit 130 / 143) with nothing left pending."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FIXTURES, ROOT

from selfalign import aio, rundir_lock
from selfalign.errors import ConfigError, Interrupted
from selfalign.rundir_lock import LOCK_FILE, RunDirLocked, acquire, holding, release

HOLD = (
    "import sys, time; from pathlib import Path; from selfalign.rundir_lock import acquire; "
    "acquire(Path(sys.argv[1])); print('held', flush=True); time.sleep(120)"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """Another process that holds tmp_path/run."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_dir_held_by_another_process_is_refused_with_its_pid(
    tmp_path: Path, holder: subprocess.Popen
) -> None:
    run_dir = tmp_path / "run"
    before = (run_dir / LOCK_FILE).read_text()
    with pytest.raises(RunDirLocked) as err:
        acquire(run_dir)
    assert err.value.exit_code == 2
    assert f"run dir {run_dir} is in use" in str(err.value) and f"pid {holder.pid} on " in str(err.value)
    assert (run_dir / LOCK_FILE).read_text() == before  # the holder's details are left as they were

    holder.kill()  # as kill -9 would: the OS drops the lock with the process
    holder.wait()
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == holder.pid  # a dead pid ...
    with holding(run_dir):  # ... is no lock
        assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_one_process_may_take_its_own_dir_again_and_the_last_release_empties_the_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "new" / "run"  # created by acquire
    acquire(run_dir)
    acquire(run_dir)  # the CLI's Hydra callback, then api.run_config
    release(run_dir)
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    release(run_dir)
    # (other tests in this process may hold their own dirs: an in-process CLI run keeps its lock)
    assert (run_dir / LOCK_FILE).read_text() == ""
    assert run_dir not in rundir_lock._HELD and run_dir.resolve() not in rundir_lock._HELD
    take = HOLD.replace("time.sleep(120)", "0")
    proc = subprocess.run([sys.executable, "-c", take, str(run_dir)], cwd=ROOT)
    assert proc.returncode == 0  # another process can take it now


def test_a_run_dir_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match=r"run dir .*afile/run: cannot create .*hydra.run.dir=DIR") as err:
        acquire(tmp_path / "afile" / "run")
    assert err.value.exit_code == 2


def test_the_api_takes_the_lock_before_writing(tmp_path: Path, holder: subprocess.Popen) -> None:
    from selfalign import api

    overrides = ["model=test", "pipeline=tiny", f"prompts.search_path=[{FIXTURES / 'prompts'}]"]
    with pytest.raises(RunDirLocked, match=f"pid {holder.pid} "):
        api.run(overrides, tmp_path / "run", config_dirs=[str(FIXTURES / "conf")])
    assert [p.name for p in (tmp_path / "run").iterdir()] == [LOCK_FILE]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_aio_run_cancels_every_task(sig: signal.Signals, code: int) -> None:
    unwound: list[int] = []
    pending: list[asyncio.Task] = []

    async def call(i: int) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            unwound.append(i)

    async def main() -> None:
        pending.extend(asyncio.ensure_future(call(i)) for i in range(5))  # e.g. calls in flight
        await asyncio.sleep(0)
        signal.raise_signal(sig)
        await asyncio.gather(*pending)

    before = signal.getsignal(sig)
    with pytest.raises(Interrupted) as err:
        aio.run(main())
    assert err.value.exit_code == code and err.value.signum == sig
    assert sorted(unwound) == [0, 1, 2, 3, 4] and all(t.cancelled() for t in pending)
    assert signal.getsignal(sig) is before  # the handler is the caller's again
    assert aio.run(asyncio.sleep(0, "next")) == "next"  # the loop still serves the next call


def test_a_program_with_its_own_handler_keeps_it() -> None:
    seen: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))

    async def main() -> str:
        signal.raise_signal(signal.SIGTERM)  # the program's handler answers, not aio.run's
        return "done"

    try:
        assert aio.run(main()) == "done" and seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)


def test_the_interrupt_line_says_how_to_get_back_into_the_run_dir() -> None:
    from selfalign.cli import _resume_line

    given = _resume_line(Path("/o/r"), ["pipeline=x", "hydra.run.dir=/o/r"])
    assert given == "interrupted; re-run the same command to resume (run dir /o/r)"
    # the default dir has the time in its name: the same command alone would start a new one
    default = _resume_line(Path("/o/x/t"), ["pipeline=x"])
    assert default == "interrupted; re-run the same command with hydra.run.dir=/o/x/t to resume"
    sweep = _resume_line(Path("/m/x/t/0"), ["-m", "pipeline=x", "temperature=0.1,0.2"])
    assert sweep == "interrupted; re-run the same command with hydra.sweep.dir=/m/x/t to resume"
