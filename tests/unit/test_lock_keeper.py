"""The trainer's lock survives what people do to the file: rm, an editor's save, a second
trainer in the window between; and a lock file naming a live trainer refuses a start."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import protocol as p
from daemon.protocol.document import read_boot_id, read_start_time
from daemon.protocol.trainer_lock import flock_holders
from tests.trainer_helpers import wait_until


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[p.TrainerLock, p.LockInfo, list[str]]]:
    """A trainer's lock on ``tmp_path/training.lock``, guarded, with its keeper running."""
    lock = p.TrainerLock(tmp_path / "training.lock", guard=tmp_path)
    info = p.LockInfo.new(archive=True).with_state("running")
    lock.acquire(info)
    reports: list[str] = []
    with lock, p.LockKeeper(lock, report=reports.append, interval_s=0.05):
        yield lock, info, reports


def ours_again(lock: p.TrainerLock, info: p.LockInfo) -> bool:
    try:
        return p.read_lock(lock.path, retry_s=0) == info and p.lock_is_held(lock.path)
    except p.LockFileError:
        return False


def second_trainer(workspace: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from pathlib import Path; from daemon import protocol as p\n"
        "ws = Path(sys.argv[1])\n"
        "try:\n"
        "    lock = p.TrainerLock(ws / 'training.lock', guard=ws, retry_s=0.3)\n"
        "    lock.acquire(p.LockInfo.new(archive=True))\n"
        "except p.LockHeldError as e:\n"
        "    print(e); sys.exit(2)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(workspace)], capture_output=True, text=True, timeout=60
    )


def test_a_deleted_lock_file_is_taken_again(held: tuple[p.TrainerLock, p.LockInfo, list[str]]):
    lock, info, reports = held
    lock.path.unlink()
    wait_until("taken again", lambda: ours_again(lock, info) and reports, timeout=5)
    assert reports == ["retaken"]
    lock.write(info.with_state("stopped", "completed"))  # later writes go to the new file
    assert p.read_lock(lock.path) == info.with_state("stopped", "completed")


def test_an_editor_save_is_taken_again(held: tuple[p.TrainerLock, p.LockInfo, list[str]]):
    lock, info, reports = held
    edited = lock.path.with_name(".training.lock.swp")
    edited.write_text(info.to_json().replace('"running"', '"stopped"'))
    os.replace(edited, lock.path)  # write a new file, rename it over: the flock stays behind
    wait_until("taken again", lambda: ours_again(lock, info) and reports, timeout=5)
    assert reports == ["retaken"]


def test_a_second_trainer_is_refused_even_while_the_file_is_gone(tmp_path: Path) -> None:
    lock = p.TrainerLock(tmp_path / "training.lock", guard=tmp_path)
    info = p.LockInfo.new(archive=True)
    lock.acquire(info)
    with lock:  # no keeper: the window before the file is taken again, held open
        lock.path.unlink()
        refused = second_trainer(tmp_path)
        assert refused.returncode == 2 and len(refused.stdout.splitlines()) == 1
        assert str(lock.path) in refused.stdout and f"pid {os.getpid()}" in refused.stdout
        assert not lock.path.exists()  # the refused one created nothing
        assert flock_holders(tmp_path) == [os.getpid()]
        assert lock.check() == "retaken" and ours_again(lock, info)
        refused = second_trainer(tmp_path)
        assert refused.returncode == 2 and info.session_id in refused.stdout
        lock.write(info.with_state("stopped", "completed"))
    assert second_trainer(tmp_path).returncode == 0  # once the first is gone, a new one starts


def test_a_lock_file_naming_a_live_trainer_refuses_a_start(tmp_path: Path) -> None:
    """A trainer without the guard (an older one) whose file was replaced is not overrun."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = dataclasses.replace(
            p.LockInfo.new(archive=True).with_state("running"),
            pid=sleeper.pid,
            boot_id=read_boot_id(),
            start_time=read_start_time(sleeper.pid),
        )
        (tmp_path / "training.lock").write_text(live.to_json())  # nobody holds its flock
        refused = second_trainer(tmp_path)
        assert refused.returncode == 2 and live.session_id in refused.stdout
        assert p.read_lock(tmp_path / "training.lock") == live
    finally:
        sleeper.kill()
        sleeper.wait()
    assert second_trainer(tmp_path).returncode == 0  # its process is gone: a stale lock


def test_someone_else_holding_the_new_file_is_reported_and_the_old_flock_kept(
    held: tuple[p.TrainerLock, p.LockInfo, list[str]],
) -> None:
    lock, info, reports = held
    lock.path.unlink()
    intruder = os.open(lock.path, os.O_RDWR | os.O_CREAT)  # created and locked before the keeper
    try:
        assert p.try_flock(intruder)
        wait_until("an error report", lambda: [r for r in reports if r != "retaken"], timeout=5)
        errors = [r for r in reports if r != "retaken"]
        assert len(errors) == 1 and "another process holds its lock" in errors[0]
        lock.write(info.with_state("stopped", "completed"))  # still works, on the old inode
    finally:
        os.close(intruder)
    final = info.with_state("stopped", "completed")
    wait_until("the lock file taken again", lambda: ours_again(lock, final), timeout=5)
