"""Restore an archive into an empty or new folder, exactly, and safely.

Every member name is checked *before anything is written*: an absolute path,
a drive letter, a backslash, an empty, ``.`` or ``..`` component, a symlink
or other special member (Unix mode in the external attributes), a duplicate
name, or a file that another member needs as a folder makes the whole archive
refused with ``UnsafeArchiveError``, whatever its manifest says. Members are
then extracted with ``O_EXCL | O_NOFOLLOW`` under the target only, their
CRC-32 and (when MANIFEST.json lists them) sha256 checked while streaming;
a mismatch removes that file and raises ``ArchiveError`` naming the member.
Extraction is exact: every member, MANIFEST.json included, lands at its zip
path; file modes come from the zip (permission bits only), mtimes from the
manifest (else the zip's DOS time).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from daemon.archive.manifest import MANIFEST_NAME, Manifest
from daemon.archive.packer import crc32
from daemon.archive.verify import read_member
from daemon.archive.zipreader import ZipEntry, ZipFormatError, iter_member, read_entries
from daemon.errors import ArchiveError, UnsafeArchiveError


def check_names(entries: list[ZipEntry]) -> None:
    """Raise ``UnsafeArchiveError`` naming the first member that is unsafe to extract."""
    seen: set[str] = set()
    dirs: set[str] = set()
    files: set[str] = set()
    for e in entries:
        name = e.name
        why = _unsafe_reason(e)
        if why:
            raise UnsafeArchiveError(f"refusing archive: member {name!r} {why}")
        key = name.rstrip("/")
        if key in seen:
            raise UnsafeArchiveError(f"refusing archive: member {name!r} appears twice")
        seen.add(key)
        parts = key.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
        (dirs if e.is_dir else files).add(key)
    clash = sorted(files & dirs)
    if clash:
        raise UnsafeArchiveError(f"refusing archive: {clash[0]!r} is both a file and a folder")


def _unsafe_reason(e: ZipEntry) -> str:
    name = e.name
    if not name or "\x00" in name:
        return "has an empty or NUL name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "has an absolute path"
    if "\\" in name:
        return "contains a backslash"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "has a '..' component"
    if any(p in ("", ".") for p in parts):
        return "has an empty or '.' component"
    mode = e.unix_mode
    if stat.S_ISLNK(mode):
        return "is a symlink"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is a special file"
    return ""


def restore_archive(
    path: Path, target: Path, *, progress: Callable[[int, int], None] | None = None
) -> int:
    """Extract the archive at ``path`` into ``target``; return the number of files written.

    ``target`` must not exist or be an empty folder. ``progress(done, total)``
    counts uncompressed bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ArchiveError(f"cannot open archive {path}: {e.strerror}") from e
    try:
        try:
            entries = read_entries(fd)
        except ZipFormatError as e:
            raise ArchiveError(f"{path} is not a readable zip: {e}") from e
        check_names(entries)
        manifest = _manifest(fd, entries, path)
        if target.is_symlink() or (
            target.exists() and (not target.is_dir() or any(target.iterdir()))
        ):
            raise ArchiveError(f"restore target {target} must be an empty folder or not exist")
        target.mkdir(parents=True, exist_ok=True)
        total = sum(e.usize for e in entries)
        done = 0
        count = 0
        for entry in entries:
            dest = target.joinpath(*entry.name.rstrip("/").split("/"))
            if entry.is_dir:
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            done += _extract(fd, entry, dest, manifest)
            count += 1
            if progress:
                progress(done, total)
        return count
    except OSError as e:
        raise ArchiveError(f"restore of {path} into {target} failed: {e}") from e
    finally:
        os.close(fd)


def _manifest(fd: int, entries: list[ZipEntry], path: Path) -> Manifest | None:
    entry = next((e for e in entries if e.name == MANIFEST_NAME), None)
    if entry is None:
        return None
    try:
        return Manifest.from_json(read_member(fd, entry))
    except (ZipFormatError, ValueError) as e:
        raise ArchiveError(f"{path}: {MANIFEST_NAME} is unreadable: {e}") from e


def _extract(fd: int, entry: ZipEntry, dest: Path, manifest: Manifest | None) -> int:
    perm = entry.unix_mode & 0o777 or 0o644
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    sha = hashlib.sha256()
    crc = size = 0
    try:
        try:
            for piece in iter_member(fd, entry):
                sha.update(piece)
                crc = crc32(piece, crc)
                size += len(piece)
                view = memoryview(piece)
                while view:
                    view = view[os.write(out, view) :]
        except ZipFormatError as e:
            raise ArchiveError(f"member {entry.name} is corrupt: {e}") from e
        record = manifest.member(entry.name) if manifest else None
        if crc != entry.crc or size != entry.usize:
            raise ArchiveError(f"member {entry.name} is corrupt: CRC or size mismatch")
        if record is not None and record.sha256 != sha.hexdigest():
            raise ArchiveError(f"member {entry.name} is corrupt: sha256 differs from the manifest")
        os.fchmod(out, perm)
    except BaseException:
        os.close(out)
        with contextlib.suppress(OSError):
            dest.unlink()
        raise
    os.close(out)
    if record is not None and record.mtime_ns:
        os.utime(dest, ns=(record.mtime_ns, record.mtime_ns))
    else:
        os.utime(dest, (_dos_mtime(entry),) * 2)
    return size


def _dos_mtime(e: ZipEntry) -> float:
    d, t = e.dos_date, e.dos_time
    fields = ((d >> 9) + 1980, (d >> 5) & 15, d & 31, t >> 11, (t >> 5) & 63, (t & 31) * 2)
    try:
        return time.mktime((*fields, 0, 0, -1))
    except (OverflowError, ValueError):
        return time.time()


__all__ = ["check_names", "restore_archive"]
