"""End to end: the real daemon and the real trainer, sessions in a row, kills and restarts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_helpers import wait_until
from tests.e2e_helpers import (
    LONG_RUN,
    Harness,
    all_archives_verify,
    checkpoints,
    events,
    final_archives,
    finished,
    lock_doc,
    make_e2e_workspace,
    manifest_of,
    member_json,
    session_of,
    status,
    wait_event,
    wait_mid_training,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def harness(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    config = getattr(request, "param", {})
    h = Harness(make_e2e_workspace(tmp_path / "ws", **config))
    yield h
    h.close()


def _summary_session(ws: Path, archive: str) -> str:
    return str(member_json(ws, archive, "logs/session_summary.json")["session_id"])


@pytest.mark.parametrize("harness", [{"keep_last": 2}], indirect=True)
def test_three_sessions_in_a_row_keep_the_newest_two(harness: Harness) -> None:
    ws = harness.ws
    daemon = harness.daemon()
    sessions: list[str] = []
    finals: list[str] = []
    for _ in range(3):
        err = finished(harness.trainer())
        assert "daemon acknowledged the session" in err
        sid = session_of(ws)
        done = wait_event(ws, "ArchiveCompleted", session_id=sid, reason="post_training")
        name = done.data["name"]
        # checked now: rotation will remove the oldest once the third exists
        assert _summary_session(ws, name) == sid
        manifest = manifest_of(ws, name)
        assert (manifest.session_id, manifest.reason) == (sid, "post_training")
        sessions.append(sid)
        finals.append(name)
    assert len(set(sessions)) == 3

    wait_event(ws, "ArchivePruned", name=finals[0])
    made = sorted(e.data["name"] for e in events(ws, "ArchiveCompleted"))
    kept = [p.name for p in all_archives_verify(ws)]
    assert kept == made[-2:] == finals[1:]
    for sid in sessions:
        assert len(final_archives(ws, sid)) == 1

    doc = status(ws)
    assert doc["daemon"]["running"] is True and doc["daemon"]["pid"] == daemon.pid
    assert doc["session"]["session_id"] == sessions[-1]
    assert doc["session"]["state"] == "stopped"
    assert doc["session"]["final_archive"] == finals[-1]
    assert doc["archives"] == 2


def test_trainer_killed_mid_training_is_archived_as_abandoned(harness: Harness) -> None:
    ws = harness.ws
    harness.daemon()
    trainer = harness.trainer(*LONG_RUN)
    sid = wait_mid_training(ws, trainer)
    trainer.proc.kill()
    killed_at = time.monotonic()
    done = wait_event(ws, "ArchiveCompleted", timeout=10, session_id=sid, reason="abandoned")
    assert time.monotonic() - killed_at < 10
    assert trainer.proc.wait(10) == -signal.SIGKILL
    assert events(ws, "SessionAbandoned", session_id=sid, last_state="running")
    manifest = manifest_of(ws, done.data["name"])
    held = {m.path for m in manifest.members}
    assert "logs/training.log" in held
    assert any(p.startswith("models/checkpoints/") for p in held), "the checkpoints were not kept"

    err = finished(harness.trainer())
    assert "daemon acknowledged the session" in err
    sid2 = session_of(ws)
    assert sid2 != sid
    done2 = wait_event(ws, "ArchiveCompleted", session_id=sid2, reason="post_training")
    assert _summary_session(ws, done2.data["name"]) == sid2
    assert [e.data["name"] for e in final_archives(ws, sid)] == [done.data["name"]]
    assert len(final_archives(ws, sid2)) == 1
    all_archives_verify(ws)


def test_session_without_a_daemon_is_archived_once_the_daemon_starts(harness: Harness) -> None:
    ws = harness.ws
    err = finished(harness.trainer())
    assert "no archiving daemon alive" in err
    sid = session_of(ws)
    assert events(ws, "SessionStarted") == []  # nobody watched

    first = harness.daemon()
    done = wait_event(ws, "ArchiveCompleted", session_id=sid, reason="post_training")
    assert _summary_session(ws, done.data["name"]) == sid
    assert events(ws, "SessionStopped", session_id=sid, outcome="completed")
    first.wait_idle()
    assert first.proc.terminate() == 0

    harness.daemon().wait_idle()  # a restart owes nothing more
    assert [e.data["name"] for e in final_archives(ws, sid)] == [done.data["name"]]
    assert [p.name for p in all_archives_verify(ws)] == [done.data["name"]]
    assert events(ws, "SessionAbandoned") == []


def test_daemon_restarted_mid_session_archives_it_once_at_its_stop(harness: Harness) -> None:
    ws = harness.ws
    first = harness.daemon()
    trainer = harness.trainer("--total-episodes", "6")  # 1,386 steps, a checkpoint every 64
    sid = wait_mid_training(ws, trainer)

    first.proc.kill()  # SIGKILL, in the middle of the session
    before = set(checkpoints(ws))
    wait_until(lambda: set(checkpoints(ws)) - before, 30, "a checkpoint while no daemon is up")
    os.kill(trainer.proc.pid, signal.SIGSTOP)  # hold the trainer mid-training while we restart
    assert trainer.proc.poll() is None
    doc = lock_doc(ws)
    assert doc is not None and doc["state"] == "running"
    unseen = sorted(set(checkpoints(ws)) - before)

    second = harness.daemon()
    second.wait_idle()
    for path in unseen:  # the start-up rescan found what was written while it was down
        assert events(ws, "FileCreated", path=path.relative_to(ws).as_posix())
    assert status(ws)["session"]["state"] == "running"
    assert second.proc.terminate() == 0  # SIGTERM this time

    third = harness.daemon()
    os.kill(trainer.proc.pid, signal.SIGCONT)
    finished(trainer)
    done = wait_event(ws, "ArchiveCompleted", session_id=sid, reason="post_training")
    third.wait_idle()
    assert [e.data["name"] for e in final_archives(ws, sid)] == [done.data["name"]]
    assert events(ws, "SessionAbandoned") == []
    assert events(ws, "SessionStopped", session_id=sid, outcome="completed")
    assert _summary_session(ws, done.data["name"]) == sid
    all_archives_verify(ws)
