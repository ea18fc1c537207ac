"""Where copies live in the bucket: ``PREFIX/<host>/<workspace_id>/<archive name>``.

Each workspace's folder also holds ``index.json`` (``INDEX_NAME``), the
sha256 and manifest facts of its archives, so listing many hosts needs no
request per object. The host segment is ``safe_host(host)``; keys that do
not have exactly this shape (or whose name is not an archive's) are no
copies of ours and ``parse_key`` ignores them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from daemon.archive.manifest import ARCHIVE_RE

INDEX_NAME = "index.json"
UNKNOWN_HOST = "unknown-host"
SEGMENT_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class KeyParts:
    """What an archive's key says: its machine, workspace and archive name."""

    host: str
    workspace_id: str
    name: str


def safe_host(host: str) -> str:
    """``host`` as one key segment: characters outside [A-Za-z0-9._-] become "_", and a name
    of dots only ("." and ".." are no folder in many servers) becomes underscores."""
    safe = _UNSAFE.sub("_", host)
    if not safe:
        return UNKNOWN_HOST
    return "_" * len(safe) if set(safe) == {"."} else safe


def workspace_prefix(prefix: str, host: str, workspace_id: str) -> str:
    """``PREFIX/<host>/<workspace_id>/`` (``<host>/<workspace_id>/`` when prefix is "")."""
    if not SEGMENT_RE.match(workspace_id) or set(workspace_id) == {"."}:
        raise ValueError(f"workspace id {workspace_id!r} cannot be a key segment")
    return f"{_base(prefix)}{safe_host(host)}/{workspace_id}/"


def host_prefix(prefix: str, host: str) -> str:
    """``PREFIX/<host>/``: every workspace of one machine."""
    return f"{_base(prefix)}{safe_host(host)}/"


def archive_key(prefix: str, host: str, workspace_id: str, name: str) -> str:
    """The key of archive ``name`` of a workspace; ValueError unless ``name`` is an archive's."""
    if not ARCHIVE_RE.match(name):
        raise ValueError(f"{name!r} is not an archive name")
    return workspace_prefix(prefix, host, workspace_id) + name


def index_key(prefix: str, host: str, workspace_id: str) -> str:
    """The key of a workspace's ``index.json``."""
    return workspace_prefix(prefix, host, workspace_id) + INDEX_NAME


def parse_key(prefix: str, key: str) -> KeyParts | None:
    """The parts of an archive's key under ``prefix``; None for any other key."""
    base = _base(prefix)
    if not key.startswith(base):
        return None
    parts = key[len(base) :].split("/")
    if len(parts) != 3:
        return None
    host, workspace_id, name = parts
    if not (SEGMENT_RE.match(host) and SEGMENT_RE.match(workspace_id) and ARCHIVE_RE.match(name)):
        return None
    return KeyParts(host, workspace_id, name)


def _base(prefix: str) -> str:
    """``prefix`` as the start of a key: "PREFIX/" or ""."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""
