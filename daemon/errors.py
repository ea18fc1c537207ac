"""The daemon's named exceptions: a handful, each for a failure a caller handles differently.

Foreign errors (``OSError``, ``zipfile.BadZipFile``...) are wrapped with
``raise ... from e`` so callers catch these alone; messages are one line and
name the file or folder concerned.
"""

from __future__ import annotations

__all__ = [
    "ArchiveBusyError",
    "ArchiveError",
    "ArchiveNotFoundError",
    "ConfigError",
    "DaemonError",
    "DiskFullError",
    "EventLogError",
    "EventLogFullError",
    "UnsafeArchiveError",
]


class DaemonError(Exception):
    """Base class of every error the daemon raises on purpose."""


class ConfigError(DaemonError, ValueError):
    """A configuration file or value is invalid (exit 2, names the file and field)."""


class EventLogError(DaemonError):
    """The event log cannot be opened, read or appended to."""


class EventLogFullError(EventLogError):
    """An append failed for want of space (SQLITE_FULL, or an I/O error writing the log):
    a state that passes, so the daemon holds its events and waits instead of exiting."""


class ArchiveError(DaemonError):
    """Writing, verifying or restoring an archive failed; nothing partial is left visible."""


class ArchiveBusyError(ArchiveError):
    """Another archiver holds the archive lock for longer than the caller would wait."""


class DiskFullError(ArchiveError):
    """The archive folder's file system ran out of space (ENOSPC / EDQUOT)."""


class UnsafeArchiveError(DaemonError):
    """An archive holds an absolute path, a ``..`` component, a link or a duplicate name."""


class ArchiveNotFoundError(DaemonError):
    """No archive matches the name or path given."""


class UsageError(DaemonError):
    """A command-line argument names something unusable (exit code 2)."""
