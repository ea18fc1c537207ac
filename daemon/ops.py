"""Operations on a workspace, each recorded in the event log.

The CLI and the running daemon share these: archive, verify, prune, pin,
prepare. Every effect on archives goes through here, so the log is complete
whoever acted.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon import archive as engine
from daemon import ownership
from daemon.config import Settings, load_settings
from daemon.errors import ArchiveError, DaemonError, UsageError
from daemon.eventlog.events import (
    ArchiveCompleted,
    ArchiveFailed,
    ArchivePinned,
    ArchivePruned,
    ArchiveStarted,
    ArchiveUnpinned,
    ArchiveVerified,
    Event,
    PrepareSkipped,
    StoredEvent,
    TempFilesRemoved,
    WorkspaceIdentified,
    WorkspacePrepared,
)
from daemon.eventlog.fold import State, fold
from daemon.eventlog.store import EventStore
from daemon.identity import Identity, ensure_identity, read_identity
from daemon.openfiles import OpenFiles
from daemon.retention import Decision, Policy, decide

log = structlog.get_logger("daemon.ops")
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
    ) -> None:
        self.settings = settings
        self.paths = settings.paths
        self._recover = recover
        self._on_append = on_append
        self._store: EventStore | None = None
        self._state = State()
        self._identity: Identity | None = None
        if self.paths.event_log.exists():
            self._open()

    def _open(self) -> EventStore:
        if self._store is None:
            self._store = EventStore.open(
                self.paths.event_log, recover=self._recover, on_append=self._on_append
            )
        return self._store

    @property
    def store(self) -> EventStore:
        return self._open()

    def state(self) -> State:
        """The fold of every event so far (catching up with other writers)."""
        if self._store is not None:
            new = list(self._store.read(after=self._state.last_seq))
            if new:
                self._state = fold(self._state, new)
        return self._state

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
    if not folder.is_dir():
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
    decisions = decide(ownership.candidates(ours, state, sizes), policy_of(ws.settings))
    if not dry_run:
        for d in decisions:
            if d.delete and _unlink_archive(folder / d.name):
                ws.record(ArchivePruned(name=d.name, bytes=d.bytes, why=d.why))
    return decisions


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


@dataclass(frozen=True)
class Prepared:
    removed: int
    kept: int
    complete: bool = True
    """False when ``still_ours`` turned False and preparing stopped early."""


def prepare_logs(
    ws: Workspace,
    archive_path: Path,
    session_id: str,
    *,
    still_ours: Callable[[], bool] | None = None,
    open_files: OpenFiles | None = None,
) -> Prepared:
    """Remove from logs/ and the other ``prepare_clears`` folders (by default also
    models/checkpoints/ and models/backups/) every file the verified archive holds
    unchanged; the final model, config/ and root checkpoints stay.

    A file is removed only when its size, mtime and sha256 all equal the
    manifest's and no live process holds it open (``open_files``, from
    :func:`~daemon.openfiles.scan_open_files`); anything else (changed, new, a
    symlink, open) stays. ``still_ours`` is asked just before each unlink and each
    folder removal: once it says False (the trainer stopped waiting and may be
    writing logs), nothing more is removed and ``PrepareSkipped`` is recorded
    instead of ``WorkspacePrepared``.
    """
    state = ws.state()
    info = state.archives.get(archive_path.name)
    if info is None or not info.verified:
        raise DaemonError(f"{archive_path.name}: not a verified archive; logs/ left as they are")
    manifest = engine.read_manifest(archive_path)
    root = ws.paths.workspace
    ours = still_ours or (lambda: True)
    clears = ws.settings.daemon.prepare_clears
    removed = kept = 0
    members = [m for m in manifest.members if clears_member(clears, m.path)]
    for i, member in enumerate(members):
        path = root / member.path
        if not _holds_unchanged(path, member, open_files):
            kept += 1
        elif not ours():
            ws.record(PrepareSkipped(session_id, archive_path.name, removed=removed))
            return Prepared(removed, len(members) - i + kept, complete=False)
        else:
            path.unlink()
            removed += 1
    for folder in clears:
        if not _remove_empty_dirs(root / folder, ours):
            ws.record(PrepareSkipped(session_id, archive_path.name, removed=removed))
            return Prepared(removed, kept, complete=False)
    ws.record(
        WorkspacePrepared(
            session_id=session_id, archive=archive_path.name, removed=removed, kept=kept
        )
    )
    return Prepared(removed, kept)


def clears_member(clears: Sequence[str], arcname: str) -> bool:
    """Whether prepare may clear the archive member ``arcname`` (a pure decision)."""
    return any(arcname.startswith(folder.rstrip("/") + "/") for folder in clears)


def _holds_unchanged(
    path: Path, member: engine.MemberRecord, open_files: OpenFiles | None = None
) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != member.size:
        return False
    if open_files is not None and open_files.holds(st):
        return False  # a live process has it open: never removed under it
    same_time = (
        st.st_mtime_ns == member.mtime_ns
        if member.mtime_ns
        else abs(st.st_mtime - member.mtime) < 1e-3
    )
    if not same_time or member.changed:
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == member.sha256


def _remove_empty_dirs(top: Path, ours: Callable[[], bool]) -> bool:
    """Remove empty folders below ``top`` (never ``top`` itself), each while ``ours()``.

    Returns False when ``ours()`` said no (the rest stay).
    """
    for dirpath, _dirnames, files in os.walk(top, topdown=False):
        if Path(dirpath) != top and not files:
            if not ours():
                return False
            try:
                os.rmdir(dirpath)
            except OSError:
                pass  # not empty
    return True
