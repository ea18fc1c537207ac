"""Prepare: remove what a verified archive holds unchanged, and nothing else.

DESIGN.md, lock protocol, "prepare". Re-exported by :mod:`daemon.ops`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from daemon import archive as engine
from daemon.errors import DaemonError
from daemon.eventlog.events import (
    PrepareSkipped,
    WorkspacePrepared,
)
from daemon.openfiles import OpenFiles

log = structlog.get_logger("daemon.ops")
if TYPE_CHECKING:
    from daemon.ops import Workspace


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
