"""Operations on a workspace, each recorded in the event log.

The CLI and the running daemon share these: archive, verify, prune, pin,
prepare. Every effect on archives goes through here, so the log is complete
whoever acted.
"""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from daemon import archive as engine
from daemon import ownership
from daemon.config import Settings, load_settings
from daemon.errors import ArchiveError, UsageError
from daemon.eventlog.events import (
    ArchiveCompleted,
    ArchiveFailed,
    ArchivePinned,
    ArchivePruned,
    ArchiveStarted,
    ArchiveUnpinned,
    ArchiveVerified,
    Event,
    StoredEvent,
    TempFilesRemoved,
    WorkspaceIdentified,
)
from daemon.eventlog.fold import State
from daemon.eventlog.replay import Replay
from daemon.eventlog.store import EventStore
from daemon.identity import Identity, ensure_identity, read_identity
from daemon.retention import Candidate, Decision, Policy, decide

log = structlog.get_logger("daemon.ops")
from daemon.prepare import Prepared, clears_member, prepare_logs  # noqa: E402

__all__ = ["Prepared", "clears_member", "prepare_logs"]

REASONS = ("pre_training", "post_training", "abandoned", "manual", "recovery")
Progress = Callable[[int, int], None]


class Workspace:
    """A workspace's settings and event log, with the state folded from it.

    The log file is created on the first write only, so read-only commands on
    a fresh workspace leave nothing behind; so is the workspace's identity
    (``.daemon/workspace.json``), made just before the first event is recorded.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        recover: bool = False,
        on_append: Callable[[StoredEvent], None] | None = None,
        snapshots: bool = False,
    ) -> None:
        self.settings = settings
        self.paths = settings.paths
        self._recover = recover
        self._on_append = on_append
        self._snapshot_every = settings.daemon.snapshot_every if snapshots else None
        """The daemon stores snapshots of the fold and records bad ones (eventlog/replay.py);
        CLI commands only read them."""
        self._store: EventStore | None = None
        self._state = State()
        """Only while the log cannot be opened (a degraded start): what could be read."""
        self._identity: Identity | None = None
        self.replay: Replay | None = None
        if self.paths.event_log.exists():
            self._open()

    def _open(self) -> EventStore:
        if self._store is None:
            self._store = EventStore.open(
                self.paths.event_log, recover=self._recover, on_append=self._on_append
            )
            self.replay = Replay(self._store, snapshot_every=self._snapshot_every)
        return self._store

    @property
    def store(self) -> EventStore:
        return self._open()

    def state(self) -> State:
        """The fold of every event so far (catching up with other writers), from the
        latest valid snapshot plus the events after it."""
        return self.replay.state() if self.replay is not None else self._state

    def identity(self) -> Identity | None:
        """The workspace's identity, or None while it has none (nothing recorded yet)."""
        if self._identity is None:
            self._identity = read_identity(self.paths.daemon_dir)
        return self._identity

    def workspace_id(self) -> str | None:
        found = self.identity()
        return found.workspace_id if found is not None else None

    def ensure_identity(self) -> Identity:
        """The identity, made (and recorded as ``WorkspaceIdentified``) if there is none."""
        if self._identity is None:
            self._identity, made = ensure_identity(self.paths.daemon_dir)
            if made:
                ident = self._identity
                self.store.append(WorkspaceIdentified(ident.workspace_id, ident.created_at))
        return self._identity

    def record(self, event: Event) -> StoredEvent:
        self.ensure_identity()
        return self.store.append(event)

    def record_many(self, events: Sequence[Event]) -> list[StoredEvent]:
        self.ensure_identity()
        return self.store.append_many(events)

    def archives(self) -> list[ownership.Listed]:
        """Every archive-named file of the archive folder, classified ours or foreign."""
        return ownership.scan(self.paths.archive_dir, self.state().archives, self.workspace_id())

    def close(self) -> None:
        if self.replay is not None and self._snapshot_every is not None:
            self.replay.save()
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_workspace(
    workspace: Path,
    config_file: Path | None = None,
    *,
    recover: bool = False,
    on_append: Callable[[StoredEvent], None] | None = None,
) -> Workspace:
    return Workspace(load_settings(workspace, config_file), recover=recover, on_append=on_append)


def cleanup_temps(ws: Workspace) -> list[Path]:
    """Remove temporary files of interrupted archive runs (if no archiver is running)."""
    if not ws.paths.archive_dir.is_dir():
        return []
    try:
        removed = engine.cleanup_temp_files(ws.paths.archive_dir)
    except OSError as e:  # read-only or unreadable: the next archive attempt records why
        log.warning("cannot clean the archive folder", path=str(ws.paths.archive_dir), error=str(e))
        return []
    if removed:
        ws.record(TempFilesRemoved(paths=tuple(str(p) for p in removed)))
    return removed


def archive_now(
    ws: Workspace,
    *,
    reason: str,
    session_id: str | None = None,
    progress: Progress | None = None,
) -> engine.ArchiveResult:
    """Write, verify and record one archive, then apply retention.

    Raises :class:`ArchiveError` (after recording ArchiveFailed) on failure.
    """
    if reason not in REASONS:
        raise ValueError(f"unknown archive reason {reason!r}")
    cleanup_temps(ws)
    ws.record(ArchiveStarted(reason=reason, session_id=session_id))
    try:
        result = engine.create_archive(
            ws.paths.workspace,
            ws.paths.archive_dir,
            reason=reason,
            session_id=session_id,
            compression_level=ws.settings.daemon.compression_level,
            progress=progress,
            workspace_id=ws.ensure_identity().workspace_id,
            host=socket.gethostname(),
            taken=ws.state().uploads,  # a copy's key is its name: never give it to another
        )
    except ArchiveError as e:
        ws.record(ArchiveFailed(reason=reason, session_id=session_id, error=str(e)))
        raise
    record_completed(
        ws, result.manifest, result.path, seconds=result.seconds, source_bytes=result.source_bytes
    )
    prune(ws)
    return result


def record_completed(
    ws: Workspace,
    manifest: engine.Manifest,
    path: Path,
    *,
    seconds: float = 0.0,
    source_bytes: int = 0,
) -> None:
    """Record a verified archive (also used to adopt one a crash left unrecorded)."""
    ws.record_many(
        [
            ArchiveCompleted(
                name=path.name,
                reason=manifest.reason,
                session_id=manifest.session_id,
                archive_id=manifest.archive_id,
                bytes=path.stat().st_size,
                members=len(manifest.members),
                source_bytes=source_bytes,
                seconds=round(seconds, 3),
                created_at=manifest.created_at,
                skipped=len(manifest.skipped),
                workspace_id=manifest.workspace_id,
                host=manifest.host,
            ),
            ArchiveVerified(name=path.name, ok=True),
        ]
    )


def in_archive_dir(ws: Workspace, path: Path) -> bool:
    """Whether ``path`` is one of this workspace's archives (events name archives by
    file name, so a copy elsewhere must not speak for the archive of that name)."""
    return path.resolve().parent == ws.paths.archive_dir.resolve()


def is_ours(ws: Workspace, path: Path) -> bool:
    """Whether ``path`` is an archive of this workspace in its archive folder (not foreign)."""
    if not in_archive_dir(ws, path):
        return False
    listed = ownership.classify(path, ws.state().archives.get(path.name), ws.workspace_id())
    return listed.ours


def verify(ws: Workspace, path: Path) -> engine.VerifyResult:
    """Verify an archive; the result is recorded only for the workspace's own archives
    (a foreign one, or a copy elsewhere, is verified but leaves the log as it is)."""
    result = engine.verify_archive(path)
    if is_ours(ws, path):
        ws.record(ArchiveVerified(name=path.name, ok=result.ok, problems=tuple(result.problems)))
    return result


def policy_of(settings: Settings) -> Policy:
    d = settings.daemon
    return Policy(d.keep_last, d.keep_daily, d.keep_weekly, d.max_total_bytes)


def prune(ws: Workspace, *, dry_run: bool = False) -> list[Decision]:
    """Apply retention to this workspace's archives (foreign ones are not even looked at);
    returns one decision per archive of ours, newest (last recorded) first."""
    folder = ws.paths.archive_dir
    decisions = decide(_candidates(ws), policy_of(ws.settings))
    if not dry_run:
        for d in decisions:
            if d.delete and _unlink_archive(folder / d.name):
                ws.record(ArchivePruned(name=d.name, bytes=d.bytes, why=d.why))
    return decisions


def held_for_upload(ws: Workspace) -> list[str]:
    """The archives rotation would delete but keeps because their copy is not verified yet
    (why the folder may hold more than ``keep_last``), newest first."""
    candidates = _candidates(ws)  # one look at the folder (it reads manifests)
    unheld = [replace(c, held="") for c in candidates]
    held = {c.name for c in candidates if c.held}
    return [d.name for d in decide(unheld, policy_of(ws.settings)) if d.delete and d.name in held]


def _candidates(ws: Workspace) -> list[Candidate]:
    """Retention's view of our archives in the folder now (none if there is no folder)."""
    if not ws.paths.archive_dir.is_dir():
        return []
    state = ws.state()
    ours = [a for a in ws.archives() if a.ours]
    sizes = {}
    for a in ours:
        try:
            sizes[a.name] = a.path.stat().st_size
        except FileNotFoundError:
            continue  # another pruner of ours got there first
    ours = [a for a in ours if a.name in sizes]
    candidates = ownership.candidates(ours, state, sizes)
    if ws.settings.remote is None:
        return candidates
    owed = {a.name for a in state.pending_uploads()}  # never delete one whose copy is owed
    return [replace(c, held="not uploaded yet" if c.name in owed else "") for c in candidates]


def _unlink_archive(path: Path) -> bool:
    """Delete one final archive; only regular files with an archive name are touched."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode) or not engine.ARCHIVE_RE.match(path.name):
            return False
        path.unlink()
    except FileNotFoundError:
        return False  # another pruner got there first
    return True


def set_pinned(ws: Workspace, path: Path, pinned: bool) -> bool:
    """Pin or unpin; False when it already was in that state."""
    if not in_archive_dir(ws, path):
        raise UsageError(f"{path} is not in the archive folder {ws.paths.archive_dir}")
    if not is_ours(ws, path):
        raise UsageError(f"{path} is a foreign archive (not made by this workspace): left alone")
    if (path.name in ws.state().pins) == pinned:
        return False
    ws.record(ArchivePinned(name=path.name) if pinned else ArchiveUnpinned(name=path.name))
    return True
