"""Events of off-machine copies: uploads, their failures, remote retention and clean-up.

Registered with the others in :data:`daemon.eventlog.events.EVENT_TYPES`. An archive
is named by its file name, as in every archive event; ``key`` is its object key.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.eventlog.base import Event


@dataclass(frozen=True)
class ArchiveUploaded(Event):
    """The archive's object exists and was verified (size and sha256 by HEAD)."""

    name: str
    key: str
    bytes: int
    sha256: str
    seconds: float = 0.0
    already: bool = False
    """True when the object was found there already (an upload a crash left unrecorded)."""
    archive_id: str = ""
    """The manifest's id of the archive uploaded: names can come back after a prune."""


@dataclass(frozen=True)
class ArchiveUploadFailed(Event):
    name: str
    error: str
    attempt: int = 1
    retry_in_s: float = 0.0


@dataclass(frozen=True)
class RemoteArchivePruned(Event):
    """Remote retention deleted this workspace's object ``key``."""

    name: str
    key: str
    why: str = ""


@dataclass(frozen=True)
class RemoteUploadsAborted(Event):
    """Incomplete multipart uploads of this workspace (left by a crash) were aborted."""

    keys: tuple[str, ...]
