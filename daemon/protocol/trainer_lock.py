"""The trainer's side of the lock-file protocol (stdlib only).

:class:`TrainerLock` holds the exclusive flock for the trainer's whole life;
:func:`wait_for_ack` waits (bounded) for the daemon's acknowledgement.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from daemon.protocol.document import (
    START_RETRY_S,
    Ack,
    LockFileError,
    LockHeldError,
    LockInfo,
    ProtocolError,
    ack_path,
)
from daemon.protocol.files import try_flock, write_in_place
from daemon.protocol.reading import read_ack, read_lock


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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
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
