"""Which files do live processes hold open? Read from ``/proc/*/fd`` where visible.

Prepare must never remove a file that a live process has open (DESIGN.md,
lock protocol, "prepare"). This adapter lists the (device, inode) of every file
some other process holds open, and says whether it could see them all: under
the shipped unit (``ProtectProc=invisible``: /proc mounted with ``hidepid``)
other users' processes are missing from /proc altogether, and a daemon
without root gets EACCES on another uid's ``/proc/PID/fd``. "Cannot see" is
then reported as ``complete=False``, which callers must read as "may be open".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OpenFiles:
    """The files other processes hold open, as far as /proc shows them."""

    inodes: frozenset[tuple[int, int]]
    """(st_dev, st_ino) of every file open in a process whose fds were visible."""
    complete: bool
    """False when some processes, or their fds, were hidden from us."""

    def holds(self, st: os.stat_result) -> bool:
        """Whether a visible process holds the file of ``st`` open."""
        return (st.st_dev, st.st_ino) in self.inodes


def scan_open_files(proc: Path = Path("/proc"), *, skip_pid: int | None = None) -> OpenFiles:
    """Every file open in a process of ``proc`` (this process itself left out)."""
    me = os.getpid() if skip_pid is None else skip_pid
    complete = not pids_hidden(proc)
    inodes: set[tuple[int, int]] = set()
    try:
        entries = [e.name for e in os.scandir(proc) if e.name.isdigit()]
    except OSError:
        return OpenFiles(frozenset(), complete=False)
    for name in entries:
        if int(name) == me:
            continue
        fd_dir = proc / name / "fd"
        try:
            fds = os.listdir(fd_dir)
        except FileNotFoundError:
            continue  # it exited meanwhile
        except OSError:
            complete = False  # EACCES: another uid's process, ours to fear, not to see
            continue
        for fd in fds:
            try:
                st = os.stat(fd_dir / fd)  # follows the magic link to the open file
            except FileNotFoundError:
                continue  # closed meanwhile
            except OSError:
                complete = False
                continue
            inodes.add((st.st_dev, st.st_ino))
    return OpenFiles(frozenset(inodes), complete)


def pids_hidden(proc: Path = Path("/proc")) -> bool:
    """Whether ``proc`` is mounted with ``hidepid`` (other users' pids invisible)."""
    try:
        lines = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return True  # cannot tell: assume the worst
    target = str(proc.resolve())
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or fields[4] != target:
            continue
        options = right.split()[2].split(",") if len(right.split()) > 2 else []
        for option in options:
            key, _, value = option.partition("=")
            if key == "hidepid" and value not in ("0", "off"):
                return True
    return False
