"""Events of the daemon itself: its life, its config, its watches, its disk and its cache.

Registered with the others in :data:`daemon.eventlog.events.EVENT_TYPES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.eventlog.base import Area, Event


@dataclass(frozen=True)
class DaemonStarted(Event):
    pid: int
    version: str
    workspace: str


@dataclass(frozen=True)
class DaemonStopped(Event):
    pid: int
    reason: str = "signal"


@dataclass(frozen=True)
class WorkspaceIdentified(Event):
    """The workspace got its permanent id (``.daemon/workspace.json``), once in its life."""

    workspace_id: str
    created_at: str


@dataclass(frozen=True)
class ConfigReloaded(Event):
    path: str


@dataclass(frozen=True)
class ConfigRejected(Event):
    path: str
    error: str


@dataclass(frozen=True)
class WatcherDegraded(Event):
    reason: str
    fallback: str


@dataclass(frozen=True)
class WatchRearmed(Event):
    """``logs/`` or ``models/`` is no longer the folder the watch was set on (moved away,
    deleted, recreated, mounted over): the old watch was dropped and, unless ``missing``,
    a new one set on the folder now at that path (identified by ``new_inode``)."""

    area: Area
    reason: str
    """``missing``, ``appeared``, ``replaced`` (another folder at the path) or ``watch_lost``."""
    trigger: str = ""
    """What made the daemon look: the notification (``moved``, ``deleted``, ``created``) or
    ``tick`` (the periodic identity check)."""
    old_inode: int | None = None
    new_inode: int | None = None
    """The folder now watched; None when nothing is (``missing``, or ``error``)."""
    missing: bool = False
    """No folder at the path: nothing is watched until one appears."""
    error: str = ""
    """Why the new folder could not be watched (the inotify watch limit, say)."""


@dataclass(frozen=True)
class JobFailed(Event):
    job: str
    error: str


@dataclass(frozen=True)
class JobMissed(Event):
    job: str
    scheduled_at: str = ""


@dataclass(frozen=True)
class EventLogRecovered(Event):
    """The event log was unreadable at start; it was set aside and a new one begun."""

    moved_to: str
    recovered: int
    error: str


@dataclass(frozen=True)
class DiskFull(Event):
    """The event log could not be appended to (no space): the daemon holds what it must
    record in memory, in order, and appends it all, after this event, once there is room."""

    path: str
    error: str
    since: str = ""
    """When the wait began (UTC, ISO-8601); the event itself is appended when it ends."""


@dataclass(frozen=True)
class DiskSpaceRecovered(Event):
    """The wait that :class:`DiskFull` began ended: the held events precede this one."""

    path: str
    waited_s: float
    held: int
    """How many events were held in memory and appended between the two."""
    dropped: int = 0
    """File events not held (past the bound); a rescan follows and records the differences."""


@dataclass(frozen=True)
class AckFailed(Event):
    """The acknowledgement file could not be written (permission, read-only, full disk)."""

    session_id: str
    path: str
    error: str


@dataclass(frozen=True)
class SnapshotLoaded(Event):
    """The daemon started from the snapshot at ``seq`` (0: none) and folded ``replayed``
    events after it."""

    seq: int
    replayed: int


@dataclass(frozen=True)
class SnapshotIgnored(Event):
    """A stored snapshot of the fold failed a check; it was dropped, never trusted, and the
    state rebuilt from the events."""

    seq: int
    reason: str
