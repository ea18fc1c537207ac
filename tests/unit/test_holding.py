"""HoldingWorkspace on a real SQLite log made full on purpose (``PRAGMA max_page_count``).

SQLite then answers SQLITE_FULL exactly as on a full disk; raising the limit is the
disk getting room again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog

from daemon.config import load_settings
from daemon.errors import EventLogFullError
from daemon.eventlog.events import Event, FileCreated, SessionStarted, SnapshotLoaded
from daemon.eventlog.store import EventStore
from daemon.service.holding import RETRY_S, HoldingWorkspace, read_only


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def workspace(tmp_path: Path, clock: Clock, max_held: int = 1000) -> HoldingWorkspace:
    ws = HoldingWorkspace(load_settings(tmp_path), clock=clock, max_held=max_held)
    ws.record(SessionStarted(session_id="s0"))
    return ws


def set_limit(ws: HoldingWorkspace, pages: int | None) -> None:
    conn = ws.store._conn
    if pages is None:
        pages = 1_000_000
    elif pages == 0:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")


def files(n: int, start: int = 0) -> list[Event]:
    return [FileCreated(path=f"logs/f{i:04d}_" + "x" * 200, area="logs") for i in range(start, n)]


def fill_until_full(ws: HoldingWorkspace) -> list[Event]:
    """Record file events one by one until the log is full; returns what was recorded."""
    set_limit(ws, 0)
    sent: list[Event] = []
    for i in range(10_000):
        batch = files(i + 1, i)
        ws.record_many(batch)
        sent += batch
        if ws.waiting:
            return sent
    raise AssertionError("the log never filled")


def fill_store(ws: HoldingWorkspace, batch: Sequence[Event]) -> None:
    """Append ``batch`` straight to the store until it is full."""
    for _ in range(10_000):
        try:
            ws.store.append_many(batch)
        except EventLogFullError:
            return
    raise AssertionError("the log never filled")


def test_store_says_full_as_its_own_error(tmp_path: Path) -> None:
    store = EventStore.open(tmp_path / "e.sqlite3")
    store._conn.execute("PRAGMA max_page_count = 2")
    with pytest.raises(EventLogFullError, match="cannot append"):
        store.append_many(files(500))
    store.close()


def test_held_events_are_appended_in_order_between_diskfull_and_recovered(tmp_path: Path) -> None:
    clock = Clock()
    ws = workspace(tmp_path, clock)
    sent = fill_until_full(ws)
    assert ws.wait is not None and "disk is full" in ws.wait.describe()
    stored_before = ws.store.last_seq()
    more = files(len(sent) + 5, len(sent))
    ws.record_many(more)
    ws.record(SessionStarted(session_id="s1"))
    assert ws.store.last_seq() == stored_before, "appended while waiting"
    # decisions see what is held: the session is known, the files are tracked
    state = ws.state()
    assert "s1" in state.sessions
    assert {e.path for e in sent + more} <= set(state.files)  # type: ignore[attr-defined]

    clock.now += RETRY_S / 2
    assert ws.retry(clock.now) is False  # not due yet
    clock.now += RETRY_S
    assert ws.retry(clock.now) is False and ws.waiting  # still full
    set_limit(ws, None)
    clock.now += RETRY_S
    assert ws.retry(clock.now) is True and not ws.waiting and ws.held == 0
    log = list(ws.store.read(after=stored_before))
    assert log[0].type == "DiskFull" and log[-1].type == "DiskSpaceRecovered"
    assert log[0].data["path"] == str(ws.paths.event_log) and log[0].data["since"]
    assert log[-1].data["held"] == len(log) - 2 and log[-1].data["dropped"] == 0
    assert log[-1].data["waited_s"] == pytest.approx(2.5 * RETRY_S)
    held_paths = [e.data["path"] for e in log if e.type == "FileCreated"]
    # the event whose append failed first is held too, then the rest in order
    assert held_paths == [e.path for e in [sent[-1], *more]]
    assert [e.type for e in log][-2] == "SessionStarted"
    assert [e.seq for e in log] == list(range(stored_before + 1, stored_before + len(log) + 1))
    assert ws.rescan_owed is False
    ws.close()


def test_beyond_the_bound_file_events_are_dropped_and_a_rescan_is_owed(tmp_path: Path) -> None:
    clock = Clock()
    ws = workspace(tmp_path, clock, max_held=3)
    fill_until_full(ws)
    ws.record_many(files(10))
    ws.record(SessionStarted(session_id="kept"))  # never dropped, whatever the bound
    assert ws.held == 4 and ws.dropped == 8
    set_limit(ws, None)
    clock.now += RETRY_S
    assert ws.retry(clock.now)
    recovered = list(ws.store.read(types=["DiskSpaceRecovered"]))[-1]
    assert recovered.data["held"] == 4 and recovered.data["dropped"] == 8
    assert ws.rescan_owed is True
    assert "kept" in ws.state().sessions
    ws.close()


def test_close_while_still_full_logs_every_held_event(tmp_path: Path) -> None:
    clock = Clock()
    ws = workspace(tmp_path, clock)
    fill_until_full(ws)
    ws.record(SessionStarted(session_id="lost"))
    with structlog.testing.capture_logs() as logs:
        ws.close()
    named = [e for e in logs if e.get("data", {}).get("session_id") == "lost"]
    assert named and named[0]["log_level"] == "error"


def test_read_only_reads_a_closed_log_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite3"
    with EventStore.open(path) as store:
        store.append_many(files(3))
    before = path.read_bytes()
    assert [e.data["path"][:9] for e in read_only(path)] == ["logs/f000", "logs/f000", "logs/f000"]
    assert path.read_bytes() == before
    assert read_only(tmp_path / "missing.sqlite3") == []


def test_a_start_on_a_full_log_holds_the_replays_own_events_too(tmp_path: Path) -> None:
    clock = Clock()
    first = HoldingWorkspace(load_settings(tmp_path), clock=clock, snapshots=True)
    first.record_many(files(5))
    first.state()
    first.close()  # a clean stop stores a snapshot
    ws = HoldingWorkspace(load_settings(tmp_path), clock=clock, snapshots=True)
    set_limit(ws, 0)
    tiny = SnapshotLoaded(seq=0, replayed=0)  # no bigger than the one the replay records
    for small in (files(1), [tiny]):  # the disk fills up before the start's first fold,
        fill_store(ws, small)  # to the last byte
    stored = ws.store.last_seq()
    state = ws.state()  # the replay cannot record SnapshotLoaded: held, not an exit
    assert ws.waiting and ws.held == 1 and state.last_seq == stored + 1
    assert ws.store.last_seq() == stored
    set_limit(ws, None)
    assert ws.retry(clock.now + RETRY_S)
    tail = [e.type for e in ws.store.read(after=stored)]
    assert tail == ["DiskFull", "SnapshotLoaded", "DiskSpaceRecovered"]
    loaded = next(iter(ws.store.read(after=stored, types=["SnapshotLoaded"])))
    assert loaded.data["seq"] > 0  # it did start from the snapshot of the clean stop
    ws.close()
