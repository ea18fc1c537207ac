"""Which folder a watch is on: ``logs/`` and ``models/`` by identity, not by name.

An inotify watch belongs to an inode, not to a path: after ``mv logs logs.old &&
mkdir logs`` the old watch still reports what happens in ``logs.old`` and nothing
watches the new ``logs/``. The watcher therefore remembers the identity
(``st_dev``, ``st_ino``) of the folder each watch was set on, and
:func:`plan_rearm` (pure) compares it with what is at the path now.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from pathlib import Path

from daemon.eventlog.events import Area

Ident = tuple[int, int]
"""A folder's ``(st_dev, st_ino)``."""
Lstat = Callable[[Path], os.stat_result]


def identity(path: Path, *, lstat: Lstat = os.lstat) -> Ident | None:
    """The identity of the folder at ``path``; None when there is none (or a symlink)."""
    try:
        st = lstat(path)
    except OSError:
        return None
    if not stat_mod.S_ISDIR(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


@dataclass(frozen=True)
class Rearm:
    """One area whose watch must be dropped and, when ``new`` is not None, set again."""

    area: Area
    reason: str
    """``missing``, ``appeared``, ``replaced`` or ``watch_lost``."""
    old: Ident | None
    new: Ident | None


def plan_rearm(
    armed: Mapping[Area, Ident | None],
    current: Mapping[Area, Ident | None],
    lost: Set[Area] = frozenset(),
) -> list[Rearm]:
    """The areas whose watch no longer matches the folder at their path.

    ``armed`` is the identity each watch was set on (None: no watch, the folder
    was missing), ``current`` what is at the path now, ``lost`` the areas whose
    watch stopped by itself (its folder was deleted, or the kernel dropped it).
    """
    out: list[Rearm] = []
    for area in sorted(current):
        old, new = armed.get(area), current[area]
        if old == new and (area not in lost or new is None):
            continue
        if new is None:
            reason = "missing"
        elif old is None:
            reason = "appeared"
        elif old != new:
            reason = "replaced"
        else:
            reason = "watch_lost"
        out.append(Rearm(area, reason, old, new))
    return out
