"""End to end, hostile or broken input: each gets a clear event or message, and nothing is lost."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.archive.manifest import SkippedRecord
from tests.e2e_helpers import (
    SETPRIV,
    Harness,
    all_archives_verify,
    daemon_cli,
    events,
    finished,
    make_e2e_workspace,
    manifest_of,
    member_bytes,
    member_json,
    session_of,
    setpriv_works,
    wait_event,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(make_e2e_workspace(tmp_path / "ws"))
    yield h
    h.close()


def _post_training(ws: Path, sid: str) -> str:
    done = wait_event(ws, "ArchiveCompleted", session_id=sid, reason="post_training")
    name = str(done.data["name"])
    assert member_json(ws, name, "logs/session_summary.json")["session_id"] == sid
    return name


def test_garbage_lock_file_then_a_real_session_then_a_truncated_model(harness: Harness) -> None:
    ws = harness.ws
    daemon = harness.daemon(watchdog_usec=1_000_000)
    (ws / "training.lock").write_bytes(b"\x00\xff{garbage, not a lock\n")
    invalid = wait_event(ws, "LockFileInvalid")
    assert invalid.data["path"] == str(ws / "training.lock") and invalid.data["error"]
    assert daemon.alive()
    daemon.keeps_pinging()
    assert events(ws, "SessionStarted") == [] and events(ws, "SessionAbandoned") == []

    err = finished(harness.trainer())
    assert "daemon acknowledged the session" in err
    sid = session_of(ws)
    _post_training(ws, sid)
    assert len(events(ws, "LockFileInvalid")) == 1  # said once, not at every look
    assert events(ws, "ModelInvalid") == []  # the trainer's own models are good

    model = (ws / "models/memory_efficient_model_final.zip").read_bytes()
    truncated = model[: len(model) * 2 // 3]
    (ws / "models/copied_model.zip").write_bytes(truncated)
    flagged = wait_event(ws, "ModelInvalid", timeout=10, path="models/copied_model.zip")
    assert flagged.data["error"].startswith("not a valid zip")
    assert flagged.data["size"] == len(truncated)

    made = daemon_cli(ws, "archive", "--json")
    name = json.loads(made.stdout)["name"]
    manifest = manifest_of(ws, name)
    record = manifest.member("models/copied_model.zip")
    assert record is not None and record.damaged is not None
    assert record.damaged.startswith("not a valid zip")
    assert [m.path for m in manifest.members if m.damaged] == ["models/copied_model.zip"]
    assert dict(member_bytes(ws / "archives" / name))["models/copied_model.zip"] == truncated
    all_archives_verify(ws)  # the archive holds the damaged bytes faithfully

    assert daemon.proc.terminate() == 0
    harness.daemon()  # its start-up rescan sees the same damaged version: not reported again
    assert len(events(ws, "ModelInvalid", path="models/copied_model.zip")) == 1
    assert (ws / "models/copied_model.zip").read_bytes() == truncated


def test_unreadable_file_and_outside_symlinks_in_logs(harness: Harness, tmp_path: Path) -> None:
    if not setpriv_works(tmp_path / "probe"):
        pytest.skip("setpriv cannot drop the capabilities that let root read every file")
    ws = harness.ws
    (ws / "logs").mkdir()
    secret = ws / "logs/secret.log"
    secret.write_text("only its owner may read this\n" * 10)
    secret.chmod(0)
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = secrets.token_hex(16).encode()
    (outside / "private.txt").write_bytes(b"outside the workspace " + marker + b"\n")
    (ws / "logs/outside.log").symlink_to(outside / "private.txt")
    (ws / "logs/outside_dir").symlink_to(outside)
    before = {
        p: (os.lstat(p), p.read_bytes() if not p.is_symlink() else os.readlink(p).encode())
        for p in (ws / "logs/outside.log", ws / "logs/outside_dir", outside / "private.txt")
    }
    secret_stat = secret.stat()

    # root, but without the capabilities that bypass file permissions: mode 000 means unreadable
    harness.daemon(wrapper=SETPRIV)
    finished(harness.trainer())
    sid = session_of(ws)
    _post_training(ws, sid)

    found = all_archives_verify(ws)
    assert len(found) == 2  # pre_training (the workspace held files) and post_training
    for path in found:
        manifest = manifest_of(ws, path.name)
        skipped = {s.path: s for s in manifest.skipped}
        assert skipped["logs/secret.log"].reason == "unreadable"
        assert "ermission denied" in skipped["logs/secret.log"].detail
        assert skipped["logs/outside.log"] == SkippedRecord(
            "logs/outside.log", "symlink_outside_workspace", str(outside / "private.txt")
        )
        assert skipped["logs/outside_dir"].reason == "symlink_outside_workspace"
        for member, data in member_bytes(path):
            assert not member.startswith(("logs/secret", "logs/outside")), member
            assert marker not in data, f"{member} holds bytes from outside the workspace"
    completed = events(ws, "ArchiveCompleted")
    assert all(e.data["skipped"] == 3 for e in completed)

    # nothing was touched: the unreadable file and the links stay as they were
    now = secret.stat()
    assert (now.st_mode, now.st_size, now.st_mtime_ns, now.st_ino) == (
        secret_stat.st_mode,
        secret_stat.st_size,
        secret_stat.st_mtime_ns,
        secret_stat.st_ino,
    )
    assert stat.S_IMODE(now.st_mode) == 0
    assert secret.read_bytes() == b"only its owner may read this\n" * 10  # read as root
    for p, (st, content) in before.items():
        again = os.lstat(p)
        assert (again.st_mode, again.st_mtime_ns, again.st_ino) == (
            st.st_mode,
            st.st_mtime_ns,
            st.st_ino,
        )
        assert (os.readlink(p).encode() if p.is_symlink() else p.read_bytes()) == content


def test_corrupt_event_log_is_set_aside_and_the_next_session_archived(harness: Harness) -> None:
    ws = harness.ws
    first = harness.daemon()
    (ws / "logs").mkdir(exist_ok=True)
    for i in range(40):
        (ws / f"logs/before_{i}.log").write_text(f"line {i}\n")
    wait_event(ws, "FileCreated", path="logs/before_39.log")
    assert first.proc.terminate() == 0

    log_path = ws / ".daemon/events.sqlite3"
    with sqlite3.connect(log_path) as conn:  # everything in the main file, nothing in the WAL
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = log_path.read_bytes()
    page = 4096
    assert len(data) % page == 0 and len(data) >= 4 * page
    damaged = data[: (len(data) // page // 2) * page + page // 2]  # cut in the middle of a page
    log_path.write_bytes(damaged)
    for suffix in ("-wal", "-shm"):
        Path(str(log_path) + suffix).unlink(missing_ok=True)

    second = harness.daemon()
    recovered = wait_event(ws, "EventLogRecovered")
    aside = Path(recovered.data["moved_to"])
    assert aside.parent == ws / ".daemon" and aside.name.startswith("events.sqlite3.corrupt-")
    assert aside.read_bytes() == damaged  # set aside as it was, nothing thrown away
    assert recovered.data["error"]
    assert second.alive()

    err = finished(harness.trainer())
    assert "daemon acknowledged the session" in err
    sid = session_of(ws)
    _post_training(ws, sid)
    all_archives_verify(ws)
    assert second.alive()
