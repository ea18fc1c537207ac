"""The lock-file protocol between the trainer and the daemon (DESIGN.md, "Lock-file protocol").

This package is the only part of ``daemon`` that the trainer imports, so it
uses the standard library alone: importing it starts no watchdog, APScheduler,
SQLite or structlog machinery (``tests/unit/test_boundaries.py`` keeps it so).
Its modules import nothing of ``daemon`` outside this package.

- ``document``: the lock document (:class:`LockInfo`), the ack (:class:`Ack`),
  the protocol's constants, file names and errors;
- ``files``: flock probes and holds, in-place and atomic writes;
- ``reading``: reading the lock and the ack, and what makes a lock stale;
- ``liveness``: whether a trainer's process lives (pid, start time, boot id);
- ``trainer_lock``: the trainer's side (its lock for life, taken again when the
  file is lost, the wait for the ack);
- ``jsonfile``: reading a JSON object with one-line errors, shared by both
  programs' config loaders.

The names below are the protocol's public face: ``from daemon import protocol``.
"""

from __future__ import annotations

from daemon.protocol.document import (
    ACK_SUFFIX,
    DAEMON_DIR,
    DAEMON_LOCK_FILE,
    DEFAULT_LOCK_FILE,
    OUTCOMES,
    PROTOCOL_VERSION,
    READ_RETRY_S,
    START_RETRY_S,
    STATES,
    Ack,
    LockFileError,
    LockHeldError,
    LockInfo,
    LockState,
    Outcome,
    ProtocolError,
    ack_path,
    daemon_lock_path,
    new_session_id,
    read_boot_id,
    read_start_time,
    resolve_lock_path,
)
from daemon.protocol.files import (
    daemon_alive,
    fsync_dir,
    held_exclusively,
    lock_is_held,
    try_flock,
    write_atomic,
    write_in_place,
)
from daemon.protocol.liveness import (
    Liveness,
    ProcessIdentity,
    Seen,
    SystemProbe,
    identity_of,
    liveness,
)
from daemon.protocol.reading import is_stale, read_ack, read_lock, write_ack
from daemon.protocol.trainer_lock import LockKeeper, TrainerLock, wait_for_ack

__all__ = [
    "ACK_SUFFIX",
    "DAEMON_DIR",
    "DAEMON_LOCK_FILE",
    "DEFAULT_LOCK_FILE",
    "OUTCOMES",
    "PROTOCOL_VERSION",
    "READ_RETRY_S",
    "START_RETRY_S",
    "STATES",
    "Ack",
    "Liveness",
    "LockFileError",
    "LockHeldError",
    "LockInfo",
    "LockKeeper",
    "LockState",
    "Outcome",
    "ProcessIdentity",
    "ProtocolError",
    "Seen",
    "SystemProbe",
    "TrainerLock",
    "ack_path",
    "daemon_alive",
    "daemon_lock_path",
    "fsync_dir",
    "held_exclusively",
    "identity_of",
    "is_stale",
    "liveness",
    "lock_is_held",
    "new_session_id",
    "read_ack",
    "read_boot_id",
    "read_lock",
    "read_start_time",
    "resolve_lock_path",
    "try_flock",
    "wait_for_ack",
    "write_ack",
    "write_atomic",
    "write_in_place",
]
