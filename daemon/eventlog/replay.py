"""The fold of an event store, kept current: its latest valid snapshot plus the events after it.

:class:`Replay` is what every command that needs the state uses (through
``ops.Workspace.state``). On its first call it takes the newest snapshot that
passes every check (eventlog/snapshot.py), then folds the events after it,
streamed from the store in batches; later calls fold only what was appended
since. Start-up time and memory therefore follow the events since the last
snapshot, not the length of the log.

A *writer* (``snapshot_every`` set: the daemon) also stores a snapshot every
``snapshot_every`` events and on :meth:`save` (a clean stop), and deals with
bad snapshots: each one it meets is recorded (``SnapshotIgnored`` with the
reason), dropped (so it is recorded once) and, once the state is rebuilt from
the events, replaced by a fresh snapshot. A reader (the CLI) skips a bad
snapshot silently and writes nothing. Failing to store a snapshot (a full
disk) loses nothing: the next try comes ``snapshot_every`` events later.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from daemon.errors import EventLogError, EventLogFullError
from daemon.eventlog.events import Event, SnapshotIgnored, SnapshotLoaded, StoredEvent
from daemon.eventlog.fold import State, fold
from daemon.eventlog.snapshot import SnapshotInvalid, check, make
from daemon.eventlog.store import EventStore


class Replay:
    def __init__(self, store: EventStore, *, snapshot_every: int | None = None) -> None:
        self.store = store
        self.snapshot_every = snapshot_every
        self.loaded_from = 0
        """Seq of the snapshot the state started from (0: a full fold)."""
        self.replayed = 0
        """Events folded on top of it by the first call."""
        self.save_error: str | None = None
        self.unrecorded: list[Event] = []
        self.unrecorded_error = ""
        """What the first replay could not record for want of space (the caller's to hold)."""
        self._state: State | None = None
        self._last: StoredEvent | None = None
        self._saved_seq = 0
        self._lock = threading.Lock()

    def state(self) -> State:
        with self._lock:
            if self._state is None:
                return self._first()
            self._state = self._fold(self._state, self.store.read(after=self._state.last_seq))
            self._maybe_save()
            return self._state

    def save(self) -> bool:
        """Store a snapshot of the current state now (a writer's clean stop)."""
        with self._lock:
            if self._state is None:
                return False
            self._state = self._fold(self._state, self.store.read(after=self._state.last_seq))
            return self._save()

    # --- inside the lock ------------------------------------------------------

    def _first(self) -> State:
        base, bad = self._latest_valid()
        self.loaded_from = base.last_seq
        counted = _Counter(self.store.read(after=base.last_seq))
        state = self._fold(base, counted)
        self.replayed = counted.count
        self._saved_seq = base.last_seq
        if self.snapshot_every is not None:
            events: list[Event] = [SnapshotIgnored(seq=s, reason=r) for s, r in bad]
            events.append(SnapshotLoaded(seq=self.loaded_from, replayed=self.replayed))
            try:
                self.store.append_many(events)
            except EventLogFullError as e:
                self.unrecorded = events  # the writer holds them until there is room
                self.unrecorded_error = str(e)
                bad = []  # and keeps the bad snapshots until they are recorded
            for seq, _ in bad:
                self.store.drop_snapshot(seq)
            state = self._fold(state, self.store.read(after=state.last_seq))
        self._state = state
        if bad and self.snapshot_every is not None:
            self._save()  # rebuilt from the events: replace what was dropped
        else:
            self._maybe_save()
        return state

    def _latest_valid(self) -> tuple[State, list[tuple[int, str]]]:
        bad: list[tuple[int, str]] = []
        for snap in self.store.snapshots():
            try:
                return check(snap, self.store.event_at), bad
            except SnapshotInvalid as e:
                bad.append((snap.seq, str(e)))
        return State(), bad

    def _fold(self, state: State, events: Iterable[StoredEvent]) -> State:
        it = iter(events)
        first = next(it, None)
        if first is None:
            return state
        tracked = _Tracking(first, it)
        new = fold(state, tracked)
        self._last = tracked.last
        return new

    def _maybe_save(self) -> None:
        every = self.snapshot_every
        assert self._state is not None
        if every is not None and self._state.last_seq - self._saved_seq >= every:
            self._save()

    def _save(self) -> bool:
        state = self._state
        if self.snapshot_every is None or state is None or state.last_seq == 0:
            return False
        last = self._last
        if last is not None and last.seq == state.last_seq:
            ts_type: tuple[str, str] | None = (last.ts, last.type)
        else:
            ts_type = self.store.event_at(state.last_seq)
        if ts_type is None:
            return False
        try:
            self.store.save_snapshot(make(state, *ts_type))
        except EventLogError as e:
            self.save_error = str(e)
            self._saved_seq = state.last_seq  # try again snapshot_every events later
            return False
        self.save_error = None
        self._saved_seq = state.last_seq
        return True


class _Counter:
    def __init__(self, events: Iterable[StoredEvent]) -> None:
        self._events = events
        self.count = 0

    def __iter__(self) -> Iterator[StoredEvent]:
        for ev in self._events:
            self.count += 1
            yield ev


class _Tracking:
    """``first`` then ``rest``, remembering the last event handed out."""

    def __init__(self, first: StoredEvent, rest: Iterator[StoredEvent]) -> None:
        self.last = first
        self._first = first
        self._rest = rest

    def __iter__(self) -> Iterator[StoredEvent]:
        yield self._first
        for ev in self._rest:
            self.last = ev
            yield ev
