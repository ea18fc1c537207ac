"""The lock-file protocol between the trainer and the daemon (DESIGN.md, "Lock-file protocol").

This package is the only part of ``daemon`` that the trainer imports, so it
uses the standard library alone: importing it starts no watchdog, APScheduler,
SQLite or structlog machinery (``tests/unit/test_boundaries.py`` keeps it so).
Its modules import nothing of ``daemon`` outside this package.

- ``document``: the protocol itself;
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
    TrainerLock,
    ack_path,
    daemon_alive,
    daemon_lock_path,
    fsync_dir,
    held_exclusively,
    is_stale,
    lock_is_held,
    new_session_id,
    read_ack,
    read_boot_id,
    read_lock,
    resolve_lock_path,
    try_flock,
    wait_for_ack,
    write_ack,
    write_atomic,
    write_in_place,
)

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
    "LockFileError",
    "LockHeldError",
    "LockInfo",
    "LockState",
    "Outcome",
    "ProtocolError",
    "TrainerLock",
    "ack_path",
    "daemon_alive",
    "daemon_lock_path",
    "fsync_dir",
    "held_exclusively",
    "is_stale",
    "lock_is_held",
    "new_session_id",
    "read_ack",
    "read_boot_id",
    "read_lock",
    "resolve_lock_path",
    "try_flock",
    "wait_for_ack",
    "write_ack",
    "write_atomic",
    "write_in_place",
]
