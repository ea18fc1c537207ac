"""The workspace's permanent identity: ``.daemon/workspace.json`` (DESIGN.md, "Identity").

``{"workspace_id": "<uuid4 hex>", "created_at": "ISO-8601 UTC"}``, made the
first time a daemon or a command records anything in the workspace (read-only
commands on a fresh workspace leave nothing behind, so they only *read* it).
It is written once, atomically (a hidden temporary file, fsynced, then
hard-linked to its name, so two processes making it at once agree on one id:
whoever links second reads the first one's) with mode 0666 & ~umask, which the
sharing umask makes readable and writable by the workspace's group (0664 or
0660), like everything else under .daemon/. It is never rewritten: a file that
is not a valid identity is bad input (``ConfigError``, exit 2) and is left as it is.

Every archive's manifest names this id; archives with another id (or none,
unless this workspace's event log recorded them) are foreign.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.errors import ConfigError
from daemon.protocol.jsonfile import JSONFileError, read_object

IDENTITY_FILE = "workspace.json"
IDENTITY_MODE = 0o666
"""Before the umask, as every file both programs share (DESIGN.md, "Sharing")."""


@dataclass(frozen=True)
class Identity:
    """Who this workspace is."""

    workspace_id: str
    """A uuid4 in hex: permanent, never reused."""
    created_at: str
    """When the id was made (ISO-8601, UTC)."""


def identity_path(daemon_dir: Path) -> Path:
    return daemon_dir / IDENTITY_FILE


def read_identity(daemon_dir: Path) -> Identity | None:
    """The identity in ``daemon_dir``, or None when none was made yet."""
    path = identity_path(daemon_dir)
    try:
        doc = read_object(path)
    except JSONFileError as e:
        raise ConfigError(str(e)) from e
    if doc is None:
        return None
    wid, created = doc.get("workspace_id"), doc.get("created_at")
    if not isinstance(wid, str) or not wid.strip():
        raise ConfigError(f"{path}: field 'workspace_id' must be a non-empty string")
    if not isinstance(created, str):
        raise ConfigError(f"{path}: field 'created_at' must be a string")
    return Identity(wid, created)


def ensure_identity(
    daemon_dir: Path,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> tuple[Identity, bool]:
    """The workspace's identity, made now if it has none: (identity, whether it was made)."""
    found = read_identity(daemon_dir)
    if found is not None:
        return found, False
    made = Identity(new_id(), now().astimezone(UTC).isoformat(timespec="seconds"))
    daemon_dir.mkdir(parents=True, exist_ok=True)
    final = identity_path(daemon_dir)
    tmp = daemon_dir / f".{IDENTITY_FILE}.{os.getpid()}.{made.workspace_id[:8]}.tmp"
    body = f'{{"workspace_id": "{made.workspace_id}", "created_at": "{made.created_at}"}}\n'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, IDENTITY_MODE)
    try:
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, final)
        except FileExistsError:  # someone else made it meanwhile: theirs is the id
            other = read_identity(daemon_dir)
            assert other is not None
            return other, False
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    dfd = os.open(daemon_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return made, True
