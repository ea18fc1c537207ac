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
* :class:`WatcherDegraded` once, when inotify watches ran out and a polling
  observer took over.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from daemon.eventlog.events import WatcherDegraded
from daemon.lifecycle import Service
from daemon.watch.coalesce import AREAS, Raw, RawKind

Sink = Callable[[object], None]
ObserverFactory = Callable[[], BaseObserver]

AREA_EVENTS = [  # no close events: a settled path is stat'ed after its last write anyway
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]
LOCK_EVENTS = [FileCreatedEvent, FileModifiedEvent, FileClosedEvent, FileDeletedEvent]
_KINDS: dict[str, RawKind] = {
    "created": "created",
    "modified": "modified",
    "attrib": "modified",
    "closed": "closed",
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


class _Handler(FileSystemEventHandler):
    def __init__(self, workspace: Path, lock_file: Path, sink: Sink) -> None:
        self._prefix = str(workspace) + os.sep
        self._lock = str(lock_file)
        self._sink = sink

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
            if event.event_type in ("deleted", "moved"):
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
        self.mode = "stopped"

    def start(self) -> None:
        for area in AREAS:
            (self.workspace / area).mkdir(parents=True, exist_ok=True)
        try:
            self._observer = self._started(self._observer_factory)
            self.mode = "inotify"
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EMFILE) or not self._polling_fallback:
                raise
            self._observer = self._started(self._polling_factory)
            self.mode = "polling"
            self._sink(WatcherDegraded(reason=f"inotify: {e.strerror or e}", fallback="polling"))
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).addHandler(self._overflow)

    def _started(self, factory: ObserverFactory) -> BaseObserver:
        observer = factory()
        handler = _Handler(self.workspace, self.lock_file, self._sink)
        for area in AREAS:
            observer.schedule(
                handler, str(self.workspace / area), recursive=True, event_filter=AREA_EVENTS
            )
        observer.schedule(
            handler, str(self.lock_file.parent), recursive=False, event_filter=LOCK_EVENTS
        )
        try:
            observer.start()
        except BaseException:
            _stop(observer)
            raise
        return observer

    def alive(self) -> bool:
        """The observer thread and every emitter thread are running."""
        observer = self._observer
        if observer is None or not observer.is_alive():
            return False
        return all(e.is_alive() for e in observer.emitters)

    def stop(self) -> None:
        for name in OVERFLOW_LOGGERS:
            logging.getLogger(name).removeHandler(self._overflow)
        if self._observer is not None:
            _stop(self._observer)
            self._observer = None
        self.mode = "stopped"


def _stop(observer: BaseObserver) -> None:
    try:
        observer.stop()
    finally:
        if observer.is_alive():
            observer.join(timeout=10)
