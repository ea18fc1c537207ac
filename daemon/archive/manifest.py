"""The archive's self-description (DESIGN.md, "Archive format"): names and MANIFEST.json.

An archive is ``training_backup_YYYYMMDD_HHMMSS.zip`` (``_2``, ``_3``... when
that second is taken; the time is UTC, like ``created_at``). Its last member,
``MANIFEST.json``, holds the format version, a uuid4 archive id, the reason,
the session id, ``created_at`` (ISO-8601 UTC) and, per archived file, its
path in the zip, size, sha256, mtime (float seconds and exact ``mtime_ns``) and
``changed`` (true when the file kept changing while it was read: the bytes
archived are those of the last read, and the sha256 is theirs) and, only for a
``.zip`` file that is not a readable zip (truncated, say), ``damaged`` with the
reason: its bytes are archived as they were, flagged, never as if good. ``skipped``
lists the files *not* archived, each with a reason (see ``SKIP_REASONS``).
``workspace_id`` and ``host`` name the workspace that made it and its machine;
both are null in archives made before they existed, which still read.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

FORMAT_VERSION = 1
MANIFEST_NAME = "MANIFEST.json"
ROOT_CHECKPOINTS = "root_checkpoints"
REASONS: tuple[str, ...] = ("pre_training", "post_training", "abandoned", "manual", "recovery")
SKIP_REASONS: tuple[str, ...] = (
    "vanished",  # listed, then gone before it could be read
    "unreadable",  # open or read failed (EACCES, EIO...)
    "symlink",  # a symlink: never followed (target inside the workspace)
    "symlink_outside_workspace",  # a symlink pointing out of the workspace
    "not_regular",  # a FIFO, socket or device
)

ARCHIVE_RE = re.compile(r"^training_backup_(\d{8})_(\d{6})(?:_([2-9]|[1-9]\d+))?\.zip$")
"""Final archive names: ``training_backup_YYYYMMDD_HHMMSS.zip`` or ``..._N.zip`` (N >= 2)."""
INT64 = 2**63
"""Sizes and nanosecond times beyond a signed 64-bit integer are no file's."""
SHA256_RE = re.compile(r"[0-9a-f]{64}")
TEMP_RE = re.compile(r"^\.training_backup_\d{8}_\d{6}\.[0-9a-f]{8}\.zip\.tmp$")
"""Hidden temporary files of archives being written (or of runs that crashed)."""


def archive_name(now: datetime, n: int = 1) -> str:
    """The final name for an archive created at ``now`` (UTC), the ``n``-th in that second."""
    stamp = now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    return f"training_backup_{stamp}.zip" if n == 1 else f"training_backup_{stamp}_{n}.zip"


def temp_name(now: datetime, archive_id: str) -> str:
    """The hidden temporary name under which an archive is written (matches ``TEMP_RE``)."""
    stamp = now.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    return f".training_backup_{stamp}.{archive_id[:8]}.zip.tmp"


@dataclass(frozen=True)
class MemberRecord:
    """One archived file: its path inside the zip and what its bytes were."""

    path: str
    size: int
    sha256: str
    mtime: float
    mtime_ns: int = 0
    changed: bool = False
    damaged: str | None = None
    """Why this ``.zip`` file is not a readable zip; None (omitted in JSON) when it is."""


@dataclass(frozen=True)
class SkippedRecord:
    """A file of the workspace that the archive does not hold, and why."""

    path: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Manifest:
    """The content of MANIFEST.json."""

    format_version: int
    archive_id: str
    reason: str
    session_id: str | None
    created_at: str
    members: tuple[MemberRecord, ...]
    skipped: tuple[SkippedRecord, ...] = ()
    workspace_id: str | None = None
    """The id of the workspace that made the archive (``.daemon/workspace.json``)."""
    host: str | None = None
    """The host name of the machine that made it."""

    @property
    def changed(self) -> tuple[str, ...]:
        """Paths of members whose file kept changing while it was read."""
        return tuple(m.path for m in self.members if m.changed)

    def member(self, path: str) -> MemberRecord | None:
        """The record of ``path``, or None."""
        for m in self.members:
            if m.path == path:
                return m
        return None

    def to_json(self) -> str:
        """Serialise (stable key order, UTF-8 safe, one member per line for diffs)."""
        doc = asdict(self)
        for member in doc["members"]:
            if member["damaged"] is None:
                del member["damaged"]
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse MANIFEST.json; raise ``ValueError`` naming the bad field."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"MANIFEST.json is not valid JSON: {e}") from e
        except RecursionError as e:
            raise ValueError("MANIFEST.json is nested too deeply") from e
        if not isinstance(doc, dict):
            raise ValueError("MANIFEST.json is not a JSON object")
        version = _field(doc, "format_version", int)
        if version != FORMAT_VERSION:
            raise ValueError(f"MANIFEST.json format_version {version} is not supported")
        session = doc.get("session_id")
        if session is not None and not isinstance(session, str):
            raise ValueError("MANIFEST.json field 'session_id' must be a string or null")
        members = _field(doc, "members", list)
        skipped = doc.get("skipped", [])
        if not isinstance(skipped, list):
            raise ValueError("MANIFEST.json field 'skipped' must be a list")
        for key in ("workspace_id", "host"):
            if doc.get(key) is not None and not isinstance(doc[key], str):
                raise ValueError(f"MANIFEST.json field '{key}' must be a string or null")
        return cls(
            format_version=version,
            archive_id=_field(doc, "archive_id", str),
            reason=_field(doc, "reason", str),
            session_id=session,
            created_at=_field(doc, "created_at", str),
            members=tuple(_member(m, i) for i, m in enumerate(members)),
            skipped=tuple(_skipped(s, i) for i, s in enumerate(skipped)),
            workspace_id=doc.get("workspace_id"),
            host=doc.get("host"),
        )


def _field(doc: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    value = doc.get(key)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"MANIFEST.json field '{where}{key}' must be {kind.__name__}")
    return value


def _member(m: Any, i: int) -> MemberRecord:
    """One member record, every field type-checked: a manifest read from disk is input."""
    if not isinstance(m, dict):
        raise ValueError(f"MANIFEST.json members[{i}] is not an object")
    where = f"members[{i}]."
    path = _field(m, "path", str, where)
    problem = member_path_problem(path)
    if problem:
        raise ValueError(f"MANIFEST.json field '{where}path' {problem}: {path!r}")
    size = _field(m, "size", int, where)
    if not 0 <= size < INT64:
        raise ValueError(f"MANIFEST.json field '{where}size' is out of range")
    sha256 = _field(m, "sha256", str, where)
    if not SHA256_RE.fullmatch(sha256):
        raise ValueError(f"MANIFEST.json field '{where}sha256' must be 64 lowercase hex digits")
    mtime = _field(m, "mtime", float, where)
    if not abs(mtime) < INT64 / 1e9:  # false for nan and inf too; int(mtime * 1e9) must work
        raise ValueError(f"MANIFEST.json field '{where}mtime' must be a finite time in range")
    mtime_ns = _field(m, "mtime_ns", int, where) if "mtime_ns" in m else 0
    if not -INT64 <= mtime_ns < INT64:  # os.utime takes it
        raise ValueError(f"MANIFEST.json field '{where}mtime_ns' is out of range")
    return MemberRecord(
        path=path,
        size=size,
        sha256=sha256,
        mtime=float(mtime),
        mtime_ns=mtime_ns,
        changed=_field(m, "changed", bool, where) if "changed" in m else False,
        damaged=_damaged(m.get("damaged"), i),
    )


def member_path_problem(path: str) -> str:
    """Why ``path`` is not a normalised relative member path ("" when it is one).

    Paths are joined onto the workspace (``prepare`` unlinks what they name),
    so only plain ``a/b/c`` forms pass: no absolute path or drive letter, no
    backslash or NUL, no empty, ``.`` or ``..`` component.
    """
    if not path:
        return "is empty"
    if "\x00" in path:
        return "contains a NUL"
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "is absolute"
    if "\\" in path:
        return "contains a backslash"
    parts = path.split("/")
    if ".." in parts:
        return "has a '..' component"
    if any(part in ("", ".") for part in parts):
        return "has an empty or '.' component"
    return ""


def _damaged(value: Any, i: int) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"MANIFEST.json field 'members[{i}].damaged' must be a string or null")
    return value


def _skipped(s: Any, i: int) -> SkippedRecord:
    if not isinstance(s, dict):
        raise ValueError(f"MANIFEST.json skipped[{i}] is not an object")
    where = f"skipped[{i}]."
    return SkippedRecord(
        path=_field(s, "path", str, where),
        reason=_field(s, "reason", str, where),
        detail=str(s.get("detail", "")),
    )
