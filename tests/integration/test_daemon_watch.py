"""The real daemon follows its folders and the growth of files that stay open.

A writer process that never closes its log, ``logs/`` and ``models/`` moved away
and made again, deleted and made again: the events must arrive within seconds,
without the scheduled rescan (30 s in the test config), and health, ``status``
and STATUS= must say when a folder is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.eventlog.events import StoredEvent
from tests.daemon_helpers import (
    PYTHON,
    REPO,
    DaemonProcess,
    NotifySocket,
    make_daemon_workspace,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)
SOON_S = 8.0
"""'Within a few seconds', with room for a machine shared by several test runs."""

WRITER = """
import sys, time
with open(sys.argv[1], "a") as f:
    print("open", flush=True)
    n = 0
    while True:
        f.write(f"step {n} loss 0.5\\n")
        f.flush()
        n += 1
        time.sleep(0.01)
"""


@pytest.fixture
def daemon(tmp_path: Path, notify: NotifySocket) -> Iterator[DaemonProcess]:
    ws = make_daemon_workspace(tmp_path / "ws", rescan_interval_s=600)
    proc = DaemonProcess(ws, notify)
    proc.wait_ready()
    yield proc
    proc.stop()


def _health(daemon: DaemonProcess) -> dict[str, object]:
    return json.loads((daemon.workspace / ".daemon/health.json").read_text())


def _status(daemon: DaemonProcess) -> tuple[dict[str, object], str]:
    args = [PYTHON, "-m", "daemon", "status", "--workspace", str(daemon.workspace)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    doc = subprocess.run([*args, "--json"], capture_output=True, text=True, cwd=REPO, env=env)
    text = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env)
    assert doc.returncode == 0 and text.returncode == 0, doc.stderr + text.stderr
    return json.loads(doc.stdout), text.stdout


def _open_fds(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found.add(os.readlink(fd))
        except OSError:
            continue
    return found


def test_an_open_log_that_keeps_growing_is_recorded_while_it_stays_open(
    daemon: DaemonProcess,
) -> None:
    log = daemon.workspace / "logs/training.log"
    writer = subprocess.Popen([PYTHON, "-c", WRITER, str(log)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "open"
        sizes: list[int] = []
        for _ in range(3):
            floor = max([log.stat().st_size, *sizes])

            def grown(floor: int = floor) -> int | None:
                for e in reversed(daemon.events("FileModified")):
                    if e.data["path"] == "logs/training.log" and e.data["size"] > floor:
                        return int(e.data["size"])
                return None

            started = time.monotonic()
            sizes.append(wait_until(grown, SOON_S, f"FileModified of the open log past {floor}"))
            assert time.monotonic() - started < SOON_S
            assert writer.poll() is None and str(log) in _open_fds(writer.pid), "it never closes"
        assert sizes == sorted(sizes) and len(set(sizes)) == 3
        health_every_s = 10  # the health file is rewritten at least this often
        wait_until(lambda: _health(daemon)["open_files"], health_every_s + SOON_S, "open_files")
    finally:
        writer.kill()
        writer.wait(10)
    modified = [e for e in daemon.events("FileModified") if e.data["path"] == "logs/training.log"]
    lines = log.read_text().count("\n")
    assert len(modified) < lines / 10, "about one event per poll, not one per write"
    assert not daemon.events("Rescanned")[1:], "no rescan was needed for any of it"


@pytest.mark.parametrize("area", ["logs", "models"])
def test_an_area_moved_away_and_made_again_is_followed(
    daemon: DaemonProcess, notify: NotifySocket, area: str
) -> None:
    ws = daemon.workspace
    old_inode = os.stat(ws / area).st_ino
    known = {p for p in daemon.state().files if p.startswith(f"{area}/")}
    assert known
    os.rename(ws / area, ws / f"{area}.old")  # mv logs logs.old && mkdir logs
    (ws / area).mkdir()
    (ws / area / "right_after.txt").write_text("written the moment the folder appeared")
    (ws / area / "later").mkdir()
    new_inode = os.stat(ws / area).st_ino

    def rearmed() -> StoredEvent | None:
        return daemon.has("WatchRearmed", area=area, new_inode=new_inode, missing=False)

    change = wait_until(rearmed, SOON_S, f"WatchRearmed for the new {area}/")
    assert change.data["old_inode"] in (old_inode, None)
    assert daemon.wait_event("FileCreated", SOON_S, path=f"{area}/right_after.txt")
    (ws / area / "later/deeper.txt").write_text("x")
    assert daemon.wait_event("FileCreated", SOON_S, path=f"{area}/later/deeper.txt")
    for path in known:  # what left with the old folder is no longer there
        assert daemon.wait_event("FileDeleted", SOON_S, path=path)
    (ws / f"{area}.old/ghost.txt").write_text("the old folder is not watched")
    (ws / area / "marker.txt").write_text("x")
    daemon.wait_event("FileCreated", SOON_S, path=f"{area}/marker.txt")
    assert not daemon.has("FileCreated", path=f"{area}/ghost.txt")
    rescans = daemon.events("Rescanned")
    assert {e.data["trigger"] for e in rescans} <= {"start", "rearm"}, "no scheduled rescan"
    health = _health(daemon)
    assert health["watched_areas"][area] == new_inode  # type: ignore[index]
    assert health["missing_areas"] == []
    assert any(s.startswith(f"re-arming watches ({area}/ ") for s in notify.statuses())


def test_a_deleted_area_degrades_health_until_it_is_made_again(
    daemon: DaemonProcess, notify: NotifySocket
) -> None:
    ws = daemon.workspace
    shutil.rmtree(ws / "logs")
    daemon.wait_event("WatchRearmed", SOON_S, area="logs", missing=True, reason="missing")
    wait_until(lambda: _health(daemon)["missing_areas"] == ["logs"], SOON_S, "health: logs missing")
    health = _health(daemon)
    assert "logs/ missing" in str(health["status"]) and health["watcher_alive"]
    doc, text = _status(daemon)
    assert "logs/ missing" in doc["daemon"]["health"]["status"]  # type: ignore[index]
    assert "degraded: logs/ missing" in text
    wait_until(
        lambda: any("logs/ missing" in s for s in notify.statuses()), SOON_S, "STATUS= says it"
    )
    assert daemon.proc.poll() is None
    (ws / "logs").mkdir()
    (ws / "logs/back.log").write_text("x")
    daemon.wait_event("WatchRearmed", SOON_S, area="logs", reason="appeared", missing=False)
    daemon.wait_event("FileCreated", SOON_S, path="logs/back.log")
    wait_until(lambda: _health(daemon)["missing_areas"] == [], SOON_S, "health: nothing missing")
    assert "missing" not in str(_health(daemon)["status"])
    (ws / "logs/after.log").write_text("y")
    daemon.wait_event("FileCreated", SOON_S, path="logs/after.log")


def test_the_watchdog_keeps_being_pinged_while_a_folder_is_missing(tmp_path: Path) -> None:
    """A watch that went with its folder is re-armed, not taken for a dead watcher."""
    ws = make_daemon_workspace(tmp_path / "ws")
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(ws, notify, watchdog_usec=600_000)
    try:
        daemon.wait_ready()
        shutil.rmtree(ws / "models")
        daemon.wait_event("WatchRearmed", SOON_S, area="models", missing=True)
        before = notify.count("WATCHDOG")
        notify.wait_for("WATCHDOG", n=before + 5, timeout=SOON_S)
        assert not (ws / "models").exists(), "the daemon must not make the folder itself"
        assert "watcher died" not in daemon.stdout_path.read_text()
    finally:
        daemon.stop()
        notify.close()


@pytest.mark.parametrize("area", ["logs", "models"])
def test_an_area_deleted_and_made_again_at_once_is_followed(
    daemon: DaemonProcess, area: str
) -> None:
    """``rm -rf models && mkdir models``: the new folder may even get the old inode number."""
    ws = daemon.workspace
    known = {p for p in daemon.state().files if p.startswith(f"{area}/")}
    shutil.rmtree(ws / area)
    (ws / area).mkdir()
    (ws / area / "right_after.bin").write_bytes(b"x" * 100)
    daemon.wait_event("WatchRearmed", SOON_S, area=area)
    daemon.wait_event("FileCreated", SOON_S, path=f"{area}/right_after.bin")
    for path in known:
        daemon.wait_event("FileDeleted", SOON_S, path=path)
    last = daemon.events("WatchRearmed")[-1]
    assert last.data["new_inode"] == os.stat(ws / area).st_ino and not last.data["missing"]
    (ws / area / "next.bin").write_bytes(b"y")
    daemon.wait_event("FileCreated", SOON_S, path=f"{area}/next.bin")
    assert not [e for e in daemon.events("Rescanned") if e.data["trigger"] == "schedule"]
