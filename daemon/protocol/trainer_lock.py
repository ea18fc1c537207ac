"""The trainer's side of the lock-file protocol (stdlib only).

:class:`TrainerLock` holds the exclusive flock for the trainer's whole life;
:class:`LockKeeper` takes it again when the file is deleted or replaced;
:func:`wait_for_ack` waits (bounded) for the daemon's acknowledgement.

Why one trainer at a time holds, whatever happens to the file (DESIGN.md,
"stale"): the exclusive flock on ``training.lock`` belongs to its inode, and an
editor's save (new file, rename over) or an ``rm`` leaves the live trainer
holding the flock of an inode nobody can open any more. So a trainer holds,
besides, and before it touches the lock file:

1. an exclusive flock on the **workspace folder itself** (``open(dir,
   O_RDONLY)`` + ``flock``): nothing replaces a folder by rename while people
   work in it, so this guard holds from the first trainer's start to its exit,
   through every deletion of its lock file. A second trainer that cannot take
   it is refused (exit 2) before it creates or writes anything;
2. the exclusive flock on ``training.lock`` (the contract, unchanged);
3. a look at the document it found in the lock file: a session that did not
   reach ``stopped`` and whose process is alive (:mod:`liveness`: pid, start
   time, boot id) refuses the start too, so a trainer that holds no guard
   (an older version) is not overrun either.

While it runs, :class:`LockKeeper` (a small stoppable thread, so the check
goes on during the ack wait, evaluation and saving, where no SB3 callback
runs) compares ``stat(path)`` with ``fstat(fd)`` every half second; when the
inode or device differs, or the path is gone, it opens (creating) the path,
takes its flock and rewrites its document in place. If someone else holds
the new file's flock by then, it keeps its old flock and its guard, reports an
error and goes on training: nothing is lost; the daemon, which checks the
process and not the file, keeps the session alive until the process exits
and then archives it as ``abandoned``.
"""

from __future__ import annotations

import contextlib
import os
import threading
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
from daemon.protocol.liveness import Probe, SystemProbe, identity_of, liveness
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
    """Wait until the daemon answers ``session_id``; None on timeout.

    The answer is an ack with ``ready: true``, or one with ``ready: false`` and its
    ``reason`` when the daemon knows at once that it cannot prepare (the caller goes on).
    ``still_waiting`` lets the caller stop early (the daemon died meanwhile).
    """
    path = ack_path(lock_path)
    deadline = clock() + timeout_s
    while True:
        ack = read_ack(path)
        if ack is not None and ack.session_id == session_id:
            return ack
        if clock() >= deadline or not still_waiting():
            return None
        pause(poll_s)


class TrainerLock:
    """The trainer's side of the lock: an exclusive flock held for the whole run.

    Use as a context manager; :meth:`acquire` raises :class:`LockHeldError`
    when another live trainer holds it (see the module docstring for the
    ``guard``, the workspace folder). :meth:`write` rewrites the content in
    place; :meth:`check` takes a deleted or replaced file again. Closing
    releases the flocks; the file itself stays (its last state tells the
    daemon how the session ended).
    """

    def __init__(
        self,
        path: Path,
        *,
        retry_s: float = START_RETRY_S,
        guard: Path | None = None,
        probe: Probe | None = None,
    ) -> None:
        self.path = path
        self.retry_s = retry_s
        self.guard = guard
        self.probe = probe or SystemProbe()
        self._fd: int | None = None
        self._guard_fd: int | None = None
        self._mutex = threading.Lock()
        self.info: LockInfo | None = None

    def acquire(
        self,
        info: LockInfo,
        *,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        deadline = clock() + self.retry_s
        guard_fd = self._take_guard(deadline, clock, pause)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
            while not try_flock(fd):
                if clock() >= deadline:
                    os.close(fd)
                    raise self._held()
                pause(0.05)
            if self._lives(_document_of(fd)):
                os.close(fd)
                raise self._held()
        except BaseException:
            if guard_fd is not None:
                os.close(guard_fd)
            raise
        self._guard_fd = guard_fd
        self._fd = fd
        self.write(info)

    def _take_guard(
        self, deadline: float, clock: Callable[[], float], pause: Callable[[float], None]
    ) -> int | None:
        if self.guard is None:
            return None
        try:
            fd = os.open(self.guard, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except PermissionError:
            return None  # a folder we may enter but not read: the lock file and liveness remain
        while not try_flock(fd):
            if clock() >= deadline:
                os.close(fd)
                raise self._held()
            pause(0.05)
        return fd

    def _lives(self, found: LockInfo | None) -> bool:
        """Whether the document found in the lock file is a live trainer's unfinished session."""
        if found is None or found.state == "stopped" or found.pid == os.getpid():
            return False
        return liveness(identity_of(found), self.probe) == "alive"

    def _held(self) -> LockHeldError:
        holder = _describe_holder(self.path, self.guard)
        return LockHeldError(f"{self.path}: another training session holds the lock{holder}")

    def write(self, info: LockInfo) -> None:
        with self._mutex:
            if self._fd is None:
                raise ProtocolError("lock not acquired")
            write_in_place(self._fd, info.to_json())
            self.info = info

    def check(self) -> str | None:
        """Take the lock file again if it was deleted or replaced.

        Returns None when the file is still ours, ``"retaken"`` when it was taken
        again, or an error text when that failed (the old flock is kept).
        """
        with self._mutex:
            if self._fd is None or self.info is None:
                return None
            mine = os.fstat(self._fd)
            try:
                now = os.stat(self.path, follow_symlinks=False)
                if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                    return None
            except FileNotFoundError:
                pass
            try:
                fd = os.open(
                    self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666
                )
            except OSError as e:
                return f"{self.path}: cannot take the lock file again ({e.strerror})"
            if not _flock_soon(fd):
                holder = _describe_holder(self.path, None)
                os.close(fd)
                return f"{self.path}: replaced, and another process holds its lock{holder}"
            try:
                write_in_place(fd, self.info.to_json())
            except OSError as e:
                os.close(fd)
                return f"{self.path}: cannot rewrite the lock file ({e.strerror})"
            os.close(self._fd)
            self._fd = fd
            return "retaken"

    def release(self) -> None:
        with self._mutex:
            for fd in (self._fd, self._guard_fd):
                if fd is not None:
                    os.close(fd)
            self._fd = self._guard_fd = None

    def __enter__(self) -> TrainerLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LockKeeper:
    """A stoppable thread that calls :meth:`TrainerLock.check` every ``interval_s``.

    ``with LockKeeper(lock, report=...):`` starts it and stops and joins it on
    exit. ``report(text)`` gets each outcome other than "still ours": either
    ``"retaken"`` or an error text (each distinct error once).
    """

    def __init__(
        self, lock: TrainerLock, *, report: Callable[[str], None], interval_s: float = 0.5
    ) -> None:
        self.lock = lock
        self.report = report
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-keeper", daemon=True)
        self._last_error: str | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                outcome = self.lock.check()
            except OSError as e:  # never let the thread die silently
                outcome = f"{self.lock.path}: cannot check the lock file ({e})"
            if outcome is None:
                continue
            if outcome == "retaken":
                self._last_error = None
            elif outcome == self._last_error:
                continue
            else:
                self._last_error = outcome
            self.report(outcome)

    def __enter__(self) -> LockKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _flock_soon(fd: int, tries: int = 10) -> bool:
    """The flock, retried briefly: a daemon may be probing the new file at that instant."""
    for _ in range(tries):
        if try_flock(fd):
            return True
        time.sleep(0.05)
    return False


def _document_of(fd: int) -> LockInfo | None:
    """The protocol document in the open file, or None (empty, or not one)."""
    try:
        return LockInfo.from_json(os.pread(fd, 1 << 16, 0).decode(), source="lock file")
    except (LockFileError, UnicodeDecodeError):
        return None


def _describe_holder(path: Path, guard: Path | None) -> str:
    with contextlib.suppress(LockFileError):
        info = read_lock(path, retry_s=0.2)
        if info is not None:
            return f" (session {info.session_id}, pid {info.pid} on {info.host})"
    pids = flock_holders(guard) if guard is not None else []
    if pids:
        return f" (pid {pids[0]}, which holds {guard}; its lock file is being taken again)"
    return ""


def flock_holders(path: Path, *, locks: Path = Path("/proc/locks")) -> list[int]:
    """The pids /proc/locks names as holding a flock on ``path``'s inode."""
    try:
        st = os.stat(path)
        lines = locks.read_text().splitlines()
    except OSError:
        return []
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK" or parts[5] != dev:
            continue
        with contextlib.suppress(ValueError):
            pids.append(int(parts[4]))
    return pids
