"""OS errors at the edges: a read-only archive folder (a real read-only bind mount), a lock
file nobody may write, an ack that cannot be written. Real daemon, real trainer, as root.

Each case ends in a named event with its cause in the daemon (which keeps running) and
in one line with exit 1 or 2 from the commands; a prepare that cannot succeed answers
the trainer at once (``ready: false`` with the reason), and the trainer goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from daemon import protocol
from tests.daemon_helpers import REPO, wait_until
from tests.e2e_helpers import Harness, events, make_e2e_workspace, wait_event

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

if os.geteuid() != 0:
    pytest.skip("read-only bind mounts need root", allow_module_level=True)


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``mount --bind X X && mount -o remount,bind,ro X`` for the block (skip if refused)."""
    done = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def previous_session(ws: Path) -> None:
    """Logs and a model of an earlier session: what a pre-training archive must hold."""
    (ws / "logs" / "trades").mkdir(parents=True, exist_ok=True)
    (ws / "logs" / "training.log").write_text("previous session\n" * 100)
    (ws / "models").mkdir(exist_ok=True)
    (ws / "models" / "memory_efficient_model_final.zip").write_bytes(os.urandom(4_000))


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )


def test_read_only_archive_folder_fails_named_and_the_trainer_is_answered_at_once(
    tmp_path: Path,
) -> None:
    ws = make_e2e_workspace(tmp_path / "ws", retry_max_s=2)
    previous_session(ws)
    harness = Harness(ws)
    try:
        with read_only(ws / "archives"):
            daemon = harness.daemon(watchdog_usec=2_000_000)
            before = {p.relative_to(ws): p.read_bytes() for p in (ws / "logs").rglob("*.log")}
            trainer = harness.trainer()  # ack_timeout_s is the default 300 s
            code, output = trainer.finish(timeout=180)
            assert code == 0, output

            failed = wait_event(ws, "ArchiveFailed", reason="pre_training")
            assert "Read-only file system" in failed.data["error"], failed.data
            assert str(ws / "archives") in failed.data["error"]
            sid = failed.data["session_id"]
            acked = wait_event(ws, "SessionAcknowledged", session_id=sid)
            assert acked.data["ready"] is False and acked.data["reason"] == failed.data["error"]
            started = events(ws, "SessionStarted", session_id=sid)[0]
            assert (ts(acked.ts) - ts(started.ts)).total_seconds() < 5, "the trainer was kept"
            ack = protocol.read_ack(protocol.ack_path(ws / "training.lock"))
            assert ack is not None and ack.ready is False and ack.reason == failed.data["error"]
            assert "could not archive and prepare the workspace" in output
            assert "Read-only file system" in output
            assert "no acknowledgement" not in output
            # nothing was removed for a prepare that made no archive
            for rel, data in before.items():
                assert (ws / rel).read_bytes().startswith(data), rel
            assert events(ws, "WorkspacePrepared") == []

            # the post-training archive fails the same named way, and the daemon lives on
            post = wait_event(ws, "ArchiveFailed", session_id=sid, reason="post_training")
            assert "Read-only file system" in post.data["error"]
            assert daemon.alive()
            daemon.keeps_pinging()

            # a command says so in one line, exit 1, no traceback
            done = cli("-m", "daemon", "archive", "--workspace", str(ws))
            assert done.returncode == 1, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "Read-only file system" in lines[0], done.stderr
        # room again (the mount is gone): the session's archive is made by itself
        wait_event(ws, "ArchiveCompleted", session_id=sid, reason="post_training", timeout=60)
        assert daemon.alive()
    finally:
        harness.close()


def test_a_lock_file_nobody_may_write_refuses_the_trainer_in_one_line(tmp_path: Path) -> None:
    ws = make_e2e_workspace(tmp_path / "ws")
    lock = ws / "training.lock"
    lock.write_text("")
    before = sorted(str(p.relative_to(ws)) for p in ws.rglob("*"))
    with read_only(lock):
        done = cli("-m", "trainer", "--workspace", str(ws))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(lock) in lines[0] and "Read-only file system" in lines[0]
    assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*")) == before


def test_an_ack_that_cannot_be_written_is_a_named_event_and_the_daemon_lives(
    tmp_path: Path,
) -> None:
    """The lock's folder is read-only for the daemon; the trainer holds the lock through a
    writable alias of the same folder (the same inode, so the same flock)."""
    ws = make_e2e_workspace(tmp_path / "ws", lock_file="lockdir/training.lock")
    (ws / "lockdir").mkdir()
    alias = tmp_path / "alias"
    alias.mkdir()
    subprocess.run(["mount", "--bind", str(ws / "lockdir"), str(alias)], check=True)
    harness = Harness(ws)
    try:
        with read_only(ws / "lockdir"):
            daemon = harness.daemon()
            lock = protocol.TrainerLock(alias / "training.lock")
            info = protocol.LockInfo.new(archive=True)
            lock.acquire(info)
            failed = wait_event(ws, "AckFailed", session_id=info.session_id)
            assert "Read-only file system" in failed.data["error"]
            assert failed.data["path"] == str(ws / "lockdir" / "training.lock.ack")
            acked = wait_event(ws, "SessionAcknowledged", session_id=info.session_id)
            assert acked.data["ready"] is True
            lock.write(info.with_state("stopped", "completed"))
            lock.release()
            wait_event(ws, "SessionStopped", session_id=info.session_id)
            assert daemon.alive()
            assert [p.name for p in alias.iterdir()] == ["training.lock"]
            doc = json.loads((alias / "training.lock").read_text())
            assert doc["state"] == "stopped"
            wait_until(lambda: daemon.alive(), 5, "daemon alive")
    finally:
        harness.close()
        subprocess.run(["umount", "-l", str(alias)], check=False)


def test_prune_on_a_read_only_archive_folder_is_one_line_exit_1(tmp_path: Path) -> None:
    ws = make_e2e_workspace(tmp_path / "ws")
    previous_session(ws)
    for _ in range(2):
        done = cli("-m", "daemon", "archive", "--workspace", str(ws))
        assert done.returncode == 0, done.stderr
    config = ws / "config" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "keep_last": 1}))
    names = sorted(p.name for p in (ws / "archives").glob("*.zip"))
    assert len(names) == 2
    with read_only(ws / "archives"):
        done = cli("-m", "daemon", "prune", "--workspace", str(ws))
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Read-only file system" in lines[0], done.stderr
        assert "Traceback" not in done.stderr
        assert sorted(p.name for p in (ws / "archives").glob("*.zip")) == names
    assert events(ws, "ArchivePruned") == []


def test_commands_on_a_vanished_archive_folder_say_so_or_recreate_it(tmp_path: Path) -> None:
    ws = make_e2e_workspace(tmp_path / "ws")
    previous_session(ws)
    (ws / "archives").rmdir()
    for args in (("list",), ("status",), ("prune",), ("verify",)):
        done = cli("-m", "daemon", *args, "--workspace", str(ws))
        assert done.returncode in (0, 1), done.stderr
        assert "Traceback" not in done.stderr, (args, done.stderr)
    done = cli("-m", "daemon", "archive", "--workspace", str(ws))
    assert done.returncode == 0, done.stderr
    assert len(list((ws / "archives").glob("*.zip"))) == 1
