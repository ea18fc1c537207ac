"""Small filesystem helpers: atomic writes and timestamped, collision-free names."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from daemon.protocol import fsync_dir

__all__ = [
    "atomic_open",
    "atomic_write_text",
    "fsync_dir",
    "move_aside",
    "stamp",
    "temp_name",
    "unique_path",
]
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def temp_name(path: Path) -> Path:
    """A hidden temporary sibling of ``path`` that keeps its suffix."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` through a hidden temp file, fsynced and renamed over the target.

    A reader sees either the old file or the complete new one, never a half-written
    one. On an exception the temp file is removed and the target is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text.encode())


def stamp(now: datetime) -> str:
    """``YYYYMMDD_HHMMSS``, the timestamp format of every file name the trainer makes."""
    return now.strftime("%Y%m%d_%H%M%S")


def unique_path(
    folder: Path, stem: str, suffix: str, exists: Callable[[Path], bool] = Path.exists
) -> Path:
    """``folder/stem.suffix``, or ``stem_2``, ``stem_3`` ... when that name is taken."""
    candidate = folder / f"{stem}{suffix}"
    n = 2
    while exists(candidate):
        candidate = folder / f"{stem}_{n}{suffix}"
        n += 1
    return candidate


def move_aside(path: Path, session_id: str, owner: Callable[[Path], str | None]) -> Path | None:
    """Before session ``session_id`` writes the fixed name ``path``: keep what is there.

    A file there that ``owner`` says belongs to another session (or to no known one)
    is renamed to ``<stem>_<its session id><suffix>`` (its mtime as ``YYYYMMDD_HHMMSS``
    when the owner is unknown, ``_2``, ``_3`` ... on a clash), so a later session never
    overwrites an earlier one's output. Returns the new name, or None if nothing moved.
    """
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    previous = owner(path)
    if previous == session_id:
        return None
    if previous is None or not _SAFE_ID.fullmatch(previous):
        previous = stamp(datetime.fromtimestamp(mtime, UTC))
    target = unique_path(path.parent, f"{path.stem}_{previous}", path.suffix)
    os.rename(path, target)
    fsync_dir(path.parent)
    return target
