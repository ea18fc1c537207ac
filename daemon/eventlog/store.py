"""The append-only event log: one SQLite table, WAL, ``synchronous=FULL``.

One exception to FULL: a transaction that holds file events only (what the
watcher saw: :data:`REDERIVABLE`) commits with ``synchronous=NORMAL``, without
an fsync of its own. Under WAL that commit is atomic and survives any crash of
the process; only a power loss can take the last of them back, never corrupt
the log, and the next FULL commit (any other event) fsyncs the WAL with every
frame before it. What a power loss takes is re-derived: the start-up rescan
records the differences between the fold and the folders. Measured why: an
fsync per coalesced batch (about one a second while a trainer writes) stalled
the trainer's own writes on the shared file system (its fps was 0.83-0.89 of a
session with no daemon, 1.02 with these commits; bench_trainer_daemon.py).

Several processes may append at once (the daemon and CLI commands such as
``archive`` or ``pin``): every append is its own ``BEGIN IMMEDIATE``
transaction, so ``seq`` (an AUTOINCREMENT key) is strictly increasing and never
reused. Triggers refuse UPDATE and DELETE: events are never changed.
Snapshots of the fold live in a second table, ``snapshots``, made on the first
save; they are a cache and may be dropped (eventlog/snapshot.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.errors import EventLogError, EventLogFullError
from daemon.eventlog.events import Event, EventLogRecovered, StoredEvent
from daemon.eventlog.snapshot import Snapshot

STORE_VERSION = 1
REDERIVABLE = frozenset({"FileCreated", "FileModified", "FileDeleted", "FileMoved"})
"""Event types a rescan records again if a power loss takes them back: no fsync of their own."""
READ_BATCH = 1000
"""Rows fetched per query by :meth:`EventStore.read`: a long log is streamed, never loaded."""

_SNAP_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    seq     INTEGER PRIMARY KEY,
    ts      TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    format  INTEGER NOT NULL,
    digest  TEXT    NOT NULL,
    payload BLOB    NOT NULL
)"""
_SNAP_SAVE = "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?)"
_SNAP_SEQS = "SELECT seq FROM snapshots ORDER BY seq DESC"
_SNAP_ROW = "SELECT seq, ts, type, format, digest, payload FROM snapshots WHERE seq = ?"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    ts     TEXT    NOT NULL,
    type   TEXT    NOT NULL,
    schema INTEGER NOT NULL,
    data   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type ON events (type, seq);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
"""


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventStore:
    """Append and read events. Thread-safe; safe alongside other processes.

    ``on_append`` is called with every event after it is committed (the daemon
    passes its structlog emitter there).
    """

    def __init__(
        self,
        path: Path,
        *,
        on_append: Callable[[StoredEvent], None] | None = None,
        clock: Callable[[], str] = utc_now_iso,
    ) -> None:
        self.path = path
        self.on_append = on_append
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = _connect(path)
        self._synchronous = "FULL"

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        recover: bool = False,
        on_append: Callable[[StoredEvent], None] | None = None,
    ) -> EventStore:
        """Open (creating) the log.

        A *corrupt* log (SQLite says so, or the integrity check fails) is, with
        ``recover``, set aside and its readable events copied into a fresh one,
        recording :class:`EventLogRecovered`; without it, EventLogError. Any
        other failure (a full disk, a read-only folder, a lock) is never taken
        for corruption: it raises EventLogError and leaves the log as it is.
        """
        try:
            store = cls(path, on_append=on_append)
            store._check()
            return store
        except _Corrupt as e:
            error = str(e)
        except sqlite3.DatabaseError as e:
            if not _is_corruption(e):
                kind = EventLogFullError if _is_out_of_space(e) else EventLogError
                raise kind(f"{path}: cannot open the event log ({e})") from e
            error = str(e)
        if not recover:
            raise EventLogError(
                f"{path}: event log is corrupt ({error}); the daemon sets it aside on start"
            )
        try:
            return cls._recover(path, error, on_append)
        except (sqlite3.Error, OSError) as e:
            raise EventLogError(f"{path}: cannot set the corrupt event log aside ({e})") from e

    def _check(self) -> None:
        row = self._conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise _Corrupt(f"integrity check failed: {row[0] if row else 'no answer'}")
        self._conn.execute("SELECT max(seq) FROM events").fetchone()

    @classmethod
    def _recover(
        cls, path: Path, error: str, on_append: Callable[[StoredEvent], None] | None
    ) -> EventStore:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        rows = _salvage(path)
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        store = cls(path, on_append=on_append)
        with store._lock, store._conn:
            store._conn.execute("BEGIN IMMEDIATE")
            store._conn.executemany(
                "INSERT INTO events (seq, ts, type, schema, data) VALUES (?, ?, ?, ?, ?)", rows
            )
        store.append(EventLogRecovered(moved_to=str(aside), recovered=len(rows), error=error))
        return store

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, event: Event) -> StoredEvent:
        return self.append_many([event])[0]

    def append_many(self, events: Sequence[Event]) -> list[StoredEvent]:
        """Append events in one transaction; returns them with their ``seq``."""
        stored: list[StoredEvent] = []
        if not events:
            return stored
        sync = "NORMAL" if all(e.type in REDERIVABLE for e in events) else "FULL"
        with self._lock:
            try:
                if sync != self._synchronous:  # outside a transaction, as SQLite requires
                    self._conn.execute(f"PRAGMA synchronous = {sync}")
                    self._synchronous = sync
                self._conn.execute("BEGIN IMMEDIATE")
                for event in events:
                    ts = self._clock()
                    data = event.payload()
                    cur = self._conn.execute(
                        "INSERT INTO events (ts, type, schema, data) VALUES (?, ?, ?, ?)",
                        (ts, event.type, event.SCHEMA, json.dumps(data, separators=(",", ":"))),
                    )
                    assert cur.lastrowid is not None
                    stored.append(StoredEvent(cur.lastrowid, ts, event.type, event.SCHEMA, data))
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # a full disk may refuse it too
                        self._conn.execute("ROLLBACK")
                message = f"{self.path}: cannot append to the event log ({e})"
                if _is_out_of_space(e):
                    raise EventLogFullError(message) from e
                raise EventLogError(message) from e
        if self.on_append is not None:
            for item in stored:
                self.on_append(item)
        return stored

    def read(self, after: int = 0, *, types: Iterable[str] | None = None) -> Iterator[StoredEvent]:
        """Events with ``seq > after``, oldest first, optionally of some types only."""
        query = "SELECT seq, ts, type, schema, data FROM events WHERE seq > ?"
        params: list[Any] = [after]
        wanted = list(types or ())
        if wanted:
            query += f" AND type IN ({','.join('?' * len(wanted))})"
            params += wanted
        query += f" ORDER BY seq LIMIT {READ_BATCH}"
        while True:
            with self._lock:
                rows = self._conn.execute(query, params).fetchall()
            for seq, ts, type_, schema, data in rows:
                yield StoredEvent(seq, ts, type_, schema, json.loads(data))
            if len(rows) < READ_BATCH:
                return
            params[0] = rows[-1][0]

    def event_at(self, seq: int) -> tuple[str, str] | None:
        """The (ts, type) of the event at ``seq``, or None when the log has none there."""
        with self._lock:
            row = self._conn.execute("SELECT ts, type FROM events WHERE seq = ?", (seq,)).fetchone()
        return (row[0], row[1]) if row else None

    # --- snapshots of the fold: a cache beside the events, see eventlog/snapshot.py ---

    def snapshots(self) -> Iterator[Snapshot]:
        """The stored snapshots, newest first (none when the table was never made)."""
        with self._lock:
            exists = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshots'"
            ).fetchone()
            seqs = [r[0] for r in self._conn.execute(_SNAP_SEQS)] if exists else []
        for seq in seqs:  # one row at a time: a payload may be large
            with self._lock:
                row = self._conn.execute(_SNAP_ROW, (seq,)).fetchone()
            if row is not None:
                payload = row[5].encode() if isinstance(row[5], str) else bytes(row[5])
                yield Snapshot(row[0], str(row[1]), str(row[2]), row[3], str(row[4]), payload)

    def save_snapshot(self, snap: Snapshot, *, keep: int = 2) -> None:
        """Store a snapshot and drop all but the newest ``keep``. Events are not touched."""
        row = (snap.seq, snap.ts, snap.type, snap.format, snap.digest, snap.payload)
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute(_SNAP_SCHEMA)
                self._conn.execute(_SNAP_SAVE, row)
                self._conn.execute(
                    "DELETE FROM snapshots WHERE seq NOT IN "
                    "(SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?)",
                    (keep,),
                )
                self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise EventLogError(f"{self.path}: cannot store a snapshot ({e})") from e

    def drop_snapshot(self, seq: int) -> None:
        """Delete one (bad) snapshot; the events are never touched."""
        with self._lock:
            try:
                self._conn.execute("DELETE FROM snapshots WHERE seq = ?", (seq,))
            except sqlite3.Error as e:
                raise EventLogError(f"{self.path}: cannot drop a snapshot ({e})") from e

    def last_seq(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        return int(row[0])


class _Corrupt(Exception):
    """The integrity check found damage."""


def _is_corruption(e: sqlite3.DatabaseError) -> bool:
    name = getattr(e, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def _is_out_of_space(e: sqlite3.Error) -> bool:
    """SQLITE_FULL, or an I/O error while writing or syncing (how ENOSPC/EDQUOT on the WAL or
    its shared-memory file shows): states that pass once there is room again."""
    name = getattr(e, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL") or name.startswith("SQLITE_IOERR"):
        return True
    return "disk is full" in str(e) or "disk I/O error" in str(e)


def _connect(path: Path) -> sqlite3.Connection:
    """Connect, switch to WAL and synchronous FULL, and create the schema if it is new.

    Nothing is written to an existing log here: opening one on a full disk works.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite creates a new database 0644 whatever the umask; made first with 0666,
        # the umask decides (group-writable in a shared workspace: daemon.protocol.sharing),
        # and SQLite gives its -wal and -shm the database's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666))
    except OSError as e:
        raise EventLogError(f"{path}: cannot create the event log ({e})") from e
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = FULL")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] != STORE_VERSION:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {STORE_VERSION}")
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _salvage(path: Path) -> list[tuple[int, str, str, int, str]]:
    """Whatever rows of a damaged log can still be read, in order."""
    rows: list[tuple[int, str, str, int, str]] = []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return rows
    try:
        cur = conn.execute("SELECT seq, ts, type, schema, data FROM events ORDER BY seq")
        while True:
            try:
                row = cur.fetchone()
            except sqlite3.Error:
                break
            if row is None:
                break
            rows.append(row)
    except sqlite3.Error:
        pass
    finally:
        conn.close()
    return rows
