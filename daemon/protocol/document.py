"""The lock-file protocol between the trainer and the daemon (DESIGN.md, "Lock-file protocol").

This is the only module of ``daemon`` that the trainer imports, so it uses the
standard library alone: importing it starts no watchdog, APScheduler, SQLite or
structlog machinery.

The lock file (``training.lock`` in the workspace root by default) holds one
JSON object, rewritten *in place* (truncate, one write, fsync) because the
trainer's exclusive ``flock`` belongs to the file's inode: replacing the file by
rename would silently drop the lock. A reader that finds it empty or unparsable
retries for a moment before it concludes anything.

The daemon proves it is alive by holding an exclusive flock on
``.daemon/daemon.lock``; a trainer that cannot take a shared flock on that file
knows a daemon is running. The daemon acknowledges a starting session by
writing ``<lock>.ack`` (temp file and rename).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
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

    @classmethod
    def new(cls, *, archive: bool, now: datetime | None = None) -> LockInfo:
        """A fresh ``starting`` record for this process."""
        now = now or datetime.now(UTC)
        return cls(
            session_id=new_session_id(now),
            pid=os.getpid(),
            host=socket.gethostname(),
            boot_id=read_boot_id(),
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
        doc = _load_object(text, source)
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

    def to_json(self) -> str:
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "ack file") -> Ack:
        doc = _load_object(text, source)
        try:
            archive = doc["archive"]
            if archive is not None and not isinstance(archive, str):
                raise LockFileError(f"{source}: field 'archive' must be a string or null")
            return cls(
                session_id=_typed(doc, "session_id", str, source),
                ready=_typed(doc, "ready", bool, source),
                archive=archive,
            )
        except KeyError as e:
            raise LockFileError(f"{source}: missing field {e.args[0]!r}") from e


def _load_object(text: str, source: str) -> dict[str, Any]:
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


def new_session_id(now: datetime | None = None) -> str:
    """A sortable, unique session id such as ``20261129T210538Z-3f9a1c``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def read_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


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


# --- flock primitives --------------------------------------------------------


def try_flock(fd: int, *, shared: bool = False) -> bool:
    """Take a non-blocking flock on ``fd``; False if someone else holds a conflicting one."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_is_held(path: Path) -> bool:
    """True when some process holds a flock on ``path``. A missing file is not held.

    Opens read-only, so probing writes nothing and creates nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        return not try_flock(fd)
    finally:
        os.close(fd)  # closing releases our probe lock, if we got it


def daemon_alive(workspace: Path) -> bool:
    """True when a daemon holds ``.daemon/daemon.lock`` of this workspace."""
    path = daemon_lock_path(workspace)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return not try_flock(fd, shared=True)
    finally:
        os.close(fd)


# --- reading and writing -----------------------------------------------------


def read_lock(
    path: Path,
    *,
    retry_s: float = READ_RETRY_S,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> LockInfo | None:
    """The lock file's content, or None when there is no lock file.

    An empty or unparsable file may be caught mid-rewrite, so it is read again
    until ``retry_s`` has passed; then :class:`LockFileError` is raised.
    """
    deadline = clock() + retry_s
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as e:
            raise LockFileError(f"{path}: cannot read lock file ({e})") from e
        try:
            return LockInfo.from_json(text, source=str(path))
        except LockFileError:
            if clock() >= deadline:
                raise
        pause(0.02)


def write_in_place(fd: int, text: str) -> None:
    """Truncate and rewrite an open file with one write, then fsync (inode kept)."""
    data = text.encode()
    os.ftruncate(fd, 0)
    written = os.pwrite(fd, data, 0)
    if written != len(data):
        raise OSError(f"short write to lock file ({written} of {len(data)} bytes)")
    os.fsync(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write a small file by temp file, fsync and rename, then fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_ack(path: Path) -> Ack | None:
    """The ack file's content, or None if it is missing or (mid-write) unreadable."""
    try:
        return Ack.from_json(path.read_text(), source=str(path))
    except FileNotFoundError:
        return None
    except (LockFileError, OSError, UnicodeDecodeError):
        return None


def write_ack(lock_path: Path, ack: Ack) -> None:
    write_atomic(ack_path(lock_path), ack.to_json())


def wait_for_ack(
    lock_path: Path,
    session_id: str,
    timeout_s: float,
    *,
    still_waiting: Callable[[], bool] = lambda: True,
    poll_s: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> Ack | None:
    """Wait until the daemon acknowledges ``session_id``; None on timeout.

    ``still_waiting`` lets the caller stop early (the daemon died meanwhile).
    """
    path = ack_path(lock_path)
    deadline = clock() + timeout_s
    while True:
        ack = read_ack(path)
        if ack is not None and ack.session_id == session_id and ack.ready:
            return ack
        if clock() >= deadline or not still_waiting():
            return None
        pause(poll_s)


class TrainerLock:
    """The trainer's side of the lock: an exclusive flock held for the whole run.

    Use as a context manager; :meth:`acquire` raises :class:`LockHeldError`
    when another live trainer holds it. :meth:`write` rewrites the content in
    place. Closing releases the flock; the file itself stays (its last state
    tells the daemon how the session ended).
    """

    def __init__(self, path: Path, *, retry_s: float = START_RETRY_S) -> None:
        self.path = path
        self.retry_s = retry_s
        self._fd: int | None = None
        self.info: LockInfo | None = None

    def acquire(
        self,
        info: LockInfo,
        *,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        deadline = clock() + self.retry_s
        while not try_flock(fd):
            if clock() >= deadline:
                os.close(fd)
                holder = _describe_holder(self.path)
                raise LockHeldError(f"{self.path}: another training session holds the lock{holder}")
            pause(0.05)
        self._fd = fd
        self.write(info)

    def write(self, info: LockInfo) -> None:
        if self._fd is None:
            raise ProtocolError("lock not acquired")
        write_in_place(self._fd, info.to_json())
        self.info = info

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TrainerLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe_holder(path: Path) -> str:
    with contextlib.suppress(LockFileError):
        info = read_lock(path, retry_s=0.2)
        if info is not None:
            return f" (session {info.session_id}, pid {info.pid} on {info.host})"
    return ""


@contextlib.contextmanager
def held_exclusively(path: Path) -> Iterator[int]:
    """Hold an exclusive flock on ``path`` (created if needed) or raise LockHeldError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    if not try_flock(fd):
        os.close(fd)
        raise LockHeldError(f"{path}: held by another process")
    try:
        yield fd
    finally:
        os.close(fd)


def is_stale(info: LockInfo | None, *, held: bool) -> bool:
    """A lock belongs to a dead trainer when nobody holds it and it never reached ``stopped``."""
    return info is not None and not held and info.state != "stopped"
