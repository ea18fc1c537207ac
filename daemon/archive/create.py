"""The archive engine: create, verify, restore and find workspace archives.

``create_archive`` follows DESIGN.md's "Archive format" to the letter:

1. take the archive lock (``ARCHIVE_DIR/.archive.lock``, ``flock``; wait up
   to ``lock_timeout_s``, then ``ArchiveBusyError``) and, holding it, remove
   the hidden temporary files of runs that crashed;
2. write ``.training_backup_YYYYMMDD_HHMMSS.<id8>.zip.tmp`` (mode 0600: the
   archives hold everything of a session, so they are readable by their owner
   only) in the archive folder, streaming each file (``daemon.archive.packer``),
   MANIFEST.json last;
3. fsync it and verify it from disk: every member's CRC-32 and sha256 against
   the manifest that was written (``daemon.archive.verify``);
4. give it its final name without ever overwriting one (``link`` then
   ``unlink``; ``_2``, ``_3``... when the name is taken, or in ``taken``: names
   the caller's log still knows, such as those of off-machine copies) and fsync
   the folder.

On any failure the temporary file is removed and an ``ArchiveError`` with a
one-line message is raised (``DiskFullError`` when the disk is full). Times
in names and ``created_at`` are UTC.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
import uuid
from collections.abc import Callable, Container
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from daemon.archive.folder import (
    archive_lock,
    remove_temp_files,
)
from daemon.archive.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    REASONS,
    Manifest,
    MemberRecord,
    archive_name,
    temp_name,
)
from daemon.archive.packer import FINAL_BLOCK, Packer, crc32, deflate_chunk
from daemon.archive.sources import SourceFile, collect_sources
from daemon.archive.verify import verify_archive
from daemon.archive.zipwriter import DEFLATED, ZipWriter
from daemon.errors import ArchiveError, DiskFullError

ARCHIVE_MODE = 0o600
THREADS = 2


@dataclass(frozen=True)
class ArchiveResult:
    """A verified archive under its final name."""

    name: str
    path: Path
    manifest: Manifest
    bytes: int
    source_bytes: int
    seconds: float


def create_archive(
    workspace: Path,
    archive_dir: Path,
    *,
    reason: str,
    session_id: str | None = None,
    compression_level: int = 1,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    lock_timeout_s: float = 600.0,
    force_zip64: bool = False,
    workspace_id: str | None = None,
    host: str | None = None,
    taken: Container[str] = (),
) -> ArchiveResult:
    """Archive ``workspace`` into ``archive_dir``; see the module docstring.

    ``progress(done, total)`` counts source bytes written, then bytes verified
    (``total`` is twice the source size). ``compression_level`` is zlib-style,
    1-9, mapped onto ISA-L's 0-3 by ``isal_level`` (1, the default, already
    beats zip -1's size). ``force_zip64`` writes zip64 records for every member
    (for tests and tools that want them). ``workspace_id`` and ``host`` go into
    the manifest as they are given (``host`` defaults to this machine's name);
    the engine never reads the workspace's identity file itself.
    """
    if reason not in REASONS:
        raise ValueError(f"archive reason {reason!r} is not one of {', '.join(REASONS)}")
    level = isal_level(compression_level)
    started = time.monotonic()
    now = now or datetime.now(UTC)
    origin = (workspace_id, host if host is not None else socket.gethostname())
    if not workspace.is_dir():
        raise ArchiveError(f"workspace {workspace} is not a folder")
    try:
        archive_dir.mkdir(parents=True, exist_ok=True)
        with archive_lock(archive_dir, lock_timeout_s):
            remove_temp_files(archive_dir)
            manifest, final, size = _create_locked(
                workspace, archive_dir, reason, session_id, now, level,
                force_zip64, progress, origin, taken,
            )  # fmt: skip
    except OSError as e:
        raise _wrap(e, archive_dir, f"archive of {workspace} into {archive_dir} failed") from e
    return ArchiveResult(
        name=final.name,
        path=final,
        manifest=manifest,
        bytes=size,
        source_bytes=sum(m.size for m in manifest.members),
        seconds=time.monotonic() - started,
    )


def isal_level(level: int) -> int:
    """ISA-L's level (0-3) for a zlib-style one (0-9): 0, 1 as is, 2-5 -> 2, 6-9 -> 3."""
    if not 0 <= level <= 9:
        raise ValueError(f"compression_level {level} is not between 0 and 9")
    return level if level <= 1 else 2 if level <= 5 else 3


def _create_locked(
    workspace: Path,
    archive_dir: Path,
    reason: str,
    session_id: str | None,
    now: datetime,
    level: int,
    force_zip64: bool,
    progress: Callable[[int, int], None] | None,
    origin: tuple[str | None, str | None] = (None, None),
    taken: Container[str] = (),
) -> tuple[Manifest, Path, int]:
    """Write, verify and publish one archive; the caller holds the lock. Temp removed on error."""
    try:
        sources, skipped = collect_sources(workspace, exclude=[archive_dir])
    except OSError as e:
        raise ArchiveError(f"cannot list workspace {workspace}: {e}") from e
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        archive_id=uuid.uuid4().hex,
        reason=reason,
        session_id=session_id,
        created_at=now.astimezone(UTC).isoformat(timespec="seconds"),
        members=(),
        skipped=tuple(skipped),
        workspace_id=origin[0],
        host=origin[1],
    )
    tmp = archive_dir / temp_name(now, manifest.archive_id)
    try:
        manifest, size = _write(tmp, sources, manifest, level, force_zip64, progress)
        _verify_written(tmp, manifest, progress, sum(s.size for s in sources))
        final = _publish(tmp, archive_dir, now, taken)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return manifest, final, size


def _write(
    tmp: Path,
    sources: list[SourceFile],
    manifest: Manifest,
    level: int,
    force_zip64: bool,
    progress: Callable[[int, int], None] | None,
) -> tuple[Manifest, int]:
    total = 2 * sum(s.size for s in sources)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(min(done, total), total)

    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, ARCHIVE_MODE)
    try:
        os.fchmod(fd, ARCHIVE_MODE)
        writer = ZipWriter(fd, force_zip64=force_zip64)
        members: list[MemberRecord] = []
        skipped = list(manifest.skipped)
        with ThreadPoolExecutor(THREADS, thread_name_prefix="deflate") as pool:
            packer = Packer(writer, pool, level=level, progress=advance)
            for src in sources:
                record = packer.add(src)
                if isinstance(record, MemberRecord):
                    members.append(record)
                else:
                    skipped.append(record)
        manifest = replace(manifest, members=tuple(members), skipped=tuple(skipped))
        data = manifest.to_json().encode("utf-8")
        body = deflate_chunk(data, b"", level) + FINAL_BLOCK
        entry = writer.begin(
            MANIFEST_NAME, method=DEFLATED, mtime=time.time(), mode=0o644, zip64=False
        )
        writer.write(body)
        writer.end(entry, crc=crc32(data), csize=len(body), usize=len(data))
        size = writer.finish()
        os.fsync(fd)
    finally:
        os.close(fd)
    return manifest, size


def _verify_written(
    tmp: Path, manifest: Manifest, progress: Callable[[int, int], None] | None, source_bytes: int
) -> None:
    total = 2 * source_bytes
    done = source_bytes

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(min(done, total), total)

    result = verify_archive(tmp, progress=advance)
    if not result.ok:
        raise ArchiveError(f"archive {tmp.name} failed verification: {'; '.join(result.problems)}")
    if result.manifest != manifest:
        raise ArchiveError(f"archive {tmp.name} failed verification: manifest read back differs")
    if progress:
        progress(total, total)


def _publish(tmp: Path, archive_dir: Path, now: datetime, taken: Container[str] = ()) -> Path:
    """Give ``tmp`` its final name (never overwriting one, never one of ``taken``) and fsync
    the folder."""
    n = 1
    while True:
        final = archive_dir / archive_name(now, n)
        if final.name in taken:
            n += 1
            continue
        try:
            os.link(tmp, final)
        except FileExistsError:
            n += 1
            continue
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                raise
            if final.exists():  # no hard links here: rename (we hold the archive lock)
                n += 1
                continue
            os.rename(tmp, final)
        break
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    dfd = os.open(archive_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return final


def _wrap(e: OSError, archive_dir: Path, what: str) -> ArchiveError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"disk full: no space left in the archive folder {archive_dir}")
    return ArchiveError(f"{what}: {e.strerror or e} ({e.filename or archive_dir})")
