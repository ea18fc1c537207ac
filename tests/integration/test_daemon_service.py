"""The real daemon as a subprocess, driven through the lock protocol with a real NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from daemon import archive as engine
from daemon import protocol
from tests.daemon_helpers import (
    PYTHON,
    REPO,
    DaemonProcess,
    FakeTrainer,
    NotifySocket,
    make_daemon_workspace,
    start_hanging_trainer,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_daemon_workspace(tmp_path / "ws")


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


@pytest.fixture
def daemon(workspace: Path, notify: NotifySocket) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(workspace, notify, watchdog_usec=600_000)
    proc.wait_ready()
    yield proc
    proc.stop()


def _idle(notify: NotifySocket) -> bool:
    statuses = notify.statuses()
    return bool(statuses) and statuses[-1].startswith("idle")


def _archive_of(ws: Path, name: str) -> engine.Manifest:
    path = ws / "archives" / name
    assert engine.verify_archive(path).ok, f"{name} does not verify"
    return engine.read_manifest(path)


def test_ready_watchdog_status_and_sigterm(daemon: DaemonProcess, notify: NotifySocket) -> None:
    ready = next(m for m in notify.poll() if m.get("READY") == "1")
    assert ready["MAINPID"] == str(daemon.pid)
    assert daemon.has("Rescanned", trigger="start"), "READY came before the start-up rescan"
    notify.wait_for("WATCHDOG", n=3, timeout=10)  # every 0.3 s (half of WATCHDOG_USEC)
    assert any(s.startswith("idle") for s in notify.statuses())
    health = json.loads((daemon.workspace / ".daemon/health.json").read_text())
    assert health["pid"] == daemon.pid and health["watcher"] == "inotify"
    assert health["watcher_alive"] and health["scheduler_alive"]
    assert daemon.terminate() == 0
    notify.wait_for("STOPPING", timeout=5)
    assert daemon.has("DaemonStopped", pid=daemon.pid, reason="SIGTERM")
    assert not protocol.daemon_alive(daemon.workspace)


def test_abstract_notify_socket(workspace: Path, tmp_path: Path) -> None:
    sock = NotifySocket(tmp_path, abstract=True)
    proc = DaemonProcess(workspace, sock)
    try:
        proc.wait_ready()
        assert sock.env_value.startswith("@")
    finally:
        proc.stop()
        sock.close()
    assert proc.proc.returncode == 0


def test_second_daemon_is_refused(daemon: DaemonProcess) -> None:
    second = subprocess.run(
        [PYTHON, "-m", "daemon", "run", "--workspace", str(daemon.workspace)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "already runs" in lines[0] and str(daemon.pid) in lines[0]
    assert daemon.proc.poll() is None


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    ws = make_daemon_workspace(tmp_path / "ws", keep_last="five")
    result = subprocess.run(
        [PYTHON, "-m", "daemon", "run", "--workspace", str(ws)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "keep_last" in result.stderr
    assert not (ws / ".daemon/events.sqlite3").exists()


def test_pre_and_post_training_archives(daemon: DaemonProcess) -> None:
    ws = daemon.workspace
    trainer = FakeTrainer(ws)
    ack = trainer.start()
    assert ack is not None and ack.archive is not None, "the daemon did not acknowledge"
    pre = _archive_of(ws, ack.archive)
    assert (pre.reason, pre.session_id) == ("pre_training", trainer.session_id)
    assert {"logs/training.log", "logs/trades/trade_execution.log"} <= {m.path for m in pre.members}
    # prepared: the previous session's logs are gone (held by the archive), models stay
    assert not (ws / "logs/training.log").exists()
    assert (ws / "models/memory_efficient_model_final.zip").exists()
    prepared = daemon.wait_event("WorkspacePrepared", session_id=trainer.session_id)
    assert prepared.data["removed"] == 2
    daemon.wait_event("SessionRunning", session_id=trainer.session_id)

    written = trainer.write_logs(3)
    trainer.stop("completed")
    done = daemon.wait_event("ArchiveCompleted", reason="post_training")
    assert done.data["session_id"] == trainer.session_id
    post = _archive_of(ws, done.data["name"])
    assert post.session_id == trainer.session_id
    assert {f"logs/{p.name}" for p in written} <= {m.path for m in post.members}
    state = daemon.state()
    session = state.sessions[trainer.session_id]
    assert (session.state, session.outcome) == ("stopped", "completed")
    assert session.final_archive == done.data["name"]
    assert len(daemon.events("SessionStarted")) == 1


def test_abandoned_session_is_archived_within_10_s(daemon: DaemonProcess) -> None:
    proc, session_id = start_hanging_trainer(daemon.workspace)
    try:
        daemon.wait_event("SessionRunning", session_id=session_id)
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        done = daemon.wait_event("ArchiveCompleted", timeout=10, reason="abandoned")
        latency = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stdout is not None
        proc.stdout.close()
    assert latency < 10
    assert done.data["session_id"] == session_id
    abandoned = daemon.has("SessionAbandoned", session_id=session_id)
    assert abandoned is not None and abandoned.data["last_state"] == "running"
    assert _archive_of(daemon.workspace, done.data["name"]).reason == "abandoned"


def test_no_archive_session_is_recorded_only(daemon: DaemonProcess) -> None:
    trainer = FakeTrainer(daemon.workspace, archive=False)
    assert trainer.start() is None
    trainer.write_logs(1)
    trainer.stop("interrupted")
    daemon.wait_event("SessionStopped", session_id=trainer.session_id, outcome="interrupted")
    started = daemon.has("SessionStarted", session_id=trainer.session_id)
    assert started is not None and started.data["archive"] is False
    assert daemon.events("ArchiveStarted") == []
    assert (daemon.workspace / "logs/training.log").exists(), "nothing may be cleaned"


def test_garbage_lock_file_is_reported_once(daemon: DaemonProcess, notify: NotifySocket) -> None:
    lock = daemon.workspace / "training.lock"
    lock.write_text("{not json")
    daemon.wait_event("LockFileInvalid")
    pings = notify.count("WATCHDOG")
    notify.wait_for("WATCHDOG", n=pings + 4, timeout=10)  # alive, and several checks later...
    assert len(daemon.events("LockFileInvalid")) == 1  # ...still reported once
    lock.write_text("[]")
    wait_until(lambda: len(daemon.events("LockFileInvalid")) == 2, what="second report")
    lock.unlink()
    trainer = FakeTrainer(daemon.workspace)
    assert trainer.start() is not None  # and the protocol still works
    trainer.stop()
    daemon.wait_event("ArchiveCompleted", reason="post_training", session_id=trainer.session_id)


def test_session_while_daemon_was_down_is_archived_once(workspace: Path, tmp_path: Path) -> None:
    trainer = FakeTrainer(workspace)
    assert trainer.start() is None  # no daemon: no ack
    trainer.write_logs(2)
    trainer.stop()
    for i in range(2):  # the second start must not archive it again
        (tmp_path / f"n{i}").mkdir()
        notify = NotifySocket(tmp_path / f"n{i}")
        proc = DaemonProcess(workspace, notify)
        try:
            proc.wait_ready()
            proc.wait_event("ArchiveCompleted", session_id=trainer.session_id)
            wait_until(partial(_idle, notify), what="idle")
        finally:
            proc.stop()
            notify.close()
    finals = [e for e in proc.events("ArchiveCompleted") if e.data["reason"] == "post_training"]
    assert len(finals) == 1 and finals[0].data["session_id"] == trainer.session_id
    assert len(engine.list_archive_files(workspace / "archives")) == 1


def test_sighup_reloads_or_rejects_config(daemon: DaemonProcess) -> None:
    config = daemon.workspace / "config/config.json"
    good = json.loads(config.read_text())
    config.write_text(json.dumps({**good, "keep_last": -1}))
    daemon.proc.send_signal(signal.SIGHUP)
    rejected = daemon.wait_event("ConfigRejected")
    assert "keep_last" in rejected.data["error"]
    config.write_text(json.dumps({**good, "keep_last": 7}))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_event("ConfigReloaded")
    assert daemon.proc.poll() is None
    assert daemon.terminate() == 0
