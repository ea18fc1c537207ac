"""A workspace shared by a group: modes of what both programs create, and "no access" (stdlib).

DESIGN.md, "Sharing": the daemon runs as the unit's service user, trainers as
people in the workspace's group, and what either creates stays readable and
removable by the other. Both programs therefore call :func:`share_with_group`
first thing: it clears the group bits of the process umask, so the group gets
what the owner gets (umask 0022 -> 0002: files 0664, folders 0775; 0077 ->
0007: files 0660, folders 0770) while the *other* bits stay as the person
chose. A umask of their own, rather than a chmod after each create, covers
every file the libraries make on their behalf too (torch's model zips,
tensorboard event files, SQLite's ``-wal``/``-shm``, which copy the database's
mode), and needs no extra system call that the unit's ``RestrictSUIDSGID=``
could refuse. Which *group* a new file gets is the folder's business: with the
setgid bit on every folder of the workspace (README, "Sharing a workspace with
a group") new files and folders get the workspace's group, and new folders the
setgid bit as well. Archives keep their explicit 0600: ``fchmod`` ignores the
umask.

:func:`access_problem` turns "this person may not use the workspace" into one
line naming the file and what to do, for both programs to print with exit 2.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
from collections.abc import Iterable
from pathlib import Path

GROUP_BITS = 0o070


def share_with_group() -> int:
    """Give the group the owner's bits in this process' umask; returns the previous umask."""
    old = os.umask(0)
    os.umask(old & ~GROUP_BITS)
    return old


def user_name(uid: int | None = None) -> str:
    uid = os.geteuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_of(path: Path) -> str:
    """The group owning ``path`` or its nearest existing parent (its name, or the number)."""
    for candidate in (path, *path.parents):
        try:
            gid = candidate.stat().st_gid
        except OSError:
            continue
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            return str(gid)
    return "?"


def no_access_line(path: Path, what: str = "permission denied") -> str:
    """``PATH: permission denied for NAME; ask to be added to group G: usermod -aG G NAME``."""
    name = user_name()
    group = group_of(path)
    return (
        f"{path}: {what} for {name}; ask to be added to group {group}: usermod -aG {group} {name}"
    )


def access_problem(needs: Iterable[tuple[Path, int]]) -> str | None:
    """None if every existing path allows its ``os.access`` mode, else the line for the first.

    ``needs`` pairs a path with ``os.R_OK | os.W_OK | os.X_OK`` bits; a path that does
    not exist is skipped (whoever creates it is checked on its parent).
    """
    for path, mode in needs:
        if not os.access(path, os.F_OK):
            if os.access(path.parent, os.F_OK) and not os.access(path.parent, os.X_OK):
                return no_access_line(path.parent, "cannot enter the folder")
            continue
        if not os.access(path, mode):
            if mode & os.W_OK and _read_only_fs(path):  # no group can help with that
                return f"{path}: cannot write: {os.strerror(errno.EROFS)}"
            return no_access_line(path, _describe(mode))
    return None


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _describe(mode: int) -> str:
    wanted = [
        w for bit, w in ((os.R_OK, "read"), (os.W_OK, "write"), (os.X_OK, "enter")) if mode & bit
    ]
    return "cannot " + "/".join(wanted)
