"""Reading the lock and the ack, and deciding staleness (stdlib only).

A reader that finds the lock file empty or unparsable may have caught it
mid-rewrite, so it reads again for a moment before it concludes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from daemon.protocol.document import READ_RETRY_S, Ack, LockFileError, LockInfo, ack_path
from daemon.protocol.files import write_atomic
from daemon.protocol.liveness import Liveness


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


def is_stale(info: LockInfo | None, *, held: bool, trainer: Liveness = "unknown") -> bool:
    """A lock belongs to a dead trainer when it never reached ``stopped`` and its trainer
    is gone (DESIGN.md, "stale": dead is checked, not assumed).

    ``trainer`` is :func:`~daemon.protocol.liveness.liveness` of the document's
    process. ``alive`` is never stale, whoever holds the flock (the file may have
    been deleted or replaced, so the flock is on another inode); ``dead`` is stale
    even if some other process holds the new file's flock; only when this machine
    cannot tell (``unknown``: another host) does the flock decide, as before.
    """
    if info is None or info.state == "stopped" or trainer == "alive":
        return False
    return trainer == "dead" or not held
