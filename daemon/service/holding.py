"""The daemon's workspace, which waits when its event log's disk is full instead of exiting.

:class:`HoldingWorkspace` is :class:`daemon.ops.Workspace` whose appends never
raise for want of space: an append that fails with :class:`EventLogFullError`
starts a wait. While waiting, every event to record (from the loop or the
archiving worker) is held in memory in the order it came, and :meth:`state`
folds the held events on top of the stored ones, so decisions see them (a
session is not started twice). :meth:`retry` (the loop calls it every
``RETRY_S``) appends, in one transaction, ``DiskFull`` (with the time the wait
began), every held event, then ``DiskSpaceRecovered``: seq order stays the
order things happened.

Bounded: at most ``max_held`` events are held. File events past the bound are
not held but counted (``dropped``); they are facts a rescan recovers, so the
loop rescans after the wait. Every other event (sessions, archives) is always
held: there are few of them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from daemon import ops
from daemon.config import Settings
from daemon.errors import EventLogFullError
from daemon.eventlog.events import (
    DiskFull,
    DiskSpaceRecovered,
    Event,
    FileCreated,
    FileDeleted,
    FileModified,
    FileMoved,
    StoredEvent,
)
from daemon.eventlog.fold import State, fold
from daemon.eventlog.store import utc_now_iso

log = structlog.get_logger("daemon.service")

RETRY_S = 1.0
"""How often a waiting daemon tries to append what it holds."""
MAX_HELD = 100_000
"""Most events held in memory while waiting (file events beyond are left to a rescan)."""
FILE_EVENTS = (FileCreated, FileModified, FileDeleted, FileMoved)


@dataclass(frozen=True)
class Wait:
    """A wait for disk space: what failed, and since when."""

    path: str
    error: str
    since_iso: str
    since: float
    """Monotonic seconds."""

    def describe(self) -> str:
        return f"waiting for disk space: {self.path} ({self.error})"


class HoldingWorkspace(ops.Workspace):
    """A workspace whose appends hold events in memory while the log's disk is full."""

    def __init__(
        self,
        settings: Settings,
        *,
        recover: bool = False,
        on_append: Callable[[StoredEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_held: int = MAX_HELD,
        snapshots: bool = False,
    ) -> None:
        self.clock = clock
        self.max_held = max_held
        self.wait: Wait | None = None
        self.dropped = 0
        self.rescan_owed = False
        """Set when a wait that dropped file events ended: the loop rescans."""
        self._held: list[Event] = []
        self._hold_lock = threading.RLock()
        self._next_retry = 0.0
        try:
            super().__init__(settings, recover=recover, on_append=on_append, snapshots=snapshots)
        except EventLogFullError as e:  # start degraded: read what is stored, wait for room
            self._store = None
            self._state = fold(State(), read_only(self.paths.event_log))
            self._begin_wait(str(e))

    def stored(self, types: Sequence[str]) -> list[StoredEvent]:
        """Stored events of some types, even while the log cannot be opened for writing."""
        if self._store is None and self.wait is not None:
            return [e for e in read_only(self.paths.event_log) if e.type in types]
        return list(self.store.read(types=types))

    @property
    def waiting(self) -> bool:
        return self.wait is not None

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def retry_at(self) -> float | None:
        return self._next_retry if self.wait is not None else None

    def record(self, event: Event) -> StoredEvent:
        return self.record_many([event])[0]

    def record_many(self, events: Sequence[Event]) -> list[StoredEvent]:
        """Append, or hold while waiting; held events come back with provisional seqs."""
        if not events:
            return []
        with self._hold_lock:
            if self.wait is None:
                try:
                    return super().record_many(events)
                except EventLogFullError as e:
                    self._begin_wait(str(e))
            return self._hold(events)

    def state(self) -> State:
        """The stored state, with the held events folded on top (not cached)."""
        with self._hold_lock:
            stored = super().state()
            if self.replay is not None and self.replay.unrecorded:  # its start on a full disk
                owed, self.replay.unrecorded = self.replay.unrecorded, []
                if self.wait is None:
                    self._begin_wait(self.replay.unrecorded_error)
                self._held.extend(owed)
            if not self._held:
                return stored
            return fold(stored, self._provisional(stored.last_seq, self._held))

    def retry(self, now: float) -> bool:
        """If waiting and due, try to append what is held; True when the wait ended."""
        with self._hold_lock:
            if self.wait is None or now < self._next_retry:
                return False
            self._next_retry = now + RETRY_S
            wait = self.wait
            batch = [
                DiskFull(path=wait.path, error=wait.error, since=wait.since_iso),
                *self._held,
                DiskSpaceRecovered(
                    path=wait.path,
                    waited_s=round(now - wait.since, 3),
                    held=len(self._held),
                    dropped=self.dropped,
                ),
            ]
            try:
                super().record_many(batch)
            except EventLogFullError:
                return False
            log.warning("disk space is back: held events recorded", held=len(self._held))
            self.rescan_owed = self.dropped > 0
            self._held.clear()
            self.dropped = 0
            self.wait = None
            return True

    def _begin_wait(self, error: str) -> None:
        now = self.clock()
        path = str(self.paths.event_log)
        reason = error.split("(", 1)[-1].rstrip(")") if "(" in error else error
        self.wait = Wait(path, reason, utc_now_iso(), now)
        self._next_retry = now + RETRY_S
        log.warning(
            "event log cannot be appended to: holding events until there is room",
            path=path,
            error=error,
        )

    def _hold(self, events: Sequence[Event]) -> list[StoredEvent]:
        kept: list[Event] = []
        for event in events:
            if len(self._held) + len(kept) >= self.max_held and isinstance(event, FILE_EVENTS):
                self.dropped += 1
            else:
                kept.append(event)
        self._held.extend(kept)
        base = super().state().last_seq + len(self._held) - len(kept)
        return self._provisional(base, kept)

    @staticmethod
    def _provisional(after: int, events: Sequence[Event]) -> list[StoredEvent]:
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return [
            StoredEvent(after + i + 1, ts, e.type, e.SCHEMA, e.payload())
            for i, e in enumerate(events)
        ]

    def wait_fields(self) -> dict[str, object]:
        """For the health file: the wait (or null) and how many events are held."""
        wait = self.wait
        return {
            "disk_wait": None
            if wait is None
            else {"path": wait.path, "error": wait.error, "since": wait.since_iso},
            "held_events": len(self._held),
        }

    def close(self) -> None:
        """Close the log; events still held (the disk never came back) go to the journal."""
        with self._hold_lock:
            for event in self._held:
                log.error(
                    "event not recorded: the event log's disk stayed full",
                    event_type=event.type,
                    data=event.payload(),
                )
            self._held.clear()
        super().close()


def read_only(path: Path) -> list[StoredEvent]:
    """Every stored event, read without writing anything (no -shm, no -wal created).

    ``mode=ro`` first (it sees a WAL left by a killed daemon, whose -shm then exists);
    if even that needs space, ``immutable=1`` reads the main file alone, which after a
    clean stop (the WAL checkpointed and removed) holds everything.
    """
    if not path.exists():
        return []
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        try:
            conn = sqlite3.connect(f"file:{path}?{flags}", uri=True, timeout=5.0)
        except sqlite3.Error:
            continue
        try:
            rows = conn.execute(
                "SELECT seq, ts, type, schema, data FROM events ORDER BY seq"
            ).fetchall()
        except sqlite3.Error:
            continue
        finally:
            conn.close()
        return [StoredEvent(s, ts, t, sc, json.loads(d)) for s, ts, t, sc, d in rows]
    return []
