"""The lock document and its names: what the trainer and the daemon agree on (stdlib only).

The lock file (``training.lock`` in the workspace root by default) holds one
JSON object, :class:`LockInfo`, rewritten *in place* (truncate, one write,
fsync) because the trainer's exclusive ``flock`` belongs to the file's inode:
replacing the file by rename would silently drop the lock. The daemon
acknowledges a starting session with :class:`Ack` in ``<lock>.ack`` (temp file
and rename), and proves it is alive by holding an exclusive flock on
``.daemon/daemon.lock``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from daemon.protocol.jsonfile import JSONFileError, parse_object

PROTOCOL_VERSION = 1
DEFAULT_LOCK_FILE = "training.lock"
DAEMON_DIR = ".daemon"
DAEMON_LOCK_FILE = "daemon.lock"
ACK_SUFFIX = ".ack"
START_RETRY_S = 2.0
"""How long a starting trainer retries a held lock (the daemon may be probing it)."""
READ_RETRY_S = 0.5
"""How long a reader retries an empty or unparsable lock file before giving up."""

LockState = Literal["starting", "running", "stopped"]
Outcome = Literal["completed", "failed", "interrupted"]
STATES: tuple[str, ...] = ("starting", "running", "stopped")
OUTCOMES: tuple[str, ...] = ("completed", "failed", "interrupted")


class ProtocolError(Exception):
    """Base class of lock-protocol errors."""


class LockFileError(ProtocolError, ValueError):
    """The lock or ack file exists but does not hold a valid protocol document."""


class LockHeldError(ProtocolError):
    """Another live process holds the training lock."""


@dataclass(frozen=True)
class LockInfo:
    """The content of the lock file: one JSON object."""

    session_id: str
    pid: int
    host: str
    boot_id: str
    started_at: str
    archive: bool
    state: LockState
    outcome: Outcome | None = None
    protocol: int = PROTOCOL_VERSION
    start_time: int | None = None
    """The trainer process's start time in clock ticks after boot (``/proc/PID/stat``
    field 22): with ``pid`` and ``boot_id`` it names one process, whatever reuses the pid.
    Optional in protocol 1: a document without it still parses (liveness then rests
    on pid and boot id alone)."""

    @classmethod
    def new(cls, *, archive: bool, now: datetime | None = None) -> LockInfo:
        """A fresh ``starting`` record for this process."""
        now = now or datetime.now(UTC)
        return cls(
            session_id=new_session_id(now),
            pid=os.getpid(),
            host=socket.gethostname(),
            boot_id=read_boot_id(),
            start_time=read_start_time(os.getpid()),
            started_at=now.isoformat(timespec="seconds"),
            archive=archive,
            state="starting",
        )

    def with_state(self, state: LockState, outcome: Outcome | None = None) -> LockInfo:
        return replace(self, state=state, outcome=outcome)

    def to_json(self) -> str:
        doc = asdict(self)
        doc = {"protocol": doc.pop("protocol"), **doc}
        return json.dumps(doc, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "lock file") -> LockInfo:
        doc = _parse(text, source)
        try:
            protocol = doc["protocol"]
            info = cls(
                session_id=_typed(doc, "session_id", str, source),
                pid=_typed(doc, "pid", int, source),
                host=_typed(doc, "host", str, source),
                boot_id=_typed(doc, "boot_id", str, source),
                started_at=_typed(doc, "started_at", str, source),
                archive=_typed(doc, "archive", bool, source),
                state=doc["state"],
                outcome=doc.get("outcome"),
                protocol=protocol,
                start_time=_optional_int(doc, "start_time", source),
            )
        except KeyError as e:
            raise LockFileError(f"{source}: missing field {e.args[0]!r}") from e
        if protocol != PROTOCOL_VERSION:
            raise LockFileError(f"{source}: unsupported protocol {protocol!r}")
        if info.state not in STATES:
            raise LockFileError(f"{source}: field 'state' has invalid value {info.state!r}")
        if info.outcome is not None and info.outcome not in OUTCOMES:
            raise LockFileError(f"{source}: field 'outcome' has invalid value {info.outcome!r}")
        if not info.session_id:
            raise LockFileError(f"{source}: field 'session_id' is empty")
        return info


@dataclass(frozen=True)
class Ack:
    """The daemon's acknowledgement of a starting session (``<lock>.ack``)."""

    session_id: str
    ready: bool
    archive: str | None
    reason: str | None = None
    """Why the daemon could not prepare (with ``ready: false``); absent in older acks."""

    def to_json(self) -> str:
        doc = asdict(self)
        if doc["reason"] is None:
            del doc["reason"]  # an ack as older trainers know it
        return json.dumps(doc) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "ack file") -> Ack:
        doc = _parse(text, source)
        try:
            archive = doc["archive"]
            if archive is not None and not isinstance(archive, str):
                raise LockFileError(f"{source}: field 'archive' must be a string or null")
            reason = doc.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise LockFileError(f"{source}: field 'reason' must be a string or null")
            return cls(
                session_id=_typed(doc, "session_id", str, source),
                ready=_typed(doc, "ready", bool, source),
                archive=archive,
                reason=reason,
            )
        except KeyError as e:
            raise LockFileError(f"{source}: missing field {e.args[0]!r}") from e


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        return parse_object(text, source)
    except JSONFileError as e:
        raise LockFileError(str(e)) from e


def _typed(doc: dict[str, Any], key: str, kind: type, source: str) -> Any:
    value = doc[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise LockFileError(f"{source}: field {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _optional_int(doc: dict[str, Any], key: str, source: str) -> int | None:
    if doc.get(key) is None:
        return None
    return int(_typed(doc, key, int, source))


def new_session_id(now: datetime | None = None) -> str:
    """A sortable, unique session id such as ``20261129T210538Z-3f9a1c``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def read_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def read_stat(pid: int, *, proc: Path = Path("/proc")) -> str:
    """Process ``pid``'s ``/proc/PID/stat`` line, or "" when it cannot be read (no such
    process, or /proc hides it: ``hidepid``, ``ProtectProc=invisible``)."""
    try:
        return (proc / str(pid) / "stat").read_text()
    except (OSError, UnicodeDecodeError):
        return ""


def read_start_time(pid: int, *, proc: Path = Path("/proc")) -> int | None:
    """Process ``pid``'s start time in clock ticks after boot, or None when it cannot
    be read (see :func:`read_stat`)."""
    return parse_start_time(read_stat(pid, proc=proc))


def _stat_fields(stat_line: str) -> list[str]:
    """The fields of a ``/proc/PID/stat`` line from field 3 (state) on. The command name
    (field 2) is in parentheses and may hold spaces and parentheses itself, so fields
    are counted from the *last* ``)``."""
    return stat_line[stat_line.rfind(")") + 1 :].split()


def parse_start_time(stat_line: str) -> int | None:
    """Field 22 of a ``/proc/PID/stat`` line (start time in clock ticks after boot)."""
    try:
        return int(_stat_fields(stat_line)[19])  # [0] is field 3: field 22 is [19]
    except (IndexError, ValueError):
        return None


def parse_state(stat_line: str) -> str | None:
    """Field 3 of a ``/proc/PID/stat`` line (``R``, ``S``, ``Z`` for a zombie...)."""
    fields = _stat_fields(stat_line)
    return fields[0] if fields else None


# --- paths -----------------------------------------------------------------


def resolve_lock_path(workspace: Path, config_file: Path | None = None) -> Path:
    """The lock file named by ``lock_file`` in config.json (top level or one section).

    Validation of config.json is the daemon's job; this reads only the one key
    both programs share, so a missing or unreadable file falls back to the default.
    """
    config_file = config_file or workspace / "config" / "config.json"
    name: Any = DEFAULT_LOCK_FILE
    try:
        doc = json.loads(config_file.read_text())
    except (OSError, ValueError):
        doc = {}
    if isinstance(doc, dict):
        if isinstance(doc.get("lock_file"), str):
            name = doc["lock_file"]
        else:
            for section in doc.values():
                if isinstance(section, dict) and isinstance(section.get("lock_file"), str):
                    name = section["lock_file"]
                    break
    path = Path(name).expanduser()  # as the daemon does (daemon/config.py)
    return path if path.is_absolute() else workspace / path


def ack_path(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + ACK_SUFFIX)


def daemon_lock_path(workspace: Path) -> Path:
    return workspace / DAEMON_DIR / DAEMON_LOCK_FILE
