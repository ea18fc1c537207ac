"""Operations on a workspace, each recorded in the event log.

The CLI and the running daemon share these: archive, verify, prune, pin,
prepare. Every effect on archives goes through here, so the log is complete
whoever acted.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon import archive as engine
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
    WorkspacePrepared,
)
from daemon.eventlog.fold import State
from daemon.eventlog.replay import Replay
from daemon.eventlog.store import EventStore
from daemon.retention import Candidate, Decision, Policy, decide

REASONS = ("pre_training", "post_training", "abandoned", "manual", "recovery")
Progress = Callable[[int, int], None]


class Workspace:
    """A workspace's settings and event log, with the state folded from it.

    The log file is created on the first write only, so read-only commands on
    a fresh workspace leave nothing behind.
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
        return self.replay.state() if self.replay is not None else State()

    def record(self, event: Event) -> StoredEvent:
        return self.store.append(event)

    def record_many(self, events: Sequence[Event]) -> list[StoredEvent]:
        return self.store.append_many(events)

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
    removed = engine.cleanup_temp_files(ws.paths.archive_dir)
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
            ),
            ArchiveVerified(name=path.name, ok=True),
        ]
    )


def in_archive_dir(ws: Workspace, path: Path) -> bool:
    """Whether ``path`` is one of this workspace's archives (events name archives by
    file name, so a copy elsewhere must not speak for the archive of that name)."""
    return path.resolve().parent == ws.paths.archive_dir.resolve()


def verify(ws: Workspace, path: Path) -> engine.VerifyResult:
    """Verify an archive; the result is recorded only for the workspace's own archives."""
    result = engine.verify_archive(path)
    if in_archive_dir(ws, path):
        ws.record(ArchiveVerified(name=path.name, ok=result.ok, problems=tuple(result.problems)))
    return result


def policy_of(settings: Settings) -> Policy:
    d = settings.daemon
    return Policy(d.keep_last, d.keep_daily, d.keep_weekly, d.max_total_bytes)


def prune(ws: Workspace, *, dry_run: bool = False) -> list[Decision]:
    """Apply retention to the archive folder; returns one decision per archive."""
    folder = ws.paths.archive_dir
    if not folder.is_dir():
        return []
    state = ws.state()
    candidates = []
    for path in engine.list_archive_files(folder):
        info = state.archives.get(path.name)
        candidates.append(
            Candidate(
                name=path.name,
                bytes=path.stat().st_size,
                pinned=path.name in state.pins,
                verified=bool(info and info.verified),
            )
        )
    decisions = decide(candidates, policy_of(ws.settings))
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
) -> Prepared:
    """Remove from logs/ every file the verified archive holds unchanged.

    A file is removed only when its size, mtime and sha256 all equal the
    manifest's; anything else (changed, new, a symlink) stays. ``still_ours``
    is asked just before each unlink and each folder removal: once it says
    False (the trainer stopped waiting and may be writing logs), nothing more
    is removed and ``PrepareSkipped`` is recorded instead of ``WorkspacePrepared``.
    """
    state = ws.state()
    info = state.archives.get(archive_path.name)
    if info is None or not info.verified:
        raise DaemonError(f"{archive_path.name}: not a verified archive; logs/ left as they are")
    manifest = engine.read_manifest(archive_path)
    root = ws.paths.workspace
    ours = still_ours or (lambda: True)
    removed = kept = 0
    members = [m for m in manifest.members if m.path.startswith("logs/")]
    for i, member in enumerate(members):
        path = root / member.path
        if not _holds_unchanged(path, member):
            kept += 1
        elif not ours():
            ws.record(PrepareSkipped(session_id, archive_path.name, removed=removed))
            return Prepared(removed, len(members) - i + kept, complete=False)
        else:
            path.unlink()
            removed += 1
    if not _remove_empty_dirs(root / "logs", ours):
        ws.record(PrepareSkipped(session_id, archive_path.name, removed=removed))
        return Prepared(removed, kept, complete=False)
    ws.record(
        WorkspacePrepared(
            session_id=session_id, archive=archive_path.name, removed=removed, kept=kept
        )
    )
    return Prepared(removed, kept)


def _holds_unchanged(path: Path, member: engine.MemberRecord) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != member.size:
        return False
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
