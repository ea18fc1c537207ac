"""Coalescing raw file notifications into file events (no IO here).

inotify is a hint, not the truth: a notification only says "look at this path
again". :class:`Coalescer` collects notifications per path; a path becomes due
``window_s`` after its *first* pending notification, so a file appended to
thousands of times a second still yields at most one event per window.
:func:`settle` then compares what the path is now (a ``stat`` function passed
in) with what the state knows, and emits the difference: ``FileCreated``,
``FileModified`` (with the number of notifications it stands for),
``FileDeleted``, ``FileMoved``, or nothing at all.

Opens and closes also keep :class:`daemon.watch.growth.OpenFiles` up to date:
a file that stays open is stat'ed by :meth:`Coalescer.poll` and, when it grew,
becomes due at once (the poll interval already coalesced its writes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from daemon.eventlog.events import Area, Event, FileCreated, FileDeleted, FileModified, FileMoved
from daemon.eventlog.fold import FileInfo
from daemon.watch.growth import OpenFiles

RawKind = Literal["created", "modified", "deleted", "moved", "closed", "opened", "released"]
"""``closed``: closed after writing; ``opened`` and ``released`` (closed after reading only)
feed :class:`OpenFiles` and settle nothing by themselves."""
StatFn = Callable[[str], FileInfo | None]
"""What a workspace-relative path is now: a regular file's size and mtime, or None."""

AREAS: tuple[Area, ...] = ("logs", "models")
MAX_SUSPECTS = 64
"""At most this many files changed behind the watcher's back are polled after one rescan."""


@dataclass(frozen=True)
class Raw:
    """One notification, already made workspace-relative by the watcher."""

    kind: RawKind
    path: str
    dest: str | None = None


@dataclass
class Pending:
    path: str
    due: float
    count: int = 1
    moved_from: str | None = None


def area_of(path: str) -> Area | None:
    head = path.split("/", 1)[0]
    for area in AREAS:
        if head == area and "/" in path:
            return area
    return None


class Coalescer:
    """Pending paths, each due ``window_s`` after its first notification."""

    def __init__(self, window_s: float, open_files: OpenFiles | None = None) -> None:
        self.window_s = window_s
        self._pending: dict[str, Pending] = {}
        self.raw_count = 0
        self.open_files = open_files if open_files is not None else OpenFiles()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, raw: Raw, now: float) -> None:
        self.raw_count += 1
        self._note_open(raw, now)
        if raw.kind in ("opened", "released"):
            return
        if raw.kind == "moved" and raw.dest is not None:
            if area_of(raw.dest) is None:  # moved out of the watched areas: a deletion
                self._touch(raw.path, now)
                return
            entry = self._touch(raw.dest, now)
            if area_of(raw.path) is not None:
                if entry.moved_from not in (None, raw.path):
                    # a second move onto the same destination: the first source
                    # must still be settled (it is gone, or something new is there)
                    self._touch(entry.moved_from, now)
                entry.moved_from = raw.path
            return
        if area_of(raw.path) is not None:
            self._touch(raw.path, now)

    def _note_open(self, raw: Raw, now: float) -> None:
        files = self.open_files
        if raw.kind == "opened" and area_of(raw.path) is not None:
            files.opened(raw.path, now)
        elif raw.kind in ("closed", "released"):
            files.closed(raw.path)
        elif raw.kind == "deleted":
            files.deleted(raw.path)
        elif raw.kind == "moved" and raw.dest is not None:
            files.moved(raw.path, raw.dest)

    def poll(self, stat: StatFn, now: float) -> None:
        """Stat the open files (when due); those that changed are due now."""
        for path in self.open_files.poll(stat, now):
            entry = self._touch(path, now)
            entry.due = min(entry.due, now)

    def suspect(self, events: Iterable[Event], now: float) -> None:
        """Files a rescan found modified may be open for writing since before any open
        was seen (a trainer that outlived a daemon restart): poll them for a while."""
        paths = [e.path for e in events if isinstance(e, FileModified)]
        self.open_files.suspect(paths[:MAX_SUSPECTS], now)

    def _touch(self, path: str, now: float) -> Pending:
        entry = self._pending.get(path)
        if entry is None:
            entry = self._pending[path] = Pending(path, now + self.window_s, count=0)
        entry.count += 1
        return entry

    def next_deadline(self) -> float | None:
        deadlines = [p.due for p in self._pending.values()]
        poll = self.open_files.next_deadline()
        if poll is not None:
            deadlines.append(poll)
        return min(deadlines) if deadlines else None

    def due(self, now: float) -> list[Pending]:
        """Remove and return the entries whose window has passed, oldest first."""
        ready = [p for p in self._pending.values() if p.due <= now]
        for p in ready:
            del self._pending[p.path]
        ready.sort(key=lambda p: p.due)
        return ready

    def drain(self) -> list[Pending]:
        """Remove and return every entry (on shutdown: nothing is left unrecorded)."""
        ready = sorted(self._pending.values(), key=lambda p: p.due)
        self._pending.clear()
        return ready


def settle(pendings: Iterable[Pending], stat: StatFn, known: Mapping[str, FileInfo]) -> list[Event]:
    """The events that bring ``known`` in line with what ``stat`` says of these paths."""
    view = _View(known)
    out: list[Event] = []
    for p in pendings:
        if p.moved_from is not None:
            src, dest = p.moved_from, p.path
            src_now, dest_now = stat(src), stat(dest)
            if view.get(src) and src_now is None and dest_now is not None and not view.get(dest):
                out.append(_moved(src, dest, dest_now))
                view.set(src, None)
                view.set(dest, dest_now)
                continue
            out.extend(_settle_one(src, 1, stat(src), view))
        out.extend(_settle_one(p.path, p.count, stat(p.path), view))
    return out


def _settle_one(path: str, count: int, now: FileInfo | None, view: _View) -> list[Event]:
    area = area_of(path)
    if area is None:
        return []
    before = view.get(path)
    view.set(path, now)
    if now is None:
        return [FileDeleted(path=path, area=area)] if before is not None else []
    if before is None:
        return [FileCreated(path=path, area=area, size=now.size, mtime_ns=now.mtime_ns)]
    if before != now:
        return [
            FileModified(
                path=path, area=area, size=now.size, mtime_ns=now.mtime_ns, count=max(count, 1)
            )
        ]
    return []


def _moved(src: str, dest: str, info: FileInfo) -> FileMoved:
    area, dest_area = area_of(src), area_of(dest)
    assert area is not None and dest_area is not None
    return FileMoved(
        path=src,
        area=area,
        dest_path=dest,
        dest_area=dest_area,
        size=info.size,
        mtime_ns=info.mtime_ns,
    )


class _View:
    """``known`` with the changes made so far in one ``settle`` call layered on top."""

    def __init__(self, known: Mapping[str, FileInfo]) -> None:
        self._known = known
        self._changes: dict[str, FileInfo | None] = {}

    def get(self, path: str) -> FileInfo | None:
        if path in self._changes:
            return self._changes[path]
        return self._known.get(path)

    def set(self, path: str, info: FileInfo | None) -> None:
        self._changes[path] = info
