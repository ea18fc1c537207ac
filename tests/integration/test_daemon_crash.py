"""SIGKILL the daemon at random moments while it archives a session; restart it; nothing is lost.

Every round runs a whole session (start, ack, logs, stop), then kills the daemon
at a random moment between the trainer's ``stopped`` and a little after the
archive would be done, and restarts it. In the end every session is archived
exactly once, every archive verifies and no temporary file remains.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from daemon import archive as engine
from daemon.archive.manifest import TEMP_RE
from daemon.eventlog.fold import FINAL_REASONS
from tests.archive_helpers import make_workspace
from tests.daemon_helpers import (
    FAST_CONFIG,
    DaemonProcess,
    FakeTrainer,
    NotifySocket,
    wait_until,
    workspace_id,
)

ROUNDS = 5


@pytest.mark.timeout(180)
def test_sigkill_during_archiving_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", text_mb=6, binary_mb=12, seed=7)
    (ws / "config/config.json").write_text(json.dumps(FAST_CONFIG))
    rng = random.Random(20261129)
    sessions: list[str] = []
    archive_s = 0.5
    daemon = DaemonProcess(ws)
    daemon.wait_ready()
    try:
        for _ in range(ROUNDS):
            trainer = FakeTrainer(ws)
            trainer.start()
            sessions.append(trainer.session_id)
            trainer.write_logs(2)
            trainer.stop()
            time.sleep(rng.uniform(0.0, archive_s * 1.5))  # a random moment, not a wait
            daemon.kill()
            daemon = DaemonProcess(ws)
            daemon.wait_ready()
            done = daemon.wait_event("ArchiveCompleted", timeout=60, session_id=trainer.session_id)
            archive_s = max(0.15, float(done.data["seconds"]))
    finally:
        daemon.stop()

    finals: Counter[str] = Counter()
    archives = engine.list_archive_files(ws / "archives")
    for path in archives:
        assert engine.verify_archive(path).ok, f"{path.name} does not verify"
        manifest = engine.read_manifest(path)
        if manifest.reason in FINAL_REASONS and manifest.session_id:
            finals[manifest.session_id] += 1
    assert finals == Counter(dict.fromkeys(sessions, 1)), "each session archived exactly once"
    leftovers = [p.name for p in (ws / "archives").iterdir() if TEMP_RE.match(p.name)]
    assert leftovers == []
    state = daemon.state()
    assert all(state.sessions[s].final_archive for s in sessions)
    assert state.pending_sessions() == []
    wait_until(lambda: not (ws / ".daemon/health.json").exists(), what="clean stop")


@pytest.mark.timeout(60)
def test_archive_renamed_but_unrecorded_is_adopted_not_repeated(tmp_path: Path) -> None:
    """The narrowest crash window: the archive got its final name, the log never heard of it."""
    ws = make_workspace(tmp_path / "ws", text_mb=0.2, binary_mb=0.2, seed=1)
    (ws / "config/config.json").write_text(json.dumps(FAST_CONFIG))
    trainer = FakeTrainer(ws)
    trainer.start()  # no daemon: the session runs unobserved
    trainer.stop()
    made = engine.create_archive(
        ws,
        ws / "archives",
        reason="post_training",
        session_id=trainer.session_id,
        workspace_id=workspace_id(ws),  # made by this workspace's daemon, which then crashed
    )
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready()  # READY=1 comes after recovery and the first decisions
        adopted = daemon.wait_event("ArchiveCompleted", name=made.name)
        assert adopted.data["session_id"] == trainer.session_id
        assert daemon.state().sessions[trainer.session_id].final_archive == made.name
    finally:
        daemon.stop()
        notify.close()
    assert daemon.events("ArchiveStarted") == []
    assert engine.list_archive_files(ws / "archives") == [made.path]


@pytest.mark.timeout(60)
def test_sigterm_during_an_archive_lets_it_finish_and_exits_0(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", text_mb=0.2, binary_mb=0.2, seed=3)
    (ws / "config/config.json").write_text(json.dumps(FAST_CONFIG))
    daemon = DaemonProcess(ws)
    try:
        daemon.wait_ready()
        trainer = FakeTrainer(ws)
        assert trainer.start() is not None
        with (ws / "logs/big.bin").open("wb") as f:  # ~1 s of archiving work
            for _ in range(150):
                f.write(os.urandom(1 << 20))
        trainer.stop()
        daemon.wait_event("ArchiveStarted", reason="post_training")
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
    done = daemon.has("ArchiveCompleted", reason="post_training", session_id=trainer.session_id)
    stopped = daemon.has("DaemonStopped", reason="SIGTERM")
    assert done is not None and stopped is not None and done.seq < stopped.seq
    assert engine.verify_archive(ws / "archives" / done.data["name"]).ok
