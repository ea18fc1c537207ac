"""The lock-file protocol module: documents, flock probes, in-place rewrites, acks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import protocol as p


def test_lock_info_round_trips_with_the_contract_fields():
    info = p.LockInfo.new(archive=True)
    doc = json.loads(info.to_json())
    assert list(doc) == [
        "protocol",
        "session_id",
        "pid",
        "host",
        "boot_id",
        "started_at",
        "archive",
        "state",
        "outcome",
        "start_time",  # additive: identifies the process beside pid and boot id
    ]
    assert doc["protocol"] == 1 and doc["state"] == "starting" and doc["outcome"] is None
    assert doc["start_time"] == p.read_start_time(os.getpid()) and doc["start_time"] > 0
    assert p.LockInfo.from_json(info.to_json()) == info
    stopped = info.with_state("stopped", "completed")
    assert p.LockInfo.from_json(stopped.to_json()).outcome == "completed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid JSON"),
        ("garbage", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"protocol": 1}', "missing field"),
        (
            '{"protocol": 1, "session_id": "s", "pid": "1", "host": "h", "boot_id": "b", '
            '"started_at": "t", "archive": true, "state": "starting"}',
            "'pid' must be int",
        ),
        (
            '{"protocol": 1, "session_id": "s", "pid": 1, "host": "h", "boot_id": "b", '
            '"started_at": "t", "archive": true, "state": "dancing"}',
            "'state' has invalid value",
        ),
        (
            '{"protocol": 2, "session_id": "s", "pid": 1, "host": "h", "boot_id": "b", '
            '"started_at": "t", "archive": true, "state": "starting"}',
            "unsupported protocol",
        ),
    ],
)
def test_bad_lock_documents_are_named(text, message):
    with pytest.raises(p.LockFileError, match=message):
        p.LockInfo.from_json(text)


def test_read_lock_retries_then_reports_garbage(tmp_path: Path):
    lock = tmp_path / "training.lock"
    assert p.read_lock(lock) is None
    lock.write_text("")
    ticks = iter(range(100))
    with pytest.raises(p.LockFileError):
        p.read_lock(lock, retry_s=3, clock=lambda: next(ticks), pause=lambda s: None)


def test_read_lock_sees_a_rewrite_that_lands_while_it_retries(tmp_path: Path):
    lock = tmp_path / "training.lock"
    lock.write_text("")
    info = p.LockInfo.new(archive=False)

    def pause(_: float) -> None:
        lock.write_text(info.to_json())

    assert p.read_lock(lock, pause=pause) == info


def _hold(path: Path, *, shared: bool = False) -> subprocess.Popen[str]:
    code = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        f"fcntl.flock(fd, fcntl.{'LOCK_SH' if shared else 'LOCK_EX'})\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_trainer_lock_is_exclusive_across_processes_and_rewritten_in_place(tmp_path: Path):
    lock = tmp_path / "training.lock"
    first = p.TrainerLock(lock)
    info = p.LockInfo.new(archive=True)
    first.acquire(info)
    inode = lock.stat().st_ino
    assert p.lock_is_held(lock)
    first.write(info.with_state("running"))
    assert lock.stat().st_ino == inode
    assert p.read_lock(lock) == info.with_state("running")
    code = (
        "import sys; from pathlib import Path; from daemon import protocol as p\n"
        "try:\n"
        f"    lock = p.TrainerLock(Path({str(lock)!r}), retry_s=0.3)\n"
        "    lock.acquire(p.LockInfo.new(archive=True))\n"
        "except p.LockHeldError as e:\n"
        "    print(e); sys.exit(2)\n"
    )
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert second.returncode == 2
    assert "another training session holds the lock" in second.stdout
    assert info.session_id in second.stdout
    assert p.read_lock(lock) == info.with_state("running")  # the refused one wrote nothing
    first.release()
    assert not p.lock_is_held(lock)


def test_a_killed_holder_leaves_a_stale_lock(tmp_path: Path):
    lock = tmp_path / "training.lock"
    lock.write_text(p.LockInfo.new(archive=True).to_json())
    holder = _hold(lock)
    assert p.lock_is_held(lock)
    assert not p.is_stale(p.read_lock(lock), held=True)
    holder.kill()
    holder.wait()
    assert not p.lock_is_held(lock)
    assert p.is_stale(p.read_lock(lock), held=False)
    stopped = p.LockInfo.new(archive=True).with_state("stopped", "completed")
    assert not p.is_stale(stopped, held=False)


def test_daemon_alive_follows_the_daemon_lock(tmp_path: Path):
    assert not p.daemon_alive(tmp_path)
    path = p.daemon_lock_path(tmp_path)
    with p.held_exclusively(path):
        assert p.daemon_alive(tmp_path)
        with pytest.raises(p.LockHeldError), p.held_exclusively(path):
            pass
    assert not p.daemon_alive(tmp_path)


def test_probing_creates_nothing(tmp_path: Path):
    assert not p.lock_is_held(tmp_path / "training.lock")
    assert not p.daemon_alive(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_ack_is_written_atomically_and_awaited(tmp_path: Path):
    lock = tmp_path / "training.lock"
    assert p.wait_for_ack(lock, "s1", 0.0) is None
    p.write_ack(lock, p.Ack(session_id="other", ready=True, archive=None))
    assert p.wait_for_ack(lock, "s1", 0.0) is None  # someone else's ack is not ours
    p.write_ack(lock, p.Ack(session_id="s1", ready=True, archive="a.zip"))
    assert p.wait_for_ack(lock, "s1", 1.0) == p.Ack("s1", True, "a.zip")
    assert sorted(os.listdir(tmp_path)) == ["training.lock.ack"]


def test_wait_for_ack_gives_up_when_the_daemon_goes_away(tmp_path: Path):
    calls: list[int] = []

    def still_waiting() -> bool:
        calls.append(1)
        return len(calls) < 3

    ack = p.wait_for_ack(
        tmp_path / "training.lock", "s1", 60.0, still_waiting=still_waiting, pause=lambda s: None
    )
    assert ack is None and len(calls) == 3


def test_lock_path_comes_from_config_json(tmp_path: Path):
    assert p.resolve_lock_path(tmp_path) == tmp_path / "training.lock"
    cfg = tmp_path / "config" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"daemon": {"lock_file": "run/my.lock"}}))
    assert p.resolve_lock_path(tmp_path) == tmp_path / "run" / "my.lock"
    cfg.write_text(json.dumps({"lock_file": "/abs/x.lock"}))
    assert p.resolve_lock_path(tmp_path) == Path("/abs/x.lock")


def test_lock_path_expands_the_home_folder_as_the_daemon_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    cfg = tmp_path / "ws" / "config" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"daemon": {"lock_file": "~/x.lock"}}))
    assert p.resolve_lock_path(tmp_path / "ws") == home / "x.lock"


def test_protocol_imports_nothing_heavy():
    code = (
        "import sys, daemon.protocol\n"
        "heavy = {'watchdog', 'apscheduler', 'sqlite3', 'structlog', 'torch'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
