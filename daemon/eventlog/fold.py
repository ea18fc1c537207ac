"""The daemon's state: a pure fold over the event log.

``fold(state, events)`` returns a new :class:`State` and never mutates its
input; it copies the containers once per call (not once per event), so
replaying tens of thousands of file events stays linear. ``apply`` is the
one-event case. No IO happens here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from daemon.eventlog.events import StoredEvent

FINAL_REASONS = frozenset({"post_training", "abandoned", "recovery"})


@dataclass(frozen=True)
class FileInfo:
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    state: str
    """starting, running, stopped or abandoned."""
    archive: bool = True
    pid: int = 0
    host: str = ""
    started_at: str = ""
    boot_id: str = ""
    start_time: int | None = None
    outcome: str | None = None
    acknowledged: bool = False
    pre_archive: str | None = None
    final_archive: str | None = None
    prepared: bool = False

    @property
    def ended(self) -> bool:
        return self.state in ("stopped", "abandoned")

    @property
    def needs_final_archive(self) -> bool:
        return self.ended and self.archive and self.final_archive is None


@dataclass(frozen=True)
class ArchiveInfo:
    name: str
    reason: str
    session_id: str | None
    bytes: int
    created_at: str
    archive_id: str = ""
    verified: bool | None = None
    seq: int = 0
    """The seq of its ArchiveCompleted: the order in which this workspace recorded it,
    which is what "newest" means for retention (never the name or the clock)."""
    recorded_at: str = ""
    """The log's timestamp of that event (ISO-8601 UTC)."""
    workspace_id: str | None = None


@dataclass(frozen=True)
class UploadInfo:
    """An archive's verified object (``ArchiveUploaded``), while the log knows it exists."""

    name: str
    key: str
    sha256: str
    bytes: int
    seq: int = 0
    """The seq of its ArchiveUploaded: "newest" for remote retention."""
    recorded_at: str = ""
    archive_id: str = ""
    remote_pruned: bool = False
    """Remote retention deleted the object; the entry stays while the local archive does,
    so that an archive is never uploaded twice."""


@dataclass(frozen=True)
class State:
    last_seq: int = 0
    daemon_pid: int | None = None
    daemon_running: bool = False
    files: Mapping[str, FileInfo] = field(default_factory=lambda: MappingProxyType({}))
    sessions: Mapping[str, SessionInfo] = field(default_factory=lambda: MappingProxyType({}))
    session_order: tuple[str, ...] = ()
    archives: Mapping[str, ArchiveInfo] = field(default_factory=lambda: MappingProxyType({}))
    pins: frozenset[str] = frozenset()
    archive_failures: int = 0
    last_archive_error: str | None = None
    last_rescan_seq: int = 0
    uploads: Mapping[str, UploadInfo] = field(default_factory=lambda: MappingProxyType({}))
    upload_failures: int = 0
    last_upload_error: str | None = None
    last_upload_at: str | None = None

    @property
    def current_session(self) -> SessionInfo | None:
        """The newest session the log knows, running or not."""
        return self.sessions[self.session_order[-1]] if self.session_order else None

    def pending_sessions(self) -> list[SessionInfo]:
        """Ended sessions whose final archive was never made (interrupted work)."""
        return [s for sid in self.session_order if (s := self.sessions[sid]).needs_final_archive]

    def pending_uploads(self) -> list[ArchiveInfo]:
        """Verified archives never uploaded, oldest (first recorded) first. An upload counts
        for the archive whose id it recorded (a name can come back after a prune)."""
        return sorted(
            (a for a in self.archives.values() if a.verified and not self.uploaded(a)),
            key=lambda a: a.seq,
        )

    def uploaded(self, a: ArchiveInfo) -> bool:
        up = self.uploads.get(a.name)
        return up is not None and (up.archive_id == a.archive_id or not up.archive_id)


class _Builder:
    """Mutable working copy used inside one ``fold`` call only."""

    def __init__(self, state: State) -> None:
        self.scalars: dict[str, Any] = {
            "last_seq": state.last_seq,
            "daemon_pid": state.daemon_pid,
            "daemon_running": state.daemon_running,
            "archive_failures": state.archive_failures,
            "last_archive_error": state.last_archive_error,
            "last_rescan_seq": state.last_rescan_seq,
            "upload_failures": state.upload_failures,
            "last_upload_error": state.last_upload_error,
            "last_upload_at": state.last_upload_at,
        }
        self.uploads = dict(state.uploads)
        self.files = dict(state.files)
        self.sessions = dict(state.sessions)
        self.order = list(state.session_order)
        self.archives = dict(state.archives)
        self.pins = set(state.pins)

    def freeze(self) -> State:
        return State(
            files=MappingProxyType(self.files),
            sessions=MappingProxyType(self.sessions),
            session_order=tuple(self.order),
            archives=MappingProxyType(self.archives),
            pins=frozenset(self.pins),
            uploads=MappingProxyType(self.uploads),
            **self.scalars,
        )

    def session(self, sid: str, **changes: Any) -> None:
        if sid not in self.sessions:
            self.sessions[sid] = self._adopt_archives(SessionInfo(session_id=sid, state="starting"))
            self.order.append(sid)
        self.sessions[sid] = replace(self.sessions[sid], **changes)

    def _adopt_archives(self, new: SessionInfo) -> SessionInfo:
        """Link archives recorded before the session itself (adopted after a crash)."""
        for a in self.archives.values():
            if a.session_id == new.session_id:
                if a.reason == "pre_training":
                    new = replace(new, pre_archive=a.name)
                elif a.reason in FINAL_REASONS:
                    new = replace(new, final_archive=a.name)
        return new

    def apply(self, ev: StoredEvent) -> None:
        d = ev.data
        self.scalars["last_seq"] = ev.seq
        match ev.type:
            case "DaemonStarted":
                self.scalars.update(daemon_pid=d["pid"], daemon_running=True)
            case "DaemonStopped":
                self.scalars["daemon_running"] = False
            case "FileCreated" | "FileModified":
                self.files[d["path"]] = FileInfo(d.get("size", 0), d.get("mtime_ns", 0))
            case "FileDeleted":
                self.files.pop(d["path"], None)
            case "FileMoved":
                self.files.pop(d["path"], None)
                if d.get("dest_area"):
                    self.files[d["dest_path"]] = FileInfo(d.get("size", 0), d.get("mtime_ns", 0))
            case "Rescanned":
                self.scalars["last_rescan_seq"] = ev.seq
            case "SessionStarted":
                self.session(
                    d["session_id"],
                    state="starting",
                    archive=d.get("archive", True),
                    pid=d.get("pid", 0),
                    host=d.get("host", ""),
                    started_at=d.get("started_at", ""),
                    boot_id=d.get("boot_id", ""),
                    start_time=d.get("start_time"),
                )
            case "SessionAcknowledged":
                self.session(d["session_id"], acknowledged=True, pre_archive=d.get("archive"))
            case "SessionRunning":
                if not self.sessions.get(d["session_id"], _NEW).ended:
                    self.session(d["session_id"], state="running")
            case "SessionStopped":
                self.session(d["session_id"], state="stopped", outcome=d.get("outcome"))
            case "SessionAbandoned":
                self.session(d["session_id"], state="abandoned")
            case "WorkspacePrepared":
                self.session(d["session_id"], prepared=True)
            case "ArchiveCompleted":
                self._archive_completed(d, ev)
            case "ArchiveFailed":
                self.scalars["archive_failures"] += 1
                self.scalars["last_archive_error"] = d.get("error")
            case "ArchiveVerified":
                if d["name"] in self.archives:
                    self.archives[d["name"]] = replace(self.archives[d["name"]], verified=d["ok"])
            case "ArchivePruned" | "ArchiveMissing":
                self.archives.pop(d["name"], None)
                self.pins.discard(d["name"])
                upload = self.uploads.get(d["name"])
                if upload is not None and upload.remote_pruned:
                    del self.uploads[d["name"]]
            case "ArchiveUploaded":
                self.uploads[d["name"]] = UploadInfo(
                    d["name"], d["key"], d["sha256"], d.get("bytes", 0), ev.seq, ev.ts,
                    d.get("archive_id", ""),
                )  # fmt: skip
                self.scalars.update(last_upload_error=None, last_upload_at=ev.ts)
            case "ArchiveUploadFailed":
                self.scalars["upload_failures"] += 1
                self.scalars["last_upload_error"] = d.get("error")
            case "RemoteArchivePruned":
                upload = self.uploads.get(d["name"])
                if upload is not None and d["name"] in self.archives:
                    self.uploads[d["name"]] = replace(upload, remote_pruned=True)
                else:
                    self.uploads.pop(d["name"], None)
            case "ArchivePinned":
                self.pins.add(d["name"])
            case "ArchiveUnpinned":
                self.pins.discard(d["name"])
            case _:
                pass  # informational events leave the state as it is

    def _archive_completed(self, d: dict[str, Any], ev: StoredEvent) -> None:
        self.archives[d["name"]] = ArchiveInfo(
            name=d["name"],
            reason=d["reason"],
            session_id=d.get("session_id"),
            bytes=d.get("bytes", 0),
            created_at=d.get("created_at", ""),
            archive_id=d.get("archive_id", ""),
            seq=ev.seq,
            recorded_at=ev.ts,
            workspace_id=d.get("workspace_id"),
        )
        self.scalars["last_archive_error"] = None
        sid = d.get("session_id")
        if sid and sid in self.sessions:
            if d["reason"] == "pre_training":
                self.session(sid, pre_archive=d["name"])
            elif d["reason"] in FINAL_REASONS:
                self.session(sid, final_archive=d["name"])


_NEW = SessionInfo(session_id="", state="starting")


def fold(state: State, events: Iterable[StoredEvent]) -> State:
    """The state after ``events``; ``state`` itself is left unchanged."""
    builder = _Builder(state)
    for ev in events:
        builder.apply(ev)
    return builder.freeze()


def apply(state: State, event: StoredEvent) -> State:
    return fold(state, (event,))
