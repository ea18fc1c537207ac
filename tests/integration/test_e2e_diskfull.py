"""End to end: the archive folder is a tmpfs too small for the session's archive, then grows."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.archive_helpers import tmpfs
from tests.daemon_helpers import wait_until
from tests.e2e_helpers import (
    Harness,
    all_archives_verify,
    events,
    final_archives,
    finished,
    make_e2e_workspace,
    member_json,
    session_of,
    status,
    tree,
    wait_event,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SMALL = "64k"
"""Far less than the archive of even the tiny session (about 250 KB, its models stored)."""


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return make_e2e_workspace(tmp_path / "ws", retry_max_s=2)


@pytest.fixture
def archive_dir(ws: Path) -> Iterator[Path]:
    with tmpfs(ws / "archives", SMALL) as mounted:
        yield mounted


@pytest.fixture
def harness(ws: Path, archive_dir: Path) -> Iterator[Harness]:
    h = Harness(ws)  # stopped before the tmpfs is unmounted
    yield h
    h.close()


def _listing_between_attempts(ws: Path, folder: Path) -> list[str] | None:
    """The archive folder's names, read while no archive attempt was running (else None)."""
    started = len(events(ws, "ArchiveStarted"))
    ended = len(events(ws, "ArchiveFailed")) + len(events(ws, "ArchiveCompleted"))
    if started != ended:
        return None
    names = sorted(p.name for p in folder.iterdir())
    if len(events(ws, "ArchiveStarted")) != started:
        return None
    return names or ["(empty)"]


def test_full_archive_disk_fails_cleanly_and_recovers_by_itself(
    harness: Harness, archive_dir: Path
) -> None:
    ws = harness.ws
    daemon = harness.daemon(watchdog_usec=1_000_000)
    finished(harness.trainer())
    sid = session_of(ws)
    sources = tree(ws, "logs", "models")

    failed = wait_event(ws, "ArchiveFailed", session_id=sid, reason="post_training")
    assert "disk full" in failed.data["error"] and str(archive_dir) in failed.data["error"]
    listing = wait_until(
        lambda: _listing_between_attempts(ws, archive_dir), 20, "a moment between two attempts"
    )
    assert listing == [".archive.lock"], "a partial or temporary file was left behind"
    assert events(ws, "TempFilesRemoved") == []
    assert tree(ws, "logs", "models") == sources

    assert daemon.alive()
    daemon.keeps_pinging()
    doc = status(ws)
    assert doc["daemon"]["running"] is True and doc["daemon"]["pid"] == daemon.pid
    assert doc["session"]["session_id"] == sid and doc["session"]["state"] == "stopped"
    assert "disk full" in doc["last_archive_error"]
    assert doc["archives"] == 0

    # it tries again by itself (retry_max_s 2), failing the same clean way while the disk is full
    wait_until(lambda: len(events(ws, "ArchiveFailed", session_id=sid)) >= 2, 20, "a retry")
    listing = wait_until(lambda: _listing_between_attempts(ws, archive_dir), 20, "a quiet moment")
    assert listing == [".archive.lock"]

    subprocess.run(["mount", "-o", "remount,size=16m", str(archive_dir)], check=True)
    done = wait_event(ws, "ArchiveCompleted", session_id=sid, reason="post_training")
    assert member_json(ws, done.data["name"], "logs/session_summary.json")["session_id"] == sid
    daemon.wait_idle()
    assert [e.data["name"] for e in final_archives(ws, sid)] == [done.data["name"]]
    assert [p.name for p in all_archives_verify(ws)] == [done.data["name"]]
    assert tree(ws, "logs", "models") == sources  # only a next session's prepare cleans logs/
    assert daemon.alive()
