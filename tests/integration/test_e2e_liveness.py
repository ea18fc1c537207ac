"""End to end: dead means dead. The real daemon and the real trainer while someone deletes
or replaces ``training.lock``; and prepare clearing what a verified archive holds."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import protocol
from tests.daemon_helpers import wait_until
from tests.e2e_helpers import (
    Harness,
    checkpoints,
    events,
    finished,
    make_e2e_workspace,
    manifest_of,
    wait_event,
    wait_mid_training,
)
from tests.trainer_helpers import run_trainer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
RUN = ("--total-episodes", "2000")
"""Far longer than the test needs (minutes): it is stopped by SIGTERM once the lock file was
deleted and replaced under it, so a fast machine cannot finish it before the refusals."""


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(make_e2e_workspace(tmp_path / "ws"))
    yield h
    h.close()


def open_in(pid: int, ws: Path) -> set[Path]:
    """The files under logs/ that process ``pid`` holds open (logs stay open for the whole
    run; a model's temporary file is open only while it is saved, then renamed)."""
    found = set()
    for fd in (Path("/proc") / str(pid) / "fd").iterdir():
        try:
            target = Path(os.readlink(fd))
        except OSError:
            continue
        if target.is_relative_to(ws / "logs"):
            found.add(target)
    return found


def retaken(lock: Path, session_id: str) -> bool:
    try:
        info = protocol.read_lock(lock, retry_s=0)
    except protocol.LockFileError:
        return False
    text = lock.read_text() if lock.exists() else ""
    held = protocol.lock_is_held(lock)
    return info is not None and info.session_id == session_id and held and text == info.to_json()


def refused_once(ws: Path, session_id: str) -> None:
    second = run_trainer(ws, timeout=120)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2, second.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
    assert str(ws / "training.lock") in lines[0]
    assert session_id in lines[0] or "pid" in lines[0]


def test_a_lock_file_deleted_or_replaced_under_a_live_trainer(harness: Harness) -> None:
    ws = harness.ws
    lock = ws / "training.lock"
    harness.daemon()
    trainer = harness.trainer(*RUN)
    sid = wait_mid_training(ws, trainer, timeout=120)
    held_open = open_in(trainer.proc.pid, ws)
    assert any(p.name == "training.log" for p in held_open)

    lock.unlink()  # rm training.lock
    began = time.monotonic()
    wait_until(lambda: retaken(lock, sid), 10, "the trainer to take its lock file again")
    deleted_s = time.monotonic() - began
    refused_once(ws, sid)

    doc = json.loads(lock.read_text())
    edited = ws / ".training.lock.swp"
    edited.write_text(json.dumps(doc, indent=2) + "\n")  # an editor's save: new file, rename
    os.replace(edited, lock)
    began = time.monotonic()
    wait_until(lambda: retaken(lock, sid), 10, "the trainer to take its lock file again")
    replaced_s = time.monotonic() - began
    refused_once(ws, sid)
    assert trainer.proc.poll() is None, "the run ended before the refusals were checked"

    trainer.proc.send_signal(signal.SIGTERM)  # the run ends the ordinary way: saved, stopped
    code, err = trainer.finish(120)
    assert code == 128 + signal.SIGTERM, err[-3000:]
    assert err.count("took it again") == 2
    done = wait_event(ws, "ArchiveCompleted", timeout=60, session_id=sid, reason="post_training")
    assert events(ws, "SessionAbandoned") == []
    assert events(ws, "SessionStopped", session_id=sid, outcome="interrupted")
    assert len(events(ws, "SessionStarted")) == 1  # the refused trainers were never sessions
    held = {m.path for m in manifest_of(ws, done.data["name"]).members}
    for path in held_open:  # nothing it had open was removed, and the archive holds it
        assert path.exists(), path
        assert path.relative_to(ws).as_posix() in held
    print(f"lock file taken again {deleted_s:.2f} s after rm, {replaced_s:.2f} s after a save")
    assert deleted_s < 5 and replaced_s < 5


def test_prepare_clears_archived_checkpoints_and_backups_after_two_sessions(
    harness: Harness,
) -> None:
    ws = harness.ws
    (ws / "models/backups").mkdir(parents=True)
    (ws / "models/backups/memory_efficient_model_final_20260101_000000.zip").write_bytes(b"old")
    (ws / "root_ckpt.pth").write_bytes(b"a root checkpoint")
    config_before = {p.name: p.read_bytes() for p in (ws / "config").iterdir()}
    harness.daemon()

    finished(harness.trainer())
    first = json.loads((ws / "training.lock").read_text())["session_id"]
    wait_event(ws, "ArchiveCompleted", session_id=first, reason="post_training")
    pre1 = wait_event(ws, "ArchiveCompleted", session_id=first, reason="pre_training")
    assert "models/backups/memory_efficient_model_final_20260101_000000.zip" in {
        m.path for m in manifest_of(ws, pre1.data["name"]).members
    }
    assert not (ws / "models/backups/memory_efficient_model_final_20260101_000000.zip").exists()
    first_checkpoints = checkpoints(ws)
    assert first_checkpoints and all(first in p.name for p in first_checkpoints)

    finished(harness.trainer())
    second = json.loads((ws / "training.lock").read_text())["session_id"]
    assert second != first
    prepared = wait_event(ws, "WorkspacePrepared", session_id=second)
    assert prepared.data["removed"] >= len(first_checkpoints)
    wait_event(ws, "ArchiveCompleted", session_id=second, reason="post_training")

    assert checkpoints(ws) and all(second in p.name for p in checkpoints(ws))
    backups = sorted((ws / "models/backups").iterdir())
    assert len(backups) == 1  # the first session's final model, moved by the second
    assert (ws / "models/memory_efficient_model_final.zip").is_file()
    assert (ws / "root_ckpt.pth").read_bytes() == b"a root checkpoint"
    assert {p.name: p.read_bytes() for p in (ws / "config").iterdir()} == config_before
    post1 = events(ws, "ArchiveCompleted", session_id=first, reason="post_training")[0]
    kept = {m.path for m in manifest_of(ws, post1.data["name"]).members}
    assert {p.relative_to(ws).as_posix() for p in first_checkpoints} <= kept
