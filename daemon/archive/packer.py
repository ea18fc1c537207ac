"""Streams one file into the zip: read, hash, deflate on both cores, write; retry on change.

Speed: a file is read in 1 MiB chunks. The main thread hashes each chunk
(sha256, CRC-32; both release the GIL) while a small thread pool deflates
earlier chunks with ISA-L (``isal``, level 1 by default, which on logs matches
or beats zlib -1's size at 3-5x its speed). Each chunk is an independent raw
deflate primed with the previous chunk's last 32 KiB and ended by a sync
flush, so the chunks concatenate (plus a final empty block) into one standard
deflate stream, exactly as pigz does. At most ``WINDOW`` chunks are in flight,
so memory does not grow with file size.

Method: already-compressed formats (``STORED_SUFFIXES``, torch ``.pt``/``.pth``
included) and empty files are stored; anything else is deflated unless its
first chunk shrinks by less than 3 % (random or compressed data) or, for a
small file, not at all: those are stored too.

Changes: a file whose size, mtime or inode differ before and after reading is
rolled back (the zip file is truncated at its header) and read again, up to
``ATTEMPTS`` times; the last attempt is kept and flagged ``changed``. Reads
stop at the size seen at open, so a log growing faster than it is read still
ends (as a clean prefix). A file that vanishes or cannot be read becomes a
``SkippedRecord``. A ``.zip`` file that is not a readable zip (its central
directory is checked once it is read, see ``daemon.archive.zipcheck``) is archived as
it is and its record says why it is ``damaged``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from daemon.archive.manifest import MemberRecord, SkippedRecord
from daemon.archive.sources import SourceFile
from daemon.archive.zipcheck import zip_problem
from daemon.archive.zipwriter import DEFLATED, STORED, ZipWriter

try:
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a declared dependency
    import zlib as _zlib  # type: ignore[no-redef]

CHUNK = 1 << 20
WINDOW = 4
ATTEMPTS = 3
ZDICT = 32 * 1024
ZIP64_THRESHOLD = 0xF000_0000
"""Members whose size may come near 4 GiB get zip64 headers up front."""
STORE_RATIO = 0.97
FINAL_BLOCK = b"\x03\x00"
"""An empty, final, fixed-Huffman deflate block: ends a stream after a sync flush."""
_PACKED = (".zip", ".gz", ".tgz", ".bz2", ".xz", ".zst", ".lz4", ".7z", ".rar", ".jar", ".npz")
_WEIGHTS = (".pt", ".pth", ".ckpt", ".safetensors", ".parquet")
_MEDIA = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".mp4", ".mkv", ".webm", ".mp3", ".ogg")
STORED_SUFFIXES = frozenset((*_PACKED, *_WEIGHTS, *_MEDIA))


def deflate_chunk(data: bytes, zdict: bytes, level: int) -> bytes:
    """Raw deflate of ``data`` ending in a sync flush (not final), primed with ``zdict``."""
    if zdict:
        c = _zlib.compressobj(level, _zlib.DEFLATED, -15, zdict=zdict)
    else:
        c = _zlib.compressobj(level, _zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(_zlib.Z_SYNC_FLUSH)


def crc32(data: bytes, value: int = 0) -> int:
    """CRC-32 as zip uses it (ISA-L's is several times faster than zlib's)."""
    return int(_zlib.crc32(data, value))


class _Changed(Exception):
    """The file changed under the reader (internal: triggers a retry)."""


class _Unreadable(Exception):
    """Reading the source failed (internal: the file is skipped, the archive goes on)."""


def _read(fd: int, n: int) -> bytes:
    if n <= 0:
        return b""
    try:
        return os.read(fd, min(n, CHUNK))
    except OSError as e:
        raise _Unreadable(e.strerror or str(e)) from e


class Packer:
    """Adds files to a ``ZipWriter``; ``add`` returns what the manifest should say."""

    def __init__(
        self,
        writer: ZipWriter,
        pool: ThreadPoolExecutor,
        *,
        level: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.writer = writer
        self.pool = pool
        self.level = level
        self.progress = progress
        self._reported = 0

    def add(self, src: SourceFile) -> MemberRecord | SkippedRecord:
        self._reported = 0  # bytes of this file already reported (retries do not count twice)
        for attempt in range(1, ATTEMPTS + 1):
            last = attempt == ATTEMPTS
            try:
                fd = os.open(src.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except FileNotFoundError:
                return SkippedRecord(src.arcname, "vanished")
            except OSError as e:
                if e.errno == errno.ELOOP:
                    return SkippedRecord(src.arcname, "symlink", "became a symlink")
                return SkippedRecord(src.arcname, "unreadable", e.strerror or str(e))
            try:
                result = self._attempt(fd, src, last)
            except _Changed:
                continue
            finally:
                os.close(fd)
            return result
        raise AssertionError("unreachable: the last attempt never raises _Changed")

    def _attempt(self, fd: int, src: SourceFile, last: bool) -> MemberRecord | SkippedRecord:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            return SkippedRecord(src.arcname, "not_regular")
        zip64 = before.st_size >= ZIP64_THRESHOLD
        suffix = os.path.splitext(src.arcname)[1].lower()
        method = STORED if suffix in STORED_SUFFIXES or before.st_size == 0 else DEFLATED
        try:
            first = _read(fd, before.st_size)
        except _Unreadable as e:
            return SkippedRecord(src.arcname, "unreadable", str(e))
        first_deflated = b""
        if method == DEFLATED and first:
            first_deflated = deflate_chunk(first, b"", self.level)
            whole = len(first) == before.st_size
            if len(first_deflated) + len(FINAL_BLOCK) >= len(first) and whole:
                method = STORED  # a small file that deflate would not shrink
            elif len(first) >= 64 * 1024 and len(first_deflated) > STORE_RATIO * len(first):
                method = STORED
        entry = self.writer.begin(
            src.arcname, method=method, mtime=before.st_mtime, mode=before.st_mode, zip64=zip64
        )
        try:
            sha, crc, usize, csize = self._stream(fd, first, first_deflated, method, before.st_size)
        except _Unreadable as e:
            self.writer.rollback(entry)
            return SkippedRecord(src.arcname, "unreadable", str(e))
        except _Changed:
            self.writer.rollback(entry)
            raise
        after = os.fstat(fd)
        changed = usize != before.st_size or _differs(before, after) or _replaced(src, after)
        if changed and not last:
            self.writer.rollback(entry)
            raise _Changed
        self.writer.end(entry, crc=crc, csize=csize, usize=usize)
        damaged = zip_problem(fd) if suffix == ".zip" else None
        return MemberRecord(
            path=src.arcname,
            size=usize,
            sha256=sha,
            mtime=after.st_mtime,
            mtime_ns=after.st_mtime_ns,
            changed=changed,
            damaged=damaged,
        )

    def _stream(
        self, fd: int, chunk: bytes, deflated: bytes, method: int, limit: int
    ) -> tuple[str, int, int, int]:
        """Write the member's data; return (sha256 hex, crc, uncompressed, compressed size).

        At most ``limit`` bytes (the size stat'ed at open) are read: a file growing
        faster than it is read still ends, and an append-only log yields a clean prefix.
        """
        sha = hashlib.sha256()
        crc = usize = csize = 0
        pending: deque[Future[bytes]] = deque()
        prev = b""
        try:
            while chunk:
                sha.update(chunk)
                crc = crc32(chunk, crc)
                usize += len(chunk)
                if method == STORED:
                    self.writer.write(chunk)
                    csize += len(chunk)
                else:
                    if deflated:
                        done: Future[bytes] = Future()
                        done.set_result(deflated)
                        pending.append(done)
                        deflated = b""
                    else:
                        pending.append(self.pool.submit(deflate_chunk, chunk, prev, self.level))
                    prev = chunk[-ZDICT:]
                    while len(pending) > WINDOW:
                        csize += self._write(pending.popleft().result())
                if self.progress and usize > self._reported:
                    self.progress(usize - self._reported)
                    self._reported = usize
                chunk = _read(fd, limit - usize)
            while pending:
                csize += self._write(pending.popleft().result())
        finally:
            for f in pending:
                f.cancel()
        if method == DEFLATED:
            csize += self._write(FINAL_BLOCK)
        return sha.hexdigest(), crc, usize, csize

    def _write(self, data: bytes) -> int:
        self.writer.write(data)
        return len(data)


def _differs(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino) != (b.st_size, b.st_mtime_ns, b.st_ino)


def _replaced(src: SourceFile, opened: os.stat_result) -> bool:
    """True when the path now names another file than the one read (atomic save by rename)."""
    try:
        now = os.lstat(src.path)
    except OSError:
        return False  # deleted after a complete read: the bytes read are a consistent file
    return (now.st_ino, now.st_dev) != (opened.st_ino, opened.st_dev)


__all__ = ["CHUNK", "STORED_SUFFIXES", "Packer", "crc32", "deflate_chunk"]
