"""Rescans: the filesystem is the truth, inotify only a hint.

:func:`snapshot` lists the regular files of ``logs/`` and ``models/`` (a thin
walk; ``scandir`` is passed in, as in watchdog's ``DirectorySnapshot``).
:func:`diff` is pure: it compares a snapshot with the files the state knows and
returns the file events that close the gap, followed by one ``Rescanned``.
Symlinks are never followed and never counted as files.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

from daemon.eventlog.events import Event, FileCreated, FileDeleted, FileModified, Rescanned
from daemon.eventlog.fold import FileInfo
from daemon.watch.coalesce import AREAS, area_of

Scandir = Callable[[str], AbstractContextManager[Iterator[os.DirEntry[str]]]]


def snapshot(workspace: Path, *, scandir: Scandir = os.scandir) -> dict[str, FileInfo]:
    """Every regular file under the watched areas, by workspace-relative path.

    Folders that vanish or cannot be read while walking are skipped: the next
    notification or rescan catches up with them.
    """
    found: dict[str, FileInfo] = {}
    for area in AREAS:
        stack: list[tuple[str, str]] = [(str(workspace / area), area)]
        while stack:
            folder, rel = stack.pop()
            try:
                with scandir(folder) as entries:
                    for entry in entries:
                        _visit(entry, f"{rel}/{entry.name}", found, stack)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
    return found


def _visit(
    entry: os.DirEntry[str],
    rel: str,
    found: dict[str, FileInfo],
    stack: list[tuple[str, str]],
) -> None:
    try:
        st = entry.stat(follow_symlinks=False)
    except (FileNotFoundError, PermissionError):
        return
    if stat_mod.S_ISDIR(st.st_mode):
        stack.append((entry.path, rel))
    elif stat_mod.S_ISREG(st.st_mode):
        found[rel] = FileInfo(st.st_size, st.st_mtime_ns)


def stat_file(workspace: Path, rel: str) -> FileInfo | None:
    """A regular file's size and mtime (symlinks and folders count as absent)."""
    try:
        st = os.lstat(workspace / rel)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    if not stat_mod.S_ISREG(st.st_mode):
        return None
    return FileInfo(st.st_size, st.st_mtime_ns)


def diff(
    current: Mapping[str, FileInfo], known: Mapping[str, FileInfo], trigger: str
) -> list[Event]:
    """File events turning ``known`` into ``current``, then ``Rescanned``."""
    out: list[Event] = []
    created = modified = deleted = 0
    for path in sorted(current):
        area = area_of(path)
        if area is None:
            continue
        now, before = current[path], known.get(path)
        if before is None:
            out.append(FileCreated(path=path, area=area, size=now.size, mtime_ns=now.mtime_ns))
            created += 1
        elif before != now:
            out.append(FileModified(path=path, area=area, size=now.size, mtime_ns=now.mtime_ns))
            modified += 1
    for path in sorted(known):
        area = area_of(path)
        if area is not None and path not in current:
            out.append(FileDeleted(path=path, area=area))
            deleted += 1
    out.append(
        Rescanned(
            trigger=trigger,
            files=len(current),
            created=created,
            modified=modified,
            deleted=deleted,
        )
    )
    return out
