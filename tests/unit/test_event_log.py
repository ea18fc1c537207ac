"""The SQLite event log and the fold over it, on real SQLite files."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.errors import EventLogError
from daemon.eventlog import events as ev
from daemon.eventlog.events import StoredEvent
from daemon.eventlog.fold import State, apply, fold
from daemon.eventlog.store import EventStore


def test_append_assigns_increasing_seq_and_reads_back(tmp_path: Path):
    with EventStore.open(tmp_path / "e.sqlite3") as store:
        a = store.append(ev.DaemonStarted(pid=7, version="1", workspace="/w"))
        b, c = store.append_many([ev.ArchivePinned(name="x.zip"), ev.ArchiveUnpinned(name="x.zip")])
        assert (a.seq, b.seq, c.seq) == (1, 2, 3)
        back = list(store.read())
        assert [e.type for e in back] == ["DaemonStarted", "ArchivePinned", "ArchiveUnpinned"]
        assert back[0].data == {"pid": 7, "version": "1", "workspace": "/w"}
        assert back[0].event == ev.DaemonStarted(pid=7, version="1", workspace="/w")
        assert [e.seq for e in store.read(after=1, types=["ArchiveUnpinned"])] == [3]
        assert store.last_seq() == 3


def test_pragmas_are_wal_and_synchronous_full(tmp_path: Path):
    with EventStore.open(tmp_path / "e.sqlite3") as store:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_events_can_be_neither_updated_nor_deleted(tmp_path: Path):
    path = tmp_path / "e.sqlite3"
    EventStore.open(path).append(ev.ArchivePinned(name="x.zip"))
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET type = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")


def _append_many(path: str, n: int) -> None:
    store = EventStore.open(Path(path))
    for i in range(n):
        store.append(ev.FileModified(path=f"logs/{i}", area="logs"))


def test_concurrent_writers_in_separate_processes_lose_nothing(tmp_path: Path):
    path = tmp_path / "e.sqlite3"
    EventStore.open(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), 200)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    seqs = [e.seq for e in EventStore.open(path).read()]
    assert seqs == list(range(1, 601))


def test_on_append_sees_each_committed_event(tmp_path: Path):
    seen: list[StoredEvent] = []
    with EventStore.open(tmp_path / "e.sqlite3", on_append=seen.append) as store:
        store.append_many([ev.ArchivePinned(name="a"), ev.ArchivePinned(name="b")])
    assert [(s.seq, s.data["name"]) for s in seen] == [(1, "a"), (2, "b")]


def test_a_corrupt_log_is_refused_or_set_aside_with_what_can_be_read(tmp_path: Path):
    path = tmp_path / "e.sqlite3"
    with EventStore.open(path) as store:
        store.append(ev.ArchivePinned(name="keep.zip"))
        conn = store._conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 300 + data[400:])  # smash the header page
    with pytest.raises(EventLogError, match="corrupt"):
        EventStore.open(path)
    store = EventStore.open(path, recover=True)
    types = [e.type for e in store.read()]
    assert types[-1] == "EventLogRecovered"
    recovered = list(store.read())[-1].data
    assert Path(recovered["moved_to"]).exists()
    assert list(tmp_path.glob("e.sqlite3.corrupt-*"))


def stored(store: EventStore, *events: ev.Event) -> list:
    return store.append_many(list(events))


def test_fold_tracks_sessions_archives_pins_and_files(tmp_path: Path):
    store = EventStore.open(tmp_path / "e.sqlite3")
    log = stored(
        store,
        ev.DaemonStarted(pid=5, version="1", workspace="/w"),
        ev.FileCreated(path="logs/a.log", area="logs", size=3, mtime_ns=1),
        ev.FileMoved(path="logs/a.log", area="logs", dest_path="logs/b.log", dest_area="logs"),
        ev.SessionStarted(session_id="s1", pid=9),
        ev.ArchiveCompleted(
            name="p.zip", reason="pre_training", session_id="s1", archive_id="i", bytes=1, members=1
        ),
        ev.ArchiveVerified(name="p.zip", ok=True),
        ev.SessionAcknowledged(session_id="s1", archive="p.zip"),
        ev.SessionRunning(session_id="s1"),
        ev.ArchivePinned(name="p.zip"),
    )
    state = fold(State(), log)
    assert state.daemon_pid == 5 and state.daemon_running
    assert set(state.files) == {"logs/b.log"}
    s1 = state.sessions["s1"]
    assert (s1.state, s1.pre_archive, s1.acknowledged, s1.final_archive) == (
        "running",
        "p.zip",
        True,
        None,
    )
    assert state.archives["p.zip"].verified is True and state.pins == {"p.zip"}
    assert state.pending_sessions() == []

    stopped = apply(
        state, stored(store, ev.SessionStopped(session_id="s1", outcome="completed"))[0]
    )
    assert [s.session_id for s in stopped.pending_sessions()] == ["s1"]
    assert state.sessions["s1"].state == "running"  # the input state is untouched
    done = apply(
        stopped,
        stored(
            store,
            ev.ArchiveCompleted(
                name="f.zip",
                reason="post_training",
                session_id="s1",
                archive_id="j",
                bytes=1,
                members=1,
            ),
        )[0],
    )
    assert done.sessions["s1"].final_archive == "f.zip" and done.pending_sessions() == []
    pruned = apply(done, stored(store, ev.ArchivePruned(name="p.zip"))[0])
    assert "p.zip" not in pruned.archives and "p.zip" not in pruned.pins


def test_fold_of_the_whole_log_equals_event_by_event(tmp_path: Path):
    store = EventStore.open(tmp_path / "e.sqlite3")
    stored(store, *[ev.FileCreated(path=f"logs/{i}", area="logs", size=i) for i in range(50)])
    stored(store, *[ev.FileDeleted(path=f"logs/{i}", area="logs") for i in range(0, 50, 2)])
    one_go = fold(State(), store.read())
    step = State()
    for e in store.read():
        step = apply(step, e)
    assert one_go == step
    assert len(one_go.files) == 25 and one_go.last_seq == 75


def test_unknown_event_types_and_fields_are_tolerated():
    assert ev.decode("SomethingNew", {"x": 1}) is None
    assert ev.decode("ArchivePinned", {"name": "a", "later_field": 1}) == ev.ArchivePinned("a")
    verified = ev.decode("ArchiveVerified", {"name": "a", "ok": False, "problems": ["p"]})
    assert verified == ev.ArchiveVerified(name="a", ok=False, problems=("p",))


def test_an_archive_recorded_before_its_session_is_linked(tmp_path: Path):
    store = EventStore.open(tmp_path / "e.sqlite3")
    log = stored(
        store,
        ev.ArchiveCompleted(
            name="f.zip",
            reason="post_training",
            session_id="s9",
            archive_id="k",
            bytes=1,
            members=1,
        ),
        ev.SessionStarted(session_id="s9"),
        ev.SessionStopped(session_id="s9", outcome="completed"),
    )
    state = fold(State(), log)
    assert state.sessions["s9"].final_archive == "f.zip"
    assert state.pending_sessions() == []


FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from daemon.eventlog import events as ev
from daemon.errors import EventLogError
from daemon.eventlog.store import EventStore
path, limit = Path(sys.argv[1]), int(sys.argv[2])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails like ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    store = EventStore.open(path, recover=True)
    print(len(list(store.read())))
    for i in range(10000):
        store.append(ev.ArchivePinned(name=f"{i}.zip"))
except EventLogError as e:
    print("refused:", e)
"""


def full_disk_run(path: Path, limit: int) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout.splitlines()


def test_a_full_disk_is_an_error_never_taken_for_corruption(tmp_path: Path):
    path = tmp_path / "e.sqlite3"
    with EventStore.open(path) as store:
        store.append_many([ev.ArchivePinned(name=f"{i}.zip") for i in range(50)])
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size < 65536
    # room to open (WAL index) but not to grow: reads work, appends are refused
    lines = full_disk_run(path, 65536)
    assert lines[0] == "50"
    assert lines[1].startswith("refused:")
    assert "cannot append" in lines[1]
    # not even room for the WAL index: the open is refused, the log left alone
    lines = full_disk_run(path, 1024)
    assert lines == [lines[0]]
    assert lines[0].startswith("refused:")
    assert "cannot open the event log" in lines[0]
    assert not list(tmp_path.glob("*.corrupt-*"))
    with EventStore.open(path) as store:
        assert [e.seq for e in store.read()][:50] == list(range(1, 51))


def test_file_events_alone_commit_without_an_fsync_of_their_own(tmp_path: Path):
    store = EventStore.open(tmp_path / "events.sqlite3")

    def sync() -> int:
        return int(store._conn.execute("PRAGMA synchronous").fetchone()[0])

    store.append_many(
        [ev.FileCreated(path="logs/a", area="logs"), ev.FileModified(path="logs/a", area="logs")]
    )
    assert sync() == 1  # NORMAL: the rescan at start re-derives them after a power loss
    store.append_many(
        [ev.FileDeleted(path="logs/a", area="logs"), ev.SessionStarted(session_id="s")]
    )
    assert sync() == 2  # FULL: any other event, and the WAL frames before it, are synced
    store.append(ev.FileMoved(path="logs/a", area="logs", dest_path="logs/b"))
    assert sync() == 1
    store.close()


def test_file_events_survive_the_writer_killed_right_after_commit(tmp_path: Path):
    log = tmp_path / "events.sqlite3"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from daemon.eventlog import events as ev\n"
        "from daemon.eventlog.store import EventStore\n"
        "s = EventStore.open(Path(sys.argv[1]))\n"
        "s.append_many([ev.FileCreated(path=f'logs/{i}', area='logs') for i in range(50)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(log)], timeout=60, check=False)
    assert done.returncode == -9
    with EventStore.open(log) as store:
        assert [e.data["path"] for e in store.read()] == [f"logs/{i}" for i in range(50)]
