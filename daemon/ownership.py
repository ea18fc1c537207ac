"""Which archives in the archive folder are this workspace's (DESIGN.md, "Identity").

An archive folder may be shared by several workspaces, or hold zips nobody here
made. An archive is *ours* when its manifest names this workspace's id, or,
for archives made before manifests named one, when this workspace's event log
recorded it (by name, and by archive id where the log has one). Everything else
is *foreign*: listed, never adopted, verified at start, pruned, pinned or
deleted. :func:`is_ours` is the pure rule; :func:`scan` reads the manifests;
:func:`candidates` turns our archives into retention's input, ordered by the
log (the seq of each record), never by name or clock.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from daemon import archive as engine
from daemon.errors import DaemonError
from daemon.eventlog.fold import ArchiveInfo, State
from daemon.retention import Candidate


def is_ours(
    claimed: str | None,
    manifest: engine.Manifest | None,
    recorded: ArchiveInfo | None,
    workspace_id: str | None,
) -> bool:
    """Whether an archive belongs to the workspace ``workspace_id`` (None: it has no id yet).

    ``claimed`` is the workspace id its MANIFEST.json names (read even from a manifest
    that is otherwise bad); when there is one it decides alone, whatever the log says
    (a log may hold archives another daemon's start-up wrongly adopted before ids
    existed). Without one, only this workspace's own record of the archive speaks for
    it: by name, and by archive id when the manifest is readable and the record has one.
    """
    if claimed is not None:
        return workspace_id is not None and claimed == workspace_id
    if recorded is None:
        return False
    return manifest is None or recorded.archive_id in ("", manifest.archive_id)


@dataclass(frozen=True)
class Listed:
    """One archive-named file of the archive folder, and whose it is."""

    path: Path
    manifest: engine.Manifest | None
    """None when it has no readable MANIFEST.json."""
    recorded: ArchiveInfo | None
    """What this workspace's log knows of the name (only meaningful when ``ours``)."""
    ours: bool

    @property
    def name(self) -> str:
        return self.path.name


def read_manifest_or_none(path: Path) -> engine.Manifest | None:
    try:
        return engine.read_manifest(path)
    except (OSError, ValueError, DaemonError):
        return None


def scan(
    archive_dir: Path,
    archives: Mapping[str, ArchiveInfo],
    workspace_id: str | None,
) -> list[Listed]:
    """Every final-named archive in ``archive_dir``, oldest name first, each classified."""
    found = []
    for path in engine.list_archive_files(archive_dir):
        found.append(classify(path, archives.get(path.name), workspace_id))
    return found


def classify(path: Path, recorded: ArchiveInfo | None, workspace_id: str | None) -> Listed:
    """Read what the archive at ``path`` says of itself and decide whose it is."""
    manifest = read_manifest_or_none(path)
    claimed = manifest.workspace_id if manifest else engine.claimed_workspace_id(path)
    return Listed(path, manifest, recorded, is_ours(claimed, manifest, recorded, workspace_id))


def other_zips(archive_dir: Path) -> list[Path]:
    """Regular ``*.zip`` files of the folder without an archive name: never anyone's archive
    here, always foreign (listed by ``list``, touched by nothing)."""
    if not archive_dir.is_dir():
        return []
    out = []
    for p in sorted(archive_dir.iterdir()):
        if p.name.startswith(".") or not p.name.endswith(".zip"):
            continue
        if engine.ARCHIVE_RE.match(p.name):
            continue
        try:
            if stat.S_ISREG(p.lstat().st_mode):
                out.append(p)
        except FileNotFoundError:
            continue
    return out


def candidates(ours: list[Listed], state: State, sizes: Mapping[str, int]) -> list[Candidate]:
    """Retention's view of our archives: ordered by the seq of their record.

    An archive of ours that the log has not recorded yet (a crash between its
    rename and its record) is given an order after every recorded one: it is
    treated as the newest, so nothing is deleted in its favour, and it is kept.
    """
    unrecorded = state.last_seq + 1
    out = []
    for item in ours:
        info = state.archives.get(item.name)
        out.append(
            Candidate(
                name=item.name,
                bytes=sizes[item.name],
                pinned=item.name in state.pins,
                verified=bool(info and info.verified),
                order=info.seq if info is not None and info.seq else unrecorded,
                recorded_at=parse_time(info.recorded_at) if info is not None else None,
            )
        )
    return out


def parse_time(ts: str) -> datetime | None:
    """A recorded ISO-8601 time, or None when it is not one."""
    try:
        return datetime.fromisoformat(ts)
    except ValueError:
        return None
