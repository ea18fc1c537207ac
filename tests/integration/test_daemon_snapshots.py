"""The real daemon and its snapshots of the fold: it stores one every ``snapshot_every`` events and
at a clean stop, starts from it on the next run, and ignores (records, rebuilds) a damaged one."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from daemon.eventlog import events as ev
from daemon.eventlog.fold import State, fold
from daemon.eventlog.snapshot import check
from daemon.eventlog.store import EventStore
from tests.daemon_helpers import (
    PYTHON,
    REPO,
    DaemonProcess,
    FakeTrainer,
    NotifySocket,
    make_daemon_workspace,
    read_events,
)

pytestmark = pytest.mark.timeout(180)


def _status(ws: Path) -> dict[str, Any]:
    out = subprocess.run(
        [PYTHON, "-m", "daemon", "status", "--json", "--workspace", str(ws)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def _log(ws: Path) -> Path:
    return ws / ".daemon" / "events.sqlite3"


def _prefill(ws: Path, n: int) -> None:
    """History from earlier runs: a log written to many times, a checkpoint made and removed."""
    with EventStore.open(_log(ws)) as store:
        batch: list[ev.Event] = []
        for i in range(n):
            batch.append(ev.FileModified(path="logs/training.log", area="logs", size=i))
        batch += [
            ev.FileCreated(path="models/checkpoints/old.zip", area="models", size=5),
            ev.FileDeleted(path="models/checkpoints/old.zip", area="models"),
        ]
        store.append_many(batch)


def _run(ws: Path, tmp_path: Path, *, session: bool = False) -> ev.StoredEvent:
    """One daemon run to a clean stop; returns the SnapshotLoaded event of its start."""
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify)
    try:
        daemon.wait_ready(timeout=60)
        started = daemon.wait_event("DaemonStarted", pid=daemon.pid)
        loaded = [e for e in daemon.events("SnapshotLoaded") if e.seq < started.seq][-1]
        if session:
            trainer = FakeTrainer(ws)
            assert trainer.start() is not None
            trainer.write_logs(2)
            trainer.stop()
            daemon.wait_event("ArchiveCompleted", 60, session_id=trainer.session_id)
            daemon.wait_event("SessionStopped", session_id=trainer.session_id)
        assert daemon.terminate(60) == 0
        assert "Traceback" not in daemon.stderr()
    finally:
        daemon.stop()
        notify.close()
    return loaded


def _snapshots(ws: Path) -> list[tuple[int, str, str, int, str, bytes]]:
    conn = sqlite3.connect(_log(ws))
    try:
        return conn.execute("SELECT * FROM snapshots ORDER BY seq DESC").fetchall()
    finally:
        conn.close()


def _full_fold(ws: Path) -> State:
    return fold(State(), read_events(ws))


def _newest_snapshot_is_the_fold(ws: Path) -> int:
    with EventStore.open(_log(ws)) as store:
        snap = next(store.snapshots())
        assert snap.seq == store.last_seq()  # written at the clean stop, after DaemonStopped
        assert check(snap, store.event_at) == _full_fold(ws)
    return snap.seq


def test_a_restart_reads_the_snapshot_of_its_clean_stop(tmp_path: Path) -> None:
    ws = make_daemon_workspace(tmp_path / "ws", snapshot_every=100)
    _prefill(ws, 450)
    first = _run(ws, tmp_path, session=True)
    assert first.data == {"seq": 0, "replayed": 452}  # no snapshot yet: a full fold
    stopped_at = _newest_snapshot_is_the_fold(ws)
    assert len(_snapshots(ws)) == 2  # the periodic one and the one of the stop

    second = _run(ws, tmp_path)
    assert second.data == {"seq": stopped_at, "replayed": 0}
    assert read_events(ws, "SnapshotIgnored") == []
    _newest_snapshot_is_the_fold(ws)
    doc = _status(ws)
    full = _full_fold(ws)
    assert doc["last_seq"] == full.last_seq
    assert full.current_session is not None
    assert doc["session"]["session_id"] == full.current_session.session_id
    assert doc["session"]["state"] == "stopped"
    assert doc["tracked_files"] == len(full.files)


def test_a_damaged_or_deleted_snapshot_is_rebuilt_from_the_events(tmp_path: Path) -> None:
    ws = make_daemon_workspace(tmp_path / "ws", snapshot_every=100)
    _prefill(ws, 250)
    _run(ws, tmp_path, session=True)
    conn = sqlite3.connect(_log(ws), isolation_level=None)
    events_before = conn.execute("SELECT * FROM events").fetchall()
    conn.execute("UPDATE snapshots SET payload = zeroblob(length(payload))")  # both of them
    conn.close()
    expected = _status(ws)  # a CLI command skips the bad snapshots: still the full state
    assert expected["last_seq"] == len(events_before)

    loaded = _run(ws, tmp_path)
    ignored = read_events(ws, "SnapshotIgnored")
    assert len(ignored) == 2 and all("digest mismatch" in e.data["reason"] for e in ignored)
    assert loaded.data["seq"] == 0 and loaded.data["replayed"] == len(events_before)
    _newest_snapshot_is_the_fold(ws)

    conn = sqlite3.connect(_log(ws), isolation_level=None)
    assert conn.execute("SELECT * FROM events").fetchall()[: len(events_before)] == events_before
    conn.execute("DROP TABLE snapshots")  # a cache: deleting it loses nothing
    conn.close()
    doc = _status(ws)
    assert doc["session"] == expected["session"] and doc["pinned"] == expected["pinned"]
    assert doc["last_seq"] == _full_fold(ws).last_seq

    again = _run(ws, tmp_path)
    assert again.data["seq"] == 0 and again.data["replayed"] == doc["last_seq"]
    assert len(read_events(ws, "SnapshotIgnored")) == 2  # recorded once per bad snapshot
    _newest_snapshot_is_the_fold(ws)
