"""Verify an archive: every member's CRC-32 and size, and its sha256 against MANIFEST.json.

``verify_archive`` never raises for a bad archive: it returns a
``VerifyResult`` whose ``problems`` name each bad member (not a zip,
truncated, CRC or size mismatch, sha256 mismatch, manifest missing or
unparsable, a member missing from the zip or absent from the manifest,
duplicate names). Members are checked on two threads (inflate, CRC-32 and
sha256 all release the GIL), largest first.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from daemon.archive.manifest import MANIFEST_NAME, Manifest
from daemon.archive.packer import crc32
from daemon.archive.zipreader import ZipEntry, ZipFormatError, iter_member, read_entries
from daemon.errors import ArchiveError

THREADS = 2


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of ``verify_archive``."""

    ok: bool
    problems: tuple[str, ...]
    members: int
    """Number of file members checked (MANIFEST.json not counted)."""
    manifest: Manifest | None


@dataclass(frozen=True)
class _Digest:
    crc: int
    size: int
    sha256: str


def read_member(fd: int, entry: ZipEntry) -> bytes:
    """The whole content of a (small) member, CRC-checked."""
    data = b"".join(iter_member(fd, entry))
    if crc32(data) != entry.crc or len(data) != entry.usize:
        raise ZipFormatError(f"{entry.name}: CRC or size mismatch")
    return data


def _digest(fd: int, entry: ZipEntry, progress: Callable[[int], None] | None) -> _Digest:
    sha = hashlib.sha256()
    crc = size = 0
    for piece in iter_member(fd, entry):
        sha.update(piece)
        crc = crc32(piece, crc)
        size += len(piece)
        if progress:
            progress(len(piece))
    return _Digest(crc, size, sha.hexdigest())


def read_manifest(path: Path) -> Manifest:
    """Read MANIFEST.json of the archive at ``path`` (CRC-checked); raise ``ArchiveError``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ArchiveError(f"cannot open archive {path}: {e.strerror}") from e
    try:
        entries = read_entries(fd)
        entry = next((e for e in entries if e.name == MANIFEST_NAME), None)
        if entry is None:
            raise ArchiveError(f"{path}: no {MANIFEST_NAME} in the archive")
        return Manifest.from_json(read_member(fd, entry))
    except (ZipFormatError, ValueError) as e:
        raise ArchiveError(f"{path}: {e}") from e
    finally:
        os.close(fd)


def verify_archive(path: Path, *, progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Check every member of the archive at ``path``; see the module docstring."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        return VerifyResult(False, (f"cannot open {path}: {e.strerror}",), 0, None)
    try:
        return _verify(fd, progress)
    finally:
        os.close(fd)


def _verify(fd: int, progress: Callable[[int], None] | None) -> VerifyResult:
    if progress is not None:
        progress = _serialised(progress)
    try:
        entries = read_entries(fd)
    except (ZipFormatError, OSError) as e:
        return VerifyResult(False, (f"not a readable zip: {e}",), 0, None)
    problems: list[str] = []
    counts = Counter(e.name for e in entries)
    problems += [f"{name}: duplicate member name" for name, n in counts.items() if n > 1]
    manifest: Manifest | None = None
    manifest_entry = next((e for e in entries if e.name == MANIFEST_NAME), None)
    if manifest_entry is None:
        problems.append(f"{MANIFEST_NAME}: missing")
    else:
        try:
            manifest = Manifest.from_json(read_member(fd, manifest_entry))
        except (ZipFormatError, ValueError, OSError) as e:
            problems.append(f"{MANIFEST_NAME}: unreadable ({e})")
    files = [e for e in entries if e.name != MANIFEST_NAME and not e.is_dir]
    records = {m.path: m for m in manifest.members} if manifest else {}
    if manifest is not None:
        present = {e.name for e in files}
        problems += [
            f"{p}: listed in {MANIFEST_NAME} but missing from the archive"
            for p in records
            if p not in present
        ]

    def check(entry: ZipEntry) -> list[str]:
        try:
            d = _digest(fd, entry, progress)
        except (ZipFormatError, OSError) as e:
            return [f"{entry.name}: unreadable ({e})"]
        out = []
        if d.crc != entry.crc:
            out.append(f"{entry.name}: CRC mismatch")
        if d.size != entry.usize:
            out.append(f"{entry.name}: size {d.size} differs from the zip's {entry.usize}")
        rec = records.get(entry.name)
        if manifest is None:
            return out
        if rec is None:
            out.append(f"{entry.name}: not listed in {MANIFEST_NAME}")
        elif rec.sha256 != d.sha256:
            out.append(f"{entry.name}: sha256 differs from {MANIFEST_NAME}")
        elif rec.size != d.size:
            out.append(f"{entry.name}: size differs from {MANIFEST_NAME}")
        return out

    ordered = sorted(files, key=lambda e: e.usize, reverse=True)
    with ThreadPoolExecutor(THREADS, thread_name_prefix="verify") as pool:
        for found in pool.map(check, ordered):
            problems += found
    return VerifyResult(not problems, tuple(problems), len(files), manifest)


def _serialised(progress: Callable[[int], None]) -> Callable[[int], None]:
    """The verify threads call ``progress`` one at a time."""
    lock = threading.Lock()

    def call(n: int) -> None:
        with lock:
            progress(n)

    return call


__all__ = ["VerifyResult", "read_manifest", "verify_archive"]


def has_manifest(path: Path) -> bool:
    """Whether the zip at ``path`` holds a MANIFEST.json (``ArchiveError`` if it is no zip)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ArchiveError(f"cannot open archive {path}: {e.strerror}") from e
    try:
        return any(e.name == MANIFEST_NAME for e in read_entries(fd))
    except ZipFormatError as e:
        raise ArchiveError(f"{path} is not a readable zip: {e}") from e
    finally:
        os.close(fd)


def claimed_workspace_id(path: Path) -> str | None:
    """The ``workspace_id`` MANIFEST.json names, read leniently: even from a manifest that
    ``read_manifest`` refuses over another field (its owner is still known, so it can be
    checked and reported as that workspace's bad archive). None when it names none or
    there is no readable manifest at all."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        entry = next((e for e in read_entries(fd) if e.name == MANIFEST_NAME), None)
        if entry is None:
            return None
        doc = json.loads(read_member(fd, entry))
    except (ZipFormatError, OSError, ValueError, RecursionError):
        return None
    finally:
        os.close(fd)
    wid = doc.get("workspace_id") if isinstance(doc, dict) else None
    return wid if isinstance(wid, str) else None
