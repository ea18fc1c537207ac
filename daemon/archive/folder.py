"""The archive folder: its lock, the temporary files crashed runs leave, and finding archives.

The folder holds final archives (``ARCHIVE_RE``), hidden lock files ending in
``.lock`` and, only while an archive is written, its hidden temporary file
(``TEMP_RE``). ``.archive.lock`` is ``flock``-ed by whoever writes an archive;
it is never deleted (deleting a flock file races with its next locker), and
temp files are only removed by someone holding it, so a live writer's file is
never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from daemon.archive.manifest import ARCHIVE_RE, TEMP_RE
from daemon.errors import ArchiveBusyError, ArchiveNotFoundError

LOCK_NAME = ".archive.lock"


@contextlib.contextmanager
def archive_lock(archive_dir: Path, timeout_s: float) -> Iterator[None]:
    """Hold the exclusive archive lock; ``ArchiveBusyError`` after ``timeout_s``."""
    fd = os.open(archive_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ArchiveBusyError(
                        f"another archiver holds {archive_dir / LOCK_NAME} (waited {timeout_s:g} s)"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
        yield
    finally:
        os.close(fd)


def remove_temp_files(archive_dir: Path) -> list[Path]:
    """Remove the temp files in ``archive_dir``; the caller must hold the archive lock."""
    removed = []
    for p in sorted(archive_dir.iterdir()):
        if TEMP_RE.match(p.name):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def cleanup_temp_files(archive_dir: Path) -> list[Path]:
    """Remove temporary files of interrupted runs, only if no archiver holds the lock."""
    if not archive_dir.is_dir():
        return []
    try:
        with archive_lock(archive_dir, 0.0):
            return remove_temp_files(archive_dir)
    except ArchiveBusyError:
        return []


def list_archive_files(archive_dir: Path) -> list[Path]:
    """Final-named archives in ``archive_dir``, oldest first (by name: UTC time, then _N)."""
    if not archive_dir.is_dir():
        return []
    found = []
    for p in archive_dir.iterdir():
        m = ARCHIVE_RE.match(p.name)
        if m and p.is_file() and not p.is_symlink():
            found.append((m.group(1), m.group(2), int(m.group(3) or 1), p))
    return [f[3] for f in sorted(found)]


def resolve_archive(arg: str, archive_dir: Path) -> Path:
    """A file name in the archive folder (``.zip`` optional) or a path to an archive file."""
    candidates = []
    if "/" not in arg:
        candidates += [archive_dir / arg, archive_dir / f"{arg}.zip"]
    candidates.append(Path(arg))
    for c in candidates:
        if c.is_file():
            return c
    raise ArchiveNotFoundError(f"no archive {arg!r} in {archive_dir} nor at that path")
