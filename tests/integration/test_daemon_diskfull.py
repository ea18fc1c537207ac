"""A full disk under the workspace or under the event log: the daemon waits, it does not exit.

Real tmpfs mounts (root), a real daemon with a real notify socket and watchdog: the
disk is filled to the last byte while files appear in logs/, then freed. The daemon
keeps pinging, says "waiting for disk space" in STATUS= and the health file, and
afterwards the log holds DiskFull, every file event in the order the files came,
then DiskSpaceRecovered.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.eventlog.events import StoredEvent
from tests.archive_helpers import tmpfs
from tests.daemon_helpers import DaemonProcess, NotifySocket, make_daemon_workspace, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

if os.geteuid() != 0:
    pytest.skip("mounting a tmpfs needs root", allow_module_level=True)

FILES = 12


def fill(folder: Path) -> Path:
    """Write one file until the file system says ENOSPC; returns it (unlink it to free)."""
    filler = folder / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    chunk = b"\0" * (1 << 20)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: len(chunk) // 16 or 1]
    finally:
        os.close(fd)
    return filler


def read_log(path: Path) -> list[StoredEvent]:
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT seq, ts, type, schema, data FROM events ORDER BY seq"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()
    return [StoredEvent(s, ts, t, sc, json.loads(d)) for s, ts, t, sc, d in rows]


def health(ws: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((ws / ".daemon" / "health.json").read_text())
        return doc
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def running(ws: Path, notify: NotifySocket) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(ws, notify, watchdog_usec=1_000_000)
    try:
        yield daemon
    finally:
        daemon.stop()


def new_files_while_full(ws: Path, notify: NotifySocket, daemon: DaemonProcess) -> list[str]:
    """Empty files (an inode, no block) appear in logs/ one by one while the disk is full."""
    names = []
    for i in range(FILES):
        rel = f"logs/while_full_{i:02d}.log"
        (ws / rel).touch()
        names.append(rel)
        if i == 0:  # the first one's event hits the full disk: the wait begins
            wait_until(
                lambda: any("waiting for disk space" in s for s in notify.statuses()),
                30,
                "STATUS= waiting for disk space",
            )
    pings = notify.count("WATCHDOG")
    notify.wait_for("WATCHDOG", n=pings + 3, timeout=15)
    assert daemon.proc.poll() is None, daemon.stderr()
    return names


def check_caught_up(log: list[StoredEvent], names: list[str], mount: Path) -> None:
    types = [e.type for e in log]
    full = types.index("DiskFull")
    back = types.index("DiskSpaceRecovered")
    assert full < back
    assert str(mount) in log[full].data["path"] and log[full].data["since"]
    created = [e.data["path"] for e in log[full:back] if e.type == "FileCreated"]
    assert [p for p in created if p in names] == names, "file events lost or reordered"
    assert log[back].data["held"] == back - full - 1 and log[back].data["dropped"] == 0
    seqs = [e.seq for e in log]
    assert seqs == sorted(set(seqs))


@pytest.mark.parametrize("where", ["workspace", "event_log"])
def test_full_disk_for_a_few_seconds_daemon_waits_and_catches_up(
    tmp_path: Path, where: str
) -> None:
    ws = tmp_path / "ws"
    if where == "workspace":
        mount_cm = tmpfs(ws, "16m")
        config: dict[str, object] = {}
    else:
        mount_cm = tmpfs(ws / "evlog", "2m")
        config = {"event_log": "evlog/events.sqlite3"}
    with mount_cm as mount:
        make_daemon_workspace(ws, **config)
        log_path = ws / (
            "evlog/events.sqlite3" if where == "event_log" else ".daemon/events.sqlite3"
        )
        notify = NotifySocket(tmp_path)
        notify.drain_in_background()
        with running(ws, notify) as daemon:
            daemon.wait_ready()
            wait_until(lambda: any(s.startswith("idle") for s in notify.statuses()), 30, "idle")
            filler = fill(mount)
            names = new_files_while_full(ws, notify, daemon)
            if where == "event_log":  # the workspace's disk has room: the health file says why
                doc = wait_until(
                    lambda: (h := health(ws)) and h.get("disk_wait") and h, 15, "health wait"
                )
                assert "waiting for disk space" in str(doc["status"])
                assert doc["held_events"] >= 1
            filler.unlink()
            wait_until(
                lambda: "DiskSpaceRecovered" in [e.type for e in read_log(log_path)],
                30,
                "DiskSpaceRecovered",
            )
            wait_until(lambda: notify.statuses()[-1].startswith("idle"), 30, "idle again")
            check_caught_up(read_log(log_path), names, mount)
            assert daemon.proc.poll() is None
            assert daemon.terminate() == 0
        notify.close()
        assert read_log(log_path)[-1].type == "DaemonStopped"


def test_start_up_on_a_full_disk_is_degraded_not_a_crash_loop(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with tmpfs(ws, "16m") as mount:
        make_daemon_workspace(ws)
        log_path = ws / ".daemon" / "events.sqlite3"
        notify = NotifySocket(tmp_path)
        notify.drain_in_background()
        with running(ws, notify) as first:
            first.wait_ready()
            assert first.terminate() == 0
        before = read_log(log_path)
        assert before[-1].type == "DaemonStopped"
        stored = log_path.read_bytes()
        filler = fill(mount)
        with running(ws, notify) as daemon:
            notify.wait_for("READY", n=2, timeout=30)
            ready = [m for m in notify.poll() if m.get("READY") == "1"][-1]
            assert "waiting for disk space" in ready["STATUS"], ready
            names = new_files_while_full(ws, notify, daemon)
            assert log_path.read_bytes() == stored, "something was appended on a full disk"
            wal = Path(f"{log_path}-wal")
            assert not wal.exists() or wal.stat().st_size == 0, "frames written to the WAL"
            filler.unlink()
            wait_until(
                lambda: "DiskSpaceRecovered" in [e.type for e in read_log(log_path)],
                30,
                "DiskSpaceRecovered",
            )
            log = read_log(log_path)
            check_caught_up(log, names, mount)
            new = [e.type for e in log[len(before) :]]
            assert new[0] == "DiskFull" and "DaemonStarted" in new[1:3], new[:4]
            assert new.count("SnapshotLoaded") == 1  # the replay of this start, held, then recorded
            assert daemon.terminate() == 0
        notify.close()
