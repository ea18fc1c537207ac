"""watchdog observers on logs/, models/ and the lock file's folder, as one stoppable context.

Handlers only translate and enqueue (``sink``); they never raise, because an
exception in a handler silently kills watchdog's dispatcher thread. What they
put on the queue:

* :class:`daemon.watch.coalesce.Raw` for a file under ``logs/`` or ``models/``;
* :class:`LockTouched` when the lock file was created, written or closed after
  writing. Opening it and closing it without writing (which is all the
  daemon's own probes do) is not subscribed to, so probes wake nothing;
* :class:`RescanWanted` when events may have been lost: an inotify queue
  overflow (watchdog only logs it, so a logging handler listens for it) or a
  folder that left the tree;
* :class:`AreaChanged` when a folder named ``logs`` or ``models`` was created,
  deleted or moved in the workspace root (a non-recursive watch on the root),
  or a watched area deleted itself: the loop then calls :meth:`Watcher.rearm`,
  which compares each watch's folder identity with the folder at its path
  (:mod:`daemon.watch.areas`) and moves the watch to the new folder;
* :class:`WatcherDegraded` once, when inotify watches ran out and a polling
  observer took over.

With inotify the areas are not watched per write: only create, delete, move,
open and close (:data:`AREA_EVENTS`); :class:`daemon.watch.growth.OpenFiles`
stats the files that stay open. The polling observer keeps
:data:`POLLING_AREA_EVENTS` (it has no opens or closes to report).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from daemon.eventlog.events import Area, WatcherDegraded, WatchRearmed
from daemon.lifecycle import Service
from daemon.watch.areas import Ident, identity, plan_rearm
from daemon.watch.coalesce import AREAS, Raw, RawKind

Sink = Callable[[object], None]
ObserverFactory = Callable[[], BaseObserver]

AREA_EVENTS = [  # no IN_MODIFY: the growth of open files is polled (daemon.watch.growth)
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
POLLING_AREA_EVENTS = [  # a polling observer reports changes, not opens and closes
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
LOCK_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent]
ROOT_EVENTS = [DirCreatedEvent, DirDeletedEvent, DirMovedEvent]
"""On the workspace root (non-recursive): a watched area's name appearing or going."""
_KINDS: dict[str, RawKind] = {
    "created": "created",
    "modified": "modified",
    "attrib": "modified",
    "closed": "closed",
    "opened": "opened",
    "closed_no_write": "released",
    "deleted": "deleted",
    "moved": "moved",
}
POLLING_TIMEOUT_S = 2.0
OVERFLOW_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


@dataclass(frozen=True)
class LockTouched:
    """The lock file changed (or its writer closed it): look at it again."""


@dataclass(frozen=True)
class RescanWanted:
    trigger: str


@dataclass(frozen=True)
class AreaChanged:
    """A folder named after a watched area was created, deleted or moved: re-arm."""

    area: Area
    trigger: str


class _Handler(FileSystemEventHandler):
    def __init__(self, workspace: Path, lock_file: Path, sink: Sink) -> None:
        self._prefix = str(workspace) + os.sep
        self._lock = str(lock_file)
        self._sink = sink
        self._areas = {str(workspace / area): area for area in AREAS}

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._translate(event)
        except Exception:
            self._safe_put(RescanWanted("handler_error"))

    def _translate(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        if src == self._lock:
            if not event.is_directory:
                self._sink(LockTouched())
            return
        if not src.startswith(self._prefix):
            return
        if event.is_directory:
            dest = os.fsdecode(event.dest_path) if event.dest_path else ""
            area = self._areas.get(src) or self._areas.get(dest)
            if area is not None:
                self._sink(AreaChanged(area, event.event_type))
            elif event.event_type in ("deleted", "moved"):
                self._sink(RescanWanted(f"dir_{event.event_type}"))
            return
        kind = _KINDS.get(event.event_type)
        if kind is None:
            return
        dest = os.fsdecode(event.dest_path) if event.dest_path else ""
        rel_dest = dest[len(self._prefix) :] if dest.startswith(self._prefix) else None
        if kind == "moved" and rel_dest is None:
            kind, rel_dest = "deleted", None
        self._sink(Raw(kind, src[len(self._prefix) :], rel_dest if kind == "moved" else None))

    def _safe_put(self, item: object) -> None:
        try:
            self._sink(item)
        except Exception:
            pass


class _OverflowListener(logging.Handler):
    """watchdog reports a lost-events overflow only by logging it."""

    def __init__(self, sink: Sink) -> None:
        super().__init__(level=logging.WARNING)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if "overflow" in record.getMessage().lower():
                self._sink(RescanWanted("overflow"))
        except Exception:
            pass


class Watcher(Service):
    """Observers on the watched areas and the lock file; ``with Watcher(...)`` starts and joins."""

    def __init__(
        self,
        workspace: Path,
        lock_file: Path,
        sink: Sink,
        *,
        polling_fallback: bool = True,
        observer_factory: ObserverFactory = Observer,
        polling_factory: ObserverFactory | None = None,
    ) -> None:
        self.workspace = workspace
        self.lock_file = lock_file
        self._sink = sink
        self._polling_fallback = polling_fallback
        self._observer_factory = observer_factory
        self._polling_factory = polling_factory or (
            lambda: PollingObserver(timeout=POLLING_TIMEOUT_S)
        )
        self._observer: BaseObserver | None = None
        self._overflow = _OverflowListener(sink)
        self._handler = _Handler(workspace, lock_file, sink)
        self._area_watch: dict[Area, ObservedWatch | None] = {}
        self._armed: dict[Area, Ident | None] = {}
        """The identity of the folder each area's watch was set on (None: not watched)."""
        self._area_events = AREA_EVENTS
        self._made_areas = False
        self.mode = "stopped"

    def start(self) -> None:
        if not self._made_areas:  # only at the first start: later, a missing folder is
            for area in AREAS:  # somebody's doing (mv logs x && mkdir logs must not fail)
                (self.workspace / area).mkdir(parents=True, exist_ok=True)
            self._made_areas = True
        self._handler = _Handler(self.workspace, self.lock_file, self._sink)
        try:
            self._observer = self._started(self._observer_factory, AREA_EVENTS)
            self.mode = "inotify"
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EMFILE) or not self._polling_fallback:
                raise
            self._observer = self._started(self._polling_factory, POLLING_AREA_EVENTS)
            self.mode = "polling"
            self._sink(WatcherDegraded(reason=f"inotify: {e.strerror or e}", fallback="polling"))
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).addHandler(self._overflow)

    def _started(
        self, factory: ObserverFactory, area_events: list[type[FileSystemEvent]]
    ) -> BaseObserver:
        observer = factory()
        self._area_events = area_events
        self._area_watch, self._armed = {}, {}
        for area in AREAS:
            self._arm(observer, area, identity(self.workspace / area))
        root_events = ROOT_EVENTS
        if self.lock_file.parent == self.workspace:  # one watch per folder: two would share
            root_events = ROOT_EVENTS + LOCK_EVENTS  # one inotify watch, the last mask winning
        else:
            observer.schedule(
                self._handler, str(self.lock_file.parent), recursive=False, event_filter=LOCK_EVENTS
            )
        observer.schedule(
            self._handler, str(self.workspace), recursive=False, event_filter=root_events
        )
        try:
            observer.start()
        except BaseException:
            _stop(observer)
            raise
        return observer

    def _arm(self, observer: BaseObserver, area: Area, ident: Ident | None) -> str:
        """Watch the folder now at ``area``'s path (identified by ``ident``), if there is one.

        Returns why no watch could be set ("" when it was, or there is no folder). A
        folder that cannot be watched (the inotify watch limit, say) is not tried again
        until another folder is at the path: the rescans still see its files."""
        self._area_watch[area], self._armed[area] = None, None
        if ident is None:
            return ""
        path = str(self.workspace / area)
        try:
            watch = observer.schedule(
                self._handler, path, recursive=True, event_filter=self._area_events
            )
        except FileNotFoundError:  # gone again in between: the next look re-arms
            return ""
        except OSError as e:
            self._armed[area] = ident
            return f"{type(e).__name__}: {e}"
        self._area_watch[area], self._armed[area] = watch, ident
        return ""

    def rearm(self, trigger: str) -> list[WatchRearmed]:
        """Move the watch of every area whose folder is not the one watched; say what moved.

        Called by the main loop on :class:`AreaChanged` and on every periodic check
        (``trigger="tick"``): two ``lstat`` calls when nothing changed.
        """
        observer = self._observer
        if observer is None:
            return []
        current = {area: identity(self.workspace / area) for area in AREAS}
        lost = {area for area in AREAS if self._lost(observer, area)}
        out: list[WatchRearmed] = []
        for plan in plan_rearm(self._armed, current, lost):
            old = self._area_watch.get(plan.area)
            if old is not None:
                _unschedule(observer, old)
            error = self._arm(observer, plan.area, plan.new)
            new = self._armed[plan.area] if self._area_watch[plan.area] else None
            out.append(
                WatchRearmed(
                    area=plan.area,
                    reason=plan.reason,
                    trigger=trigger,
                    old_inode=plan.old[1] if plan.old else None,
                    new_inode=new[1] if new else None,
                    missing=plan.new is None,
                    error=error,
                )
            )
        return out

    def _lost(self, observer: BaseObserver, area: Area) -> bool:
        watch = self._area_watch.get(area)
        if watch is None:
            return False
        return not any(e.watch == watch and e.is_alive() for e in observer.emitters)

    @property
    def missing(self) -> tuple[Area, ...]:
        """The areas nothing watches now: no folder there (or it could not be watched)."""
        if self._observer is None:
            return ()
        return tuple(a for a in AREAS if self._area_watch.get(a) is None)

    def areas(self) -> dict[str, int | None]:
        """Each area's watched folder (its inode), None while it is not watched: for health."""
        return {
            area: ident[1] if ident and self._area_watch.get(area) else None
            for area, ident in self._armed.items()
        }

    def alive(self) -> bool:
        """The observer thread and every emitter thread are running.

        An area's watch that stopped by itself (its folder was deleted) does not
        count: :meth:`rearm` replaces it, without restarting everything.
        """
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        areas = {w for w in self._area_watch.values() if w is not None}
        return all(e.is_alive() for e in observer.emitters if e.watch not in areas)

    def stop(self) -> None:
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeHandler(self._overflow)
        if self._observer is not None:
            _stop(self._observer)
            self._observer = None
        self.mode = "stopped"


def _unschedule(observer: BaseObserver, watch: ObservedWatch) -> None:
    try:
        observer.unschedule(watch)
    except (KeyError, OSError):  # already gone with its folder
        pass


def _stop(observer: BaseObserver) -> None:
    try:
        observer.stop()
    finally:
        if observer.is_alive():
            observer.join(timeout=10)
