"""Everything the daemon sees or does, as small frozen dataclasses named in the past tense.

An event's ``type`` is its class name; its JSON payload is its fields
(``dataclasses.asdict``). ``SCHEMA`` is bumped when a type's fields change
incompatibly; :func:`decode` ignores unknown fields so an old daemon can read a
newer log, and fills missing optional ones from defaults. The events of the
daemon itself (its life, its config, its health) live in ``daemon_events``,
the base class in ``base``; this module registers them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from daemon.eventlog.base import Area, Event
from daemon.eventlog.daemon_events import (
    AckFailed,
    ConfigRejected,
    ConfigReloaded,
    DaemonStarted,
    DaemonStopped,
    DiskFull,
    DiskSpaceRecovered,
    EventLogRecovered,
    JobFailed,
    JobMissed,
    SnapshotIgnored,
    SnapshotLoaded,
    WatcherDegraded,
    WatchRearmed,
    WorkspaceIdentified,
)
from daemon.eventlog.remote_events import (
    ArchiveUploaded,
    ArchiveUploadFailed,
    RemoteArchivePruned,
    RemoteUploadsAborted,
)

# --- daemon lifecycle --------------------------------------------------------


# --- files -------------------------------------------------------------------


@dataclass(frozen=True)
class FileCreated(Event):
    path: str
    area: Area
    size: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class FileModified(Event):
    path: str
    area: Area
    size: int = 0
    mtime_ns: int = 0
    count: int = 1
    """How many raw notifications this coalesced event stands for."""


@dataclass(frozen=True)
class FileDeleted(Event):
    path: str
    area: Area


@dataclass(frozen=True)
class FileMoved(Event):
    path: str
    area: Area
    dest_path: str
    dest_area: Area | None = None
    size: int = 0
    mtime_ns: int = 0


@dataclass(frozen=True)
class Rescanned(Event):
    trigger: str
    files: int
    created: int = 0
    modified: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class ModelInvalid(Event):
    """A model zip in models/ cannot be opened as a zip (truncated or corrupt).

    ``size`` and ``mtime_ns`` name the version found invalid: the daemon reports
    each version once.
    """

    path: str
    error: str
    size: int = 0
    mtime_ns: int = 0


# --- sessions ----------------------------------------------------------------


@dataclass(frozen=True)
class SessionStarted(Event):
    session_id: str
    pid: int = 0
    host: str = ""
    started_at: str = ""
    archive: bool = True
    boot_id: str = ""
    """With ``pid`` and ``start_time``, who the trainer is (absent in older logs)."""
    start_time: int | None = None
    """The trainer process's start time in clock ticks after boot (``/proc/PID/stat``)."""


@dataclass(frozen=True)
class SessionAcknowledged(Event):
    session_id: str
    archive: str | None = None
    ready: bool = True
    """False when the daemon answered at once that it could not prepare (``reason`` says why)."""
    reason: str | None = None


@dataclass(frozen=True)
class SessionRunning(Event):
    session_id: str


@dataclass(frozen=True)
class SessionStopped(Event):
    session_id: str
    outcome: str | None = None


@dataclass(frozen=True)
class SessionAbandoned(Event):
    session_id: str
    pid: int = 0
    last_state: str = ""


@dataclass(frozen=True)
class LockFileInvalid(Event):
    path: str
    error: str


@dataclass(frozen=True)
class WorkspacePrepared(Event):
    session_id: str
    archive: str
    removed: int
    kept: int = 0


@dataclass(frozen=True)
class PrepareSkipped(Event):
    """Preparing stopped (or never began) because the lock no longer said this session was
    ``starting`` under a held flock: its trainer went on (ack timeout) or died."""

    session_id: str
    archive: str
    removed: int = 0
    """Files removed before it stopped (0 when it never began); no folder was removed."""
    why: str = ""
    """Why, when it is not the lock (an earlier session's trainer still lives)."""


# --- archives ----------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveStarted(Event):
    reason: str
    session_id: str | None = None


@dataclass(frozen=True)
class ArchiveCompleted(Event):
    name: str
    reason: str
    session_id: str | None
    archive_id: str
    bytes: int
    members: int
    source_bytes: int = 0
    seconds: float = 0.0
    created_at: str = ""
    skipped: int = 0
    workspace_id: str | None = None
    """The id its manifest names (None in archives made before workspaces had one)."""
    host: str | None = None


@dataclass(frozen=True)
class ArchiveFailed(Event):
    reason: str
    session_id: str | None
    error: str


@dataclass(frozen=True)
class ArchiveVerified(Event):
    name: str
    ok: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArchivePruned(Event):
    name: str
    bytes: int = 0
    why: str = ""


@dataclass(frozen=True)
class ArchiveMissing(Event):
    """A recorded archive is gone from the archive folder, and not by rotation (deleted by
    hand): the log forgets it, so nothing waits for it any longer (an upload, say)."""

    name: str


@dataclass(frozen=True)
class ArchivePinned(Event):
    name: str


@dataclass(frozen=True)
class ArchiveUnpinned(Event):
    name: str


@dataclass(frozen=True)
class TempFilesRemoved(Event):
    paths: tuple[str, ...]


# --- scheduler ---------------------------------------------------------------


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        DaemonStarted,
        DaemonStopped,
        WorkspaceIdentified,
        ConfigReloaded,
        ConfigRejected,
        FileCreated,
        FileModified,
        FileDeleted,
        FileMoved,
        Rescanned,
        WatcherDegraded,
        WatchRearmed,
        ModelInvalid,
        SessionStarted,
        SessionAcknowledged,
        SessionRunning,
        SessionStopped,
        SessionAbandoned,
        LockFileInvalid,
        WorkspacePrepared,
        PrepareSkipped,
        ArchiveStarted,
        ArchiveCompleted,
        ArchiveFailed,
        ArchiveVerified,
        ArchivePruned,
        ArchiveMissing,
        ArchivePinned,
        ArchiveUnpinned,
        TempFilesRemoved,
        ArchiveUploaded,
        ArchiveUploadFailed,
        RemoteArchivePruned,
        RemoteUploadsAborted,
        JobFailed,
        JobMissed,
        EventLogRecovered,
        DiskFull,
        DiskSpaceRecovered,
        AckFailed,
        SnapshotLoaded,
        SnapshotIgnored,
    )
}


def decode(type_name: str, data: dict[str, Any]) -> Event | None:
    """Rebuild an event from its stored type and payload; None for an unknown type."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    for f in dataclasses.fields(cls):
        if f.type in ("tuple[str, ...]",) and isinstance(kwargs.get(f.name), list):
            kwargs[f.name] = tuple(kwargs[f.name])
    return cls(**kwargs)


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log holds it."""

    seq: int
    ts: str
    type: str
    schema: int
    data: dict[str, Any]

    @property
    def event(self) -> Event | None:
        return decode(self.type, self.data)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "ts": self.ts, "type": self.type, "data": self.data}
