"""flock and small-file primitives of the lock-file protocol (stdlib only).

The trainer's exclusive flock belongs to the lock file's inode, so the lock
file is rewritten in place (:func:`write_in_place`); the ack and other small
files are replaced atomically (:func:`write_atomic`). Probing a lock opens the
file read-only, so it writes and creates nothing. Files are created 0666 and the
umask decides (both programs clear its group bits: :mod:`daemon.protocol.sharing`),
so the lock, the ack and ``.daemon/daemon.lock`` stay usable by the workspace's group.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from daemon.protocol.document import LockHeldError, daemon_lock_path


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
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # a full disk must not leave the temp file behind
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def held_exclusively(path: Path) -> Iterator[int]:
    """Hold an exclusive flock on ``path`` (created if needed) or raise LockHeldError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    if not try_flock(fd):
        os.close(fd)
        raise LockHeldError(f"{path}: held by another process")
    try:
        yield fd
    finally:
        os.close(fd)
