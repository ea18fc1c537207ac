"""A small zip reader for verify and restore: central directory, zip64, streamed members.

It reads through ``os.pread`` on one descriptor, so several threads can
stream members of one archive at once, and inflates with ISA-L (stdlib zlib
if ``isal`` is missing). Output is bounded per step (``max_length``), so a
member that inflates enormously still uses flat memory. Every structural
problem raises ``ZipFormatError`` (a ``ValueError``) with a one-line reason.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from daemon.archive.zipwriter import DEFLATED, STORED, ZIP64_LIMIT

try:
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a declared dependency
    import zlib as _zlib  # type: ignore[no-redef]

ZLIB_ERROR: type[Exception] = _zlib.error  # type: ignore[assignment]  # isal's stub says instance
READ_CHUNK = 256 * 1024
MAX_OUT = 4 << 20

_EOCD = struct.Struct("<IHHHHIIH")
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<IHHHHHIIIHH")


class ZipFormatError(ValueError):
    """The file is not a zip this reader can trust (truncated, bad records...)."""


@dataclass(frozen=True)
class ZipEntry:
    """One central-directory record."""

    name: str
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    offset: int
    external_attr: int
    create_system: int
    dos_time: int
    dos_date: int

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def unix_mode(self) -> int:
        """The Unix mode in the external attributes (0 when none was recorded)."""
        return (self.external_attr >> 16) & 0xFFFF

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.unix_mode)


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    data = os.pread(fd, n, offset)
    if len(data) != n:
        raise ZipFormatError(f"truncated: wanted {n} bytes at offset {offset}, got {len(data)}")
    return data


def read_entries(fd: int) -> list[ZipEntry]:
    """Parse the end records and the central directory of the zip open on ``fd``."""
    size = os.fstat(fd).st_size
    if size < _EOCD.size:
        raise ZipFormatError("too short to be a zip file")
    tail_len = min(size, _EOCD.size + 0xFFFF)
    tail = _pread_exact(fd, tail_len, size - tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + _EOCD.size > len(tail):
        raise ZipFormatError("no end-of-central-directory record (not a zip, or truncated)")
    eocd_at = size - tail_len + pos
    _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos)
    if eocd_at >= _LOCATOR64.size:
        loc = _pread_exact(fd, _LOCATOR64.size, eocd_at - _LOCATOR64.size)
        sig, _, eocd64_at, _ = _LOCATOR64.unpack(loc)
        if sig == 0x07064B50:
            rec = _EOCD64.unpack(_pread_exact(fd, _EOCD64.size, eocd64_at))
            if rec[0] != 0x06064B50:
                raise ZipFormatError("bad zip64 end-of-central-directory record")
            count, cd_size, cd_offset = rec[7], rec[8], rec[9]
    if cd_offset + cd_size > eocd_at:
        raise ZipFormatError("central directory lies outside the file (truncated?)")
    cd = _pread_exact(fd, cd_size, cd_offset)
    entries: list[ZipEntry] = []
    p = 0
    for _ in range(count):
        if p + _CENTRAL.size > len(cd):
            raise ZipFormatError("central directory shorter than its entry count")
        f = _CENTRAL.unpack_from(cd, p)
        if f[0] != 0x02014B50:
            raise ZipFormatError(f"bad central directory record at entry {len(entries)}")
        name_len, extra_len, comment_len = f[10], f[11], f[12]
        raw = cd[p + _CENTRAL.size : p + _CENTRAL.size + name_len]
        extra = cd[p + _CENTRAL.size + name_len : p + _CENTRAL.size + name_len + extra_len]
        usize, csize, offset = f[9], f[8], f[16]
        usize, csize, offset = _zip64_sizes(extra, usize, csize, offset)
        name = raw.decode("utf-8" if f[3] & 0x800 else "cp437", errors="replace")
        entries.append(ZipEntry(name, f[3], f[4], f[7], csize, usize, offset, f[15],
                                f[1] >> 8, f[5], f[6]))  # fmt: skip
        p += _CENTRAL.size + name_len + extra_len + comment_len
    return entries


def _zip64_sizes(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    p = 0
    while p + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, p)
        if tag == 1:
            vals = list(struct.unpack_from(f"<{n // 8}Q", extra, p + 4))
            if usize == ZIP64_LIMIT and vals:
                usize = vals.pop(0)
            if csize == ZIP64_LIMIT and vals:
                csize = vals.pop(0)
            if offset == ZIP64_LIMIT and vals:
                offset = vals.pop(0)
            break
        p += 4 + n
    return usize, csize, offset


def data_offset(fd: int, entry: ZipEntry) -> int:
    """Where ``entry``'s data starts, after checking its local header."""
    f = _LOCAL.unpack(_pread_exact(fd, _LOCAL.size, entry.offset))
    if f[0] != 0x04034B50:
        raise ZipFormatError(f"bad local header for {entry.name!r}")
    name = _pread_exact(fd, f[9], entry.offset + _LOCAL.size)
    if name.decode("utf-8" if f[2] & 0x800 else "cp437", errors="replace") != entry.name:
        raise ZipFormatError(f"local header name differs from central directory for {entry.name!r}")
    return entry.offset + _LOCAL.size + f[9] + f[10]


def iter_member(fd: int, entry: ZipEntry) -> Iterator[bytes]:
    """Yield the uncompressed bytes of ``entry`` in bounded pieces (CRC is the caller's)."""
    if entry.flags & 1:
        raise ZipFormatError(f"{entry.name!r} is encrypted")
    if entry.method not in (STORED, DEFLATED):
        raise ZipFormatError(f"{entry.name!r} uses unsupported method {entry.method}")
    pos = data_offset(fd, entry)
    end = pos + entry.csize
    if entry.method == STORED:
        while pos < end:
            piece = _pread_exact(fd, min(READ_CHUNK * 4, end - pos), pos)
            pos += len(piece)
            yield piece
        return
    d = _zlib.decompressobj(-15)
    while pos < end:
        data = _pread_exact(fd, min(READ_CHUNK, end - pos), pos)
        pos += len(data)
        try:
            while data:
                out = d.decompress(data, MAX_OUT)
                data = d.unconsumed_tail
                if out:
                    yield out
        except ZLIB_ERROR as e:
            raise ZipFormatError(f"{entry.name!r}: corrupt deflate data ({e})") from e
    try:
        while not d.eof:
            out = d.decompress(b"", MAX_OUT)
            if not out:
                break
            yield out
    except ZLIB_ERROR as e:
        raise ZipFormatError(f"{entry.name!r}: corrupt deflate data ({e})") from e
    if not d.eof:
        raise ZipFormatError(f"{entry.name!r}: deflate stream ends early")
