"""The archive engine: a zip library of its own (DESIGN.md, "Archive format").

It writes, reads, checks, verifies and restores workspace archives and manages
the archive folder. It knows nothing of the event log, the watching or the
service: it may import the standard library, ``isal``, ``daemon.errors`` and
``daemon.config`` types, and its own modules, nothing else of ``daemon``
(``tests/unit/test_boundaries.py`` keeps it so).

- ``zipwriter``, ``zipreader``: the zip format itself (zip64, streaming);
- ``packer``: deflate in pieces on two threads, sha256 while compressing;
- ``zipcheck``: is a ``.zip`` file a zip at all (a cheap central-directory check);
- ``manifest``: MANIFEST.json, archive names, reasons;
- ``sources``: which workspace files go into an archive (symlinks never followed out);
- ``create``: write, fsync, verify and publish one archive;
- ``verify``, ``restore``: read an archive back, check it, extract it safely;
- ``folder``: the archive folder (its lock, temporary files, listing, names).

The names below are the engine's public face: ``from daemon import archive``.
"""

from __future__ import annotations

from daemon.archive.create import ARCHIVE_MODE, ArchiveResult, create_archive
from daemon.archive.folder import (
    LOCK_NAME,
    archive_lock,
    cleanup_temp_files,
    list_archive_files,
    resolve_archive,
)
from daemon.archive.manifest import ARCHIVE_RE, Manifest, MemberRecord, SkippedRecord
from daemon.archive.restore import restore_archive
from daemon.archive.verify import (
    VerifyResult,
    claimed_workspace_id,
    has_manifest,
    read_manifest,
    verify_archive,
)

__all__ = [
    "ARCHIVE_MODE",
    "ARCHIVE_RE",
    "LOCK_NAME",
    "ArchiveResult",
    "Manifest",
    "MemberRecord",
    "SkippedRecord",
    "VerifyResult",
    "archive_lock",
    "claimed_workspace_id",
    "cleanup_temp_files",
    "create_archive",
    "has_manifest",
    "list_archive_files",
    "read_manifest",
    "resolve_archive",
    "restore_archive",
    "verify_archive",
]
