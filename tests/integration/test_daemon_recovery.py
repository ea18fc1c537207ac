"""The daemon against a surprising archive folder or lock file: it records, it never dies."""

from __future__ import annotations

import json
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest

from daemon import archive as engine
from tests.daemon_helpers import (
    PYTHON,
    REPO,
    DaemonProcess,
    FakeTrainer,
    NotifySocket,
    make_daemon_workspace,
    run_dying_trainer,
    workspace_id,
)

pytestmark = pytest.mark.timeout(120)


def _spoil_manifest(path: Path, **member_fields: object) -> None:
    """Rewrite the archive at ``path`` with its first member's manifest record changed."""
    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, data in members:
            if info.filename == "MANIFEST.json":
                doc = json.loads(data)
                doc["members"][0].update(member_fields)
                data = json.dumps(doc).encode()
            out.writestr(info, data)


def _cli(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "daemon", *args, "--workspace", str(ws)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_archive_with_a_malformed_manifest_is_bad_not_fatal(tmp_path: Path) -> None:
    """One MANIFEST.json with ``mtime_ns: null`` once crash-looped the daemon at start."""
    ws = make_daemon_workspace(tmp_path / "ws")
    bad = engine.create_archive(
        ws, ws / "archives", reason="post_training", session_id="old", workspace_id=workspace_id(ws)
    )
    _spoil_manifest(bad.path, mtime_ns=None)
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready()
        verified = daemon.wait_event("ArchiveVerified", name=bad.path.name)
        assert verified.data["ok"] is False
        assert "members[0].mtime_ns" in verified.data["problems"][0]
        trainer = FakeTrainer(ws)  # and it keeps serving
        assert trainer.start() is not None
        trainer.write_logs(1)
        trainer.stop()
        daemon.wait_event("ArchiveCompleted", reason="post_training", session_id=trainer.session_id)
        assert daemon.terminate() == 0
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.stop()
        notify.close()

    verify = _cli(ws, "verify", bad.path.name)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr + verify.stdout
    lines = verify.stdout.splitlines()
    assert lines[0].startswith(f"{bad.path.name}: FAILED")
    assert len(lines) == 2 and "members[0].mtime_ns" in lines[1], verify.stdout

    restore = _cli(ws, "restore", bad.path.name, "--to", str(tmp_path / "out"))
    assert restore.returncode == 1 and "Traceback" not in restore.stderr
    assert len(restore.stderr.splitlines()) == 1 and "mtime_ns" in restore.stderr


def test_a_trainer_dead_with_an_empty_lock_is_abandoned_and_archived(tmp_path: Path) -> None:
    """Killed between truncate and write: the lock is empty and nobody holds it."""
    ws = make_daemon_workspace(tmp_path / "ws")
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready()
        # the first half of write_in_place, and then the trainer dies: its flock goes with it
        # (a real process that exits: dead is checked by pid, start time and boot id)
        session_id, acked = run_dying_trainer(ws)
        assert acked
        daemon.wait_event("SessionAbandoned", session_id=session_id)
        done = daemon.wait_event("ArchiveCompleted", reason="abandoned")
        assert done.data["session_id"] == session_id
        assert len(daemon.events("LockFileInvalid")) == 1
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
        notify.close()
    manifest = engine.read_manifest(ws / "archives" / done.data["name"])
    assert manifest.member(f"logs/{session_id}_1.log") is not None


def test_adopting_unrecorded_archives_extends_the_start_timeout(tmp_path: Path) -> None:
    """Archives the log does not know are verified in full before READY=1; systemd's
    TimeoutStartSec must not run out meanwhile (a restart loop after a lost event log)."""
    ws = make_daemon_workspace(tmp_path / "ws")
    wid = workspace_id(ws)  # this workspace's archives, whose records a lost event log took
    made = [
        engine.create_archive(ws, ws / "archives", reason="manual", workspace_id=wid).path.name
        for _ in range(2)
    ]
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready()
        messages = notify.poll()
        ready = next(i for i, m in enumerate(messages) if m.get("READY") == "1")
        extends = [i for i, m in enumerate(messages) if "EXTEND_TIMEOUT_USEC" in m]
        assert len(extends) >= len(made) and max(extends) < ready
        assert {messages[i]["EXTEND_TIMEOUT_USEC"] for i in extends} == {"60000000"}
        for name in made:
            assert daemon.has("ArchiveCompleted", name=name) is not None
    finally:
        daemon.stop()
        notify.close()


def test_sighup_refuses_a_new_archive_dir_and_keeps_archiving_into_the_old(
    tmp_path: Path,
) -> None:
    ws = make_daemon_workspace(tmp_path / "ws")
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready()
        config = ws / "config/config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "archive_dir": "other"}))
        daemon.proc.send_signal(signal.SIGHUP)
        rejected = daemon.wait_event("ConfigRejected")
        assert "archive_dir cannot change" in rejected.data["error"]
        trainer = FakeTrainer(ws)
        assert trainer.start() is not None
        trainer.stop()
        done = daemon.wait_event("ArchiveCompleted", session_id=trainer.session_id)
        assert (ws / "archives" / done.data["name"]).is_file()
        assert not (ws / "other").exists()
        assert daemon.has("ConfigReloaded") is None
    finally:
        daemon.stop()
        notify.close()
