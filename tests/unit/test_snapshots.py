"""Snapshots of the fold, on real SQLite files: a snapshot plus the events after it equals the
full fold; a damaged one is ignored, recorded once and rebuilt; deleting them loses nothing."""

from __future__ import annotations

import re
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import DaemonConfig, parse_mapping
from daemon.errors import ConfigError
from daemon.eventlog import events as ev
from daemon.eventlog import store as store_module
from daemon.eventlog.fold import State, fold
from daemon.eventlog.replay import Replay
from daemon.eventlog.snapshot import (
    FORMAT,
    SnapshotInvalid,
    check,
    decode,
    digest_of,
    encode,
    make,
)
from daemon.eventlog.store import EventStore

PATHS = [f"logs/f{i}.log" for i in range(4)] + [f"models/checkpoints/c{i}.zip" for i in range(3)]
SESSIONS = ["s1", "s2", "s3"]
ARCHIVES = [f"training_backup_2026010{i}_000000.zip" for i in range(1, 5)]
REASONS = ["pre_training", "post_training", "abandoned", "manual", "recovery"]

path_st = st.sampled_from(PATHS)
area_st = st.sampled_from(["logs", "models"])
sid_st = st.sampled_from(SESSIONS)
name_st = st.sampled_from(ARCHIVES)
small = st.integers(0, 10**12)

event_st: st.SearchStrategy[ev.Event] = st.one_of(
    st.builds(
        ev.DaemonStarted, pid=st.integers(1, 99999), version=st.just("1"), workspace=st.just("/w")
    ),
    st.builds(ev.DaemonStopped, pid=st.integers(1, 99999)),
    st.builds(ev.FileCreated, path=path_st, area=area_st, size=small, mtime_ns=small),
    st.builds(ev.FileModified, path=path_st, area=area_st, size=small, mtime_ns=small),
    st.builds(ev.FileDeleted, path=path_st, area=area_st),
    st.builds(
        ev.FileMoved,
        path=path_st,
        area=area_st,
        dest_path=path_st,
        dest_area=st.none() | area_st,
        size=small,
    ),
    st.builds(ev.Rescanned, trigger=st.just("start"), files=st.integers(0, 9)),
    st.builds(ev.SessionStarted, session_id=sid_st, pid=st.integers(0, 9), archive=st.booleans()),
    st.builds(ev.SessionAcknowledged, session_id=sid_st, archive=st.none() | name_st),
    st.builds(ev.SessionRunning, session_id=sid_st),
    st.builds(ev.SessionStopped, session_id=sid_st, outcome=st.sampled_from(["completed", None])),
    st.builds(ev.SessionAbandoned, session_id=sid_st),
    st.builds(ev.WorkspacePrepared, session_id=sid_st, archive=name_st, removed=st.integers(0, 9)),
    st.builds(
        ev.ArchiveCompleted,
        name=name_st,
        reason=st.sampled_from(REASONS),
        session_id=st.none() | sid_st,
        archive_id=st.text("abc", max_size=3),
        bytes=small,
        members=st.integers(0, 9),
    ),
    st.builds(ev.ArchiveFailed, reason=st.just("manual"), session_id=st.none(), error=st.text()),
    st.builds(ev.ArchiveVerified, name=name_st, ok=st.booleans()),
    st.builds(ev.ArchivePruned, name=name_st),
    st.builds(ev.ArchivePinned, name=name_st),
    st.builds(ev.ArchiveUnpinned, name=name_st),
    st.builds(ev.ModelInvalid, path=path_st, error=st.just("truncated")),
    st.builds(
        ev.ArchiveUploaded,
        name=name_st,
        key=name_st,
        bytes=small,
        sha256=st.text("ab", max_size=3),
        archive_id=st.text("abc", max_size=3),
    ),
    st.builds(ev.ArchiveUploadFailed, name=name_st, error=st.text(max_size=5)),
    st.builds(ev.RemoteArchivePruned, name=name_st, key=name_st),
)


def same(a: State, b: State) -> None:
    """Equal, and iterating in the same order (retention and linking read the maps in order)."""
    assert a == b
    assert list(a.files.items()) == list(b.files.items())
    assert list(a.sessions.items()) == list(b.sessions.items())
    assert list(a.archives.items()) == list(b.archives.items())


def full_fold(store: EventStore) -> State:
    return fold(State(), store.read())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event_st, min_size=10, max_size=80), data=st.data())
def test_snapshot_plus_tail_equals_the_full_fold(events: list[ev.Event], data: st.DataObject):
    cut = data.draw(st.integers(0, len(events)), label="cut")
    with tempfile.TemporaryDirectory() as tmp, EventStore.open(Path(tmp) / "e.sqlite3") as store:
        store.append_many(events[:cut])
        at_cut = full_fold(store)
        payload = encode(at_cut)
        same(decode(payload), at_cut)
        assert encode(decode(payload)) == payload  # deterministic, and back to an equal State
        writer = Replay(store, snapshot_every=100)  # records SnapshotLoaded, then saves
        same(writer.state(), full_fold(store))
        assert writer.save()
        snap_seq = store.last_seq()
        assert [s.seq for s in store.snapshots()] == [snap_seq]
        store.append_many(events[cut:])
        reader = Replay(store)
        same(reader.state(), full_fold(store))
        assert reader.loaded_from == snap_seq
        assert reader.replayed == len(events) - cut


def test_a_state_with_every_field_set_round_trips_through_json():
    events: list[ev.Event] = [
        ev.DaemonStarted(pid=5, version="1", workspace="/w"),
        ev.FileCreated(path="logs/b.log", area="logs", size=3, mtime_ns=4),
        ev.FileCreated(path="logs/a.log", area="logs", size=1, mtime_ns=2),
        ev.SessionStarted(session_id="zz", pid=9, host="h", started_at="t", archive=False),
        ev.SessionStarted(session_id="aa"),
        ev.SessionStopped(session_id="zz", outcome="failed"),
        ev.ArchiveCompleted("b.zip", "post_training", "zz", "id", 10, 2, created_at="c"),
        ev.ArchiveCompleted("a.zip", "pre_training", "aa", "id2", 20, 3),
        ev.ArchiveVerified(name="b.zip", ok=False),
        ev.ArchivePinned(name="b.zip"),
        ev.ArchivePinned(name="a.zip"),
        ev.ArchiveFailed(reason="manual", session_id=None, error="disk full"),
        ev.Rescanned(trigger="start", files=2),
        ev.ArchiveUploaded("a.zip", "p/h/w/a.zip", 20, "ff", 1.5, archive_id="id2"),
        ev.ArchiveUploadFailed("b.zip", "cannot reach S3 endpoint"),
    ]
    stored = [ev.StoredEvent(i + 1, "t", e.type, 1, e.payload()) for i, e in enumerate(events)]
    state = fold(State(), stored)
    assert len(state.pins) == 2 and state.last_archive_error and state.last_rescan_seq
    assert state.uploads and state.last_upload_error and state.last_upload_at
    back = decode(encode(state))
    same(back, state)
    assert back.session_order == ("zz", "aa") and back.current_session == state.current_session
    assert encode(back) == encode(state)


def _fill(store: EventStore, n: int, start: int = 0) -> None:
    store.append_many(
        [ev.FileModified(path=f"logs/f{i % 7}.log", area="logs", size=i) for i in range(start, n)]
    )


def test_a_writer_stores_a_snapshot_every_n_events_and_a_restart_reads_it(tmp_path: Path):
    path = tmp_path / "e.sqlite3"
    with EventStore.open(path) as store:
        writer = Replay(store, snapshot_every=100)
        for chunk in range(5):
            _fill(store, 60 * (chunk + 1), 60 * chunk)
            writer.state()
        seqs = [s.seq for s in store.snapshots()]
        assert len(seqs) == 2 and seqs[0] > seqs[1] > 0  # the newest two are kept
        assert writer.state().last_seq - seqs[0] < 100
    with EventStore.open(path) as store:
        again = Replay(store, snapshot_every=100)
        state = again.state()
        assert again.loaded_from == seqs[0]
        assert again.replayed == store.last_seq() - seqs[0] - 1  # minus its own SnapshotLoaded
        loaded = [e.data for e in store.read(types=["SnapshotLoaded"])]
        assert loaded[0] == {"seq": 0, "replayed": 60}  # the first writer: a full fold
        assert loaded[1:] == [{"seq": seqs[0], "replayed": again.replayed}]
        same(state, full_fold(store))


Damage = Callable[[sqlite3.Connection, EventStore], None]


def _corrupt_payload(conn: sqlite3.Connection, store: EventStore) -> None:
    conn.execute(
        "UPDATE snapshots SET payload = substr(payload, 1, 40) || 'X' || substr(payload, 42)"
    )


def _wrong_digest(conn: sqlite3.Connection, store: EventStore) -> None:
    conn.execute("UPDATE snapshots SET digest = '" + "0" * 64 + "'")


def _old_format(conn: sqlite3.Connection, store: EventStore) -> None:
    conn.execute("UPDATE snapshots SET format = 0")


def _old_state_schema(conn: sqlite3.Connection, store: EventStore) -> None:
    """A consistent row (its digest matches) whose payload was written for another State."""
    seq, ts, type_, payload = conn.execute(
        "SELECT seq, ts, type, payload FROM snapshots"
    ).fetchone()
    payload = bytes(payload).replace(b'"schema":"', b'"schema":"old', 1)
    digest = digest_of(seq, ts, type_, FORMAT, payload)
    conn.execute("UPDATE snapshots SET payload = ?, digest = ?", (payload, digest))


def _seq_not_in_log(conn: sqlite3.Connection, store: EventStore) -> None:
    """Another log's snapshot, further along than this log."""
    state = full_fold(store)
    far = make(State(last_seq=state.last_seq + 500), "2026-01-01T00:00:00.000Z", "FileModified")
    conn.execute("DELETE FROM snapshots")
    row = (far.seq, far.ts, far.type, far.format, far.digest, far.payload)
    conn.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?)", row)


def _other_logs_event(conn: sqlite3.Connection, store: EventStore) -> None:
    """A consistent snapshot whose seq exists here, but names another event (another log)."""
    seq = conn.execute("SELECT seq FROM snapshots").fetchone()[0]
    other = make(State(last_seq=seq), "1999-01-01T00:00:00.000Z", "DaemonStarted")
    conn.execute("DELETE FROM snapshots")
    row = (other.seq, other.ts, other.type, other.format, other.digest, other.payload)
    conn.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?)", row)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_payload, "digest mismatch"),
        (_wrong_digest, "digest mismatch"),
        (_old_format, "old format 0"),
        (_old_state_schema, "old format (state schema"),
        (_seq_not_in_log, "is not in this event log"),
        (_other_logs_event, "another log's snapshot"),
    ],
)
def test_a_damaged_snapshot_is_ignored_recorded_once_and_rebuilt(
    tmp_path: Path, damage: Damage, reason: str
):
    path = tmp_path / "e.sqlite3"
    with EventStore.open(path) as store:
        _fill(store, 250)
        first = Replay(store, snapshot_every=100)
        first.state()
        first.save()
        conn = sqlite3.connect(path, isolation_level=None)
        damage(conn, store)
        conn.close()
        bad = next(store.snapshots())
        with pytest.raises(SnapshotInvalid, match=re.escape(reason)):
            check(bad, store.event_at)

        reader = Replay(store)  # a CLI command: skips it silently, writes nothing
        before = store.last_seq()
        same(reader.state(), full_fold(store))
        assert reader.loaded_from == 0 and store.last_seq() == before

        writer = Replay(store, snapshot_every=100)  # the daemon: records, drops, rebuilds
        state = writer.state()
        ignored = [e.data for e in store.read(types=["SnapshotIgnored"])]
        assert len(ignored) == 1 and ignored[0]["seq"] == bad.seq
        assert reason in ignored[0]["reason"]
        assert writer.loaded_from == 0
        same(state, full_fold(store))
        fresh = next(store.snapshots())
        assert fresh.seq == state.last_seq and check(fresh, store.event_at) == state

        third = Replay(store, snapshot_every=100)  # the next start trusts the rebuilt one
        same(third.state(), full_fold(store))
        assert third.loaded_from == fresh.seq
        assert len(list(store.read(types=["SnapshotIgnored"]))) == 1


def test_the_newest_bad_snapshot_falls_back_to_the_older_good_one(tmp_path: Path):
    with EventStore.open(tmp_path / "e.sqlite3") as store:
        writer = Replay(store, snapshot_every=100)
        _fill(store, 150)
        writer.state()
        _fill(store, 300, 150)
        writer.state()
        newest, older = list(store.snapshots())
        conn = sqlite3.connect(tmp_path / "e.sqlite3", isolation_level=None)
        conn.execute("UPDATE snapshots SET digest = 'x' WHERE seq = ?", (newest.seq,))
        conn.close()
        again = Replay(store, snapshot_every=100)
        same(again.state(), full_fold(store))
        assert again.loaded_from == older.seq
        assert [e.data["seq"] for e in store.read(types=["SnapshotIgnored"])] == [newest.seq]


def test_deleting_the_snapshots_loses_nothing(tmp_path: Path):
    path = tmp_path / "e.sqlite3"
    with EventStore.open(path) as store:
        _fill(store, 300)
        store.append_many([ev.SessionStarted(session_id="s1"), ev.ArchivePinned(name="a.zip")])
        writer = Replay(store, snapshot_every=100)
        expected = writer.state()
        writer.save()
        events_before = store.last_seq()
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("DROP TABLE snapshots")
        conn.close()
        assert list(store.snapshots()) == []
        reader = Replay(store)
        assert reader.state() == expected and reader.loaded_from == 0
        assert store.last_seq() == events_before  # events untouched, nothing lost
        writer = Replay(store, snapshot_every=100)
        writer.state()
        assert writer.save() and len(list(store.snapshots())) == 1  # the table comes back


def test_saving_snapshots_never_touches_the_events(tmp_path: Path):
    path = tmp_path / "e.sqlite3"
    with EventStore.open(path) as store:
        _fill(store, 120)
        rows_before = sqlite3.connect(path).execute("SELECT * FROM events").fetchall()
        writer = Replay(store, snapshot_every=100)
        writer.state()
        assert len(list(store.snapshots())) == 1
        rows_after = sqlite3.connect(path).execute("SELECT * FROM events").fetchall()
        assert rows_after[: len(rows_before)] == rows_before
        assert [r[2] for r in rows_after[len(rows_before) :]] == ["SnapshotLoaded"]


def test_read_streams_the_log_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(store_module, "READ_BATCH", 7)
    with EventStore.open(tmp_path / "e.sqlite3") as store:
        _fill(store, 50)
        store.append(ev.ArchivePinned(name="a.zip"))
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)
        assert [e.seq for e in store.read()] == list(range(1, 52))
        selects = [s for s in statements if s.startswith("SELECT seq, ts")]
        assert len(selects) == 8 and all("LIMIT 7" in s for s in selects)
        assert [e.seq for e in store.read(after=20, types=["ArchivePinned"])] == [51]
        assert [e.seq for e in store.read(after=45)] == list(range(46, 52))


def test_snapshot_every_is_bounded():
    assert DaemonConfig().snapshot_every == 1000
    assert (
        parse_mapping({"snapshot_every": 100}, DaemonConfig, source="c.json").snapshot_every == 100
    )
    for bad in (0, 99, 1_000_001):
        with pytest.raises(ConfigError, match=r"c\.json: snapshot_every must be between"):
            parse_mapping({"snapshot_every": bad}, DaemonConfig, source="c.json")
    with pytest.raises(ConfigError, match="key 'snapshot_every' must be an integer"):
        parse_mapping({"snapshot_every": "10"}, DaemonConfig, source="c.json")
