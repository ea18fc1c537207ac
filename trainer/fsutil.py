"""Small filesystem helpers: atomic writes and timestamped, collision-free names."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO

from daemon.protocol import fsync_dir

__all__ = ["atomic_open", "atomic_write_text", "fsync_dir", "stamp", "temp_name", "unique_path"]


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
