"""A minimal streaming zip writer: local headers patched in place, zip64 when needed.

``zipfile`` cannot take a faster deflate than stdlib zlib, so members are
written here from bytes the caller has already compressed (raw deflate or
stored). Each member gets a local header whose CRC and sizes are patched
with ``pwrite`` once its data is written (no data descriptors: every reader
understands these), so a member can also be rolled back by truncating the
file at its header. Zip64 extras are used for a member whose size might
reach 4 GiB (the caller says so up front, as ``zipfile`` does), and the
zip64 end records when there are 65535+ members or the central directory
lies past 4 GiB. Member names are UTF-8 (flag bit 11 when not ASCII); the
Unix mode goes into the external attributes.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from dataclasses import dataclass

STORED = 0
DEFLATED = 8
ZIP64_LIMIT = 0xFFFFFFFF
MAX_ENTRIES = 0xFFFF
FLAG_UTF8 = 0x800
UNIX = 3

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<IHHHHIIH")
_EOCD64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
_BUFFER = 1 << 20


@dataclass
class Entry:
    """A member as the central directory will describe it."""

    name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    mode: int
    offset: int
    zip64_local: bool
    crc: int = 0
    csize: int = 0
    usize: int = 0


def dos_datetime(mtime: float) -> tuple[int, int]:
    """(time, date) in MS-DOS format, local time as the zip convention has it."""
    t = time.localtime(mtime)
    year = min(max(t.tm_year, 1980), 2107)
    dos_date = ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    return dos_time, dos_date


class ZipWriter:
    """Writes a zip to an open file descriptor, sequentially from offset 0.

    Small writes are gathered in a buffer; large ones go straight to the file.
    ``OSError`` (ENOSPC included) propagates untouched: the caller owns the file.
    """

    def __init__(self, fd: int, *, force_zip64: bool = False) -> None:
        self._fd = fd
        self._force_zip64 = force_zip64
        self._flushed = 0  # bytes on the file; the buffer continues from here
        self._buf = bytearray()
        self.entries: list[Entry] = []

    @property
    def position(self) -> int:
        """Bytes written so far (flushed or buffered)."""
        return self._flushed + len(self._buf)

    def begin(self, name: str, *, method: int, mtime: float, mode: int, zip64: bool) -> Entry:
        """Write a local header for ``name``; sizes and CRC are patched by ``end``."""
        raw = name.encode("utf-8")
        flags = 0 if raw.isascii() else FLAG_UTF8
        dos_time, dos_date = dos_datetime(mtime)
        zip64 = zip64 or self._force_zip64
        entry = Entry(raw, flags, method, dos_time, dos_date, mode, self.position, zip64)
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if zip64 else b""
        size_field = ZIP64_LIMIT if zip64 else 0
        version = 45 if zip64 else 20
        header = _LOCAL.pack(
            0x04034B50, version, flags, method, dos_time, dos_date, 0,
            size_field, size_field, len(raw), len(extra),
        )  # fmt: skip
        self.write(header + raw + extra)
        return entry

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append member data (or headers) to the file."""
        if len(data) >= _BUFFER // 4:
            self.flush()
            self._pwrite_all(data, self._flushed)
            self._flushed += len(data)
            return
        self._buf += data
        if len(self._buf) >= _BUFFER:
            self.flush()

    def end(self, entry: Entry, *, crc: int, csize: int, usize: int) -> None:
        """Record the member's CRC and sizes in its local header and the central directory."""
        if not entry.zip64_local and max(csize, usize) >= ZIP64_LIMIT:
            raise ValueError(f"member {entry.name!r} reached 4 GiB without a zip64 header")
        entry.crc, entry.csize, entry.usize = crc, csize, usize
        if entry.zip64_local:
            self._patch(entry.offset + 14, struct.pack("<I", crc))
            self._patch(entry.offset + 30 + len(entry.name) + 4, struct.pack("<QQ", usize, csize))
        else:
            self._patch(entry.offset + 14, struct.pack("<III", crc, csize, usize))
        self.entries.append(entry)

    def rollback(self, entry: Entry) -> None:
        """Forget a member begun at ``entry``: truncate the file back to its header."""
        if entry.offset >= self._flushed:
            del self._buf[entry.offset - self._flushed :]
        else:
            self._buf.clear()
            os.ftruncate(self._fd, entry.offset)
            self._flushed = entry.offset

    def finish(self) -> int:
        """Write the central directory and end records; flush; return the archive size."""
        cd_offset = self.position
        for e in self.entries:
            self.write(self._central(e))
        cd_size = self.position - cd_offset
        count = len(self.entries)
        if self._force_zip64 or count >= MAX_ENTRIES or cd_offset + cd_size >= ZIP64_LIMIT:
            eocd64 = self.position
            self.write(_EOCD64.pack(0x06064B50, 44, (UNIX << 8) | 45, 45, 0, 0,
                                    count, count, cd_size, cd_offset))  # fmt: skip
            self.write(_LOCATOR64.pack(0x07064B50, 0, eocd64, 1))
        n16 = min(count, MAX_ENTRIES)
        cd_size32, cd_offset32 = min(cd_size, ZIP64_LIMIT), min(cd_offset, ZIP64_LIMIT)
        self.write(_EOCD.pack(0x06054B50, 0, 0, n16, n16, cd_size32, cd_offset32, 0))
        self.flush()
        return self._flushed

    def flush(self) -> None:
        """Write the buffer out."""
        if self._buf:
            self._pwrite_all(self._buf, self._flushed)
            self._flushed += len(self._buf)
            self._buf.clear()

    def _central(self, e: Entry) -> bytes:
        big = self._force_zip64 or e.zip64_local
        extra_fields = []
        usize, csize, offset = e.usize, e.csize, e.offset
        if big or usize >= ZIP64_LIMIT:
            extra_fields.append(usize)
            usize = ZIP64_LIMIT
        if big or csize >= ZIP64_LIMIT:
            extra_fields.append(csize)
            csize = ZIP64_LIMIT
        if self._force_zip64 or offset >= ZIP64_LIMIT:
            extra_fields.append(offset)
            offset = ZIP64_LIMIT
        extra = b""
        if extra_fields:
            extra = struct.pack(f"<HH{len(extra_fields)}Q", 1, 8 * len(extra_fields), *extra_fields)
        version = 45 if extra_fields or e.zip64_local else 20
        attr = (stat.S_IFREG | (e.mode & 0o777)) << 16
        return _CENTRAL.pack(0x02014B50, (UNIX << 8) | version, version, e.flags, e.method,
                             e.dos_time, e.dos_date, e.crc, csize, usize, len(e.name),
                             len(extra), 0, 0, 0, attr, offset) + e.name + extra  # fmt: skip

    def _patch(self, offset: int, data: bytes) -> None:
        """Overwrite ``data`` at ``offset``, in the buffer or on the file (or both)."""
        on_file = max(0, min(len(data), self._flushed - offset))
        if on_file:
            self._pwrite_all(data[:on_file], offset)
        if on_file < len(data):
            start = offset + on_file - self._flushed
            self._buf[start : start + len(data) - on_file] = data[on_file:]

    def _pwrite_all(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n
