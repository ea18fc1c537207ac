"""Is a trainer's process alive? Identity, not a name or a flock (stdlib only).

A session's trainer is named by its ``host``, ``boot_id``, ``pid`` and
``start_time`` (clock ticks after boot, ``/proc/PID/stat`` field 22). The pure
decision :func:`liveness` weighs what a :class:`Probe` saw of that pid:

- another host: ``unknown`` (nothing here can say);
- another boot: ``dead`` (every process of that boot is gone);
- ``kill(pid, 0)`` fails with ESRCH: ``dead``;
- the pid is a zombie (state ``Z``: it has exited, its parent has not reaped it
  yet; its files, flocks included, are closed): ``dead``;
- the pid exists but started at another time: ``dead`` (the pid was reused);
- the pid exists and its start time matches, or cannot be read: ``alive``.

A document without ``start_time`` (an older trainer, or an older event log)
falls back to pid and boot id, and to one more check: a process that started
more than :data:`YOUNGER_SLACK_S` after the session's ``started_at`` cannot be
the trainer that wrote it (the pid was reused).

**When the daemon cannot see, it assumes alive.** The shipped unit runs the
daemon with ``PrivateUsers=yes`` and ``ProtectProc=invisible``, and a trainer
is usually run by a person of the workspace's group, another uid:

- ``PrivateUsers=yes`` gives the daemon a user namespace of its own without
  capabilities over the host's, but it stays in the host's pid namespace. So
  ``kill(pid, 0)`` still finds the trainer: the kernel answers **EPERM** (the
  process exists; we may not signal it), and **ESRCH** only once it is gone.
  EPERM therefore means alive, never dead.
- ``ProtectProc=invisible`` mounts /proc with ``hidepid=invisible``: another
  uid's ``/proc/PID`` does not exist for the daemon, so reading its ``stat``
  gives **ENOENT** although the process lives. A missing /proc entry is
  therefore no evidence: the start time is then unknown, and the pid check
  alone decides (EPERM: alive). Pid reuse cannot be ruled out in that case; the
  error is on the safe side (a dead trainer taken for alive keeps its files,
  it never loses them).

The same holds for a daemon run as an unprivileged user without the unit
(EPERM from kill, EACCES on the fds of another uid's /proc entry).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from daemon.protocol.document import (
    LockInfo,
    parse_start_time,
    parse_state,
    read_boot_id,
    read_stat,
)

Liveness = Literal["alive", "dead", "unknown"]
Signal = Literal["exists", "gone", "denied"]


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a session's trainer is (from its lock document or the event log)."""

    pid: int
    host: str
    boot_id: str
    start_time: int | None = None
    """None for documents written before protocol 1 carried it."""
    started_at: str = ""
    """The session's ISO-8601 start, the fallback when ``start_time`` is missing."""


@dataclass(frozen=True)
class Seen:
    """What this machine shows of one pid, now."""

    host: str
    boot_id: str
    signal: Signal
    """``kill(pid, 0)``: succeeded, ESRCH, or EPERM."""
    start_time: int | None
    """Its start time, or None when /proc does not show it (gone, or hidden)."""
    started_wall: float | None = None
    """Its start as a Unix time (boot time + start ticks), when /proc shows it."""
    exited: bool = False
    """/proc shows it as a zombie (``Z``) or dying (``X``): it will never write again."""


Probe = Callable[[int], Seen]


def identity_of(info: LockInfo) -> ProcessIdentity:
    return ProcessIdentity(info.pid, info.host, info.boot_id, info.start_time, info.started_at)


def liveness(who: ProcessIdentity, probe: Probe) -> Liveness:
    """Whether ``who`` still runs, by what ``probe`` sees of its pid (a pure decision)."""
    if who.pid <= 0:
        return "unknown"
    seen = probe(who.pid)
    if who.host != seen.host:
        return "unknown"
    known = "unknown"
    if (
        who.boot_id
        and who.boot_id != known
        and seen.boot_id != known
        and who.boot_id != seen.boot_id
    ):
        return "dead"
    if seen.signal == "gone" or seen.exited:
        return "dead"
    if who.start_time is not None and seen.start_time is not None:
        if who.start_time != seen.start_time:
            return "dead"  # the pid was reused by another process
    elif who.start_time is None and seen.started_wall is not None:
        began = _unix_time(who.started_at)
        if began is not None and seen.started_wall > began + YOUNGER_SLACK_S:
            return "dead"  # younger than the session: not its trainer
    return "alive"


YOUNGER_SLACK_S = 5.0
"""Clock ticks and the boot time's one-second resolution blur a start time this much."""


def _unix_time(iso: str) -> float | None:
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def send_zero(pid: int) -> Signal:
    """``kill(pid, 0)``: whether the pid exists, without signalling it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "denied"
    except OSError as e:
        if e.errno == errno.ESRCH:
            return "gone"
        raise
    return "exists"


@dataclass(frozen=True)
class SystemProbe:
    """The real probe: ``kill(pid, 0)`` and ``/proc/PID/stat`` of this machine."""

    proc: Path = Path("/proc")
    kill: Callable[[int], Signal] = send_zero

    def __call__(self, pid: int) -> Seen:
        stat = read_stat(pid, proc=self.proc)  # "": gone, or hidden (no evidence either way)
        ticks = parse_start_time(stat)
        return Seen(
            host=socket.gethostname(),
            boot_id=read_boot_id(),
            signal=self.kill(pid),
            start_time=ticks,
            started_wall=None if ticks is None else self._wall(ticks),
            exited=parse_state(stat) in ("Z", "X"),
        )

    def _wall(self, ticks: int) -> float | None:
        try:
            lines = (self.proc / "stat").read_text().splitlines()
            btime = next(int(line.split()[1]) for line in lines if line.startswith("btime "))
        except (OSError, StopIteration, ValueError, IndexError):
            return None
        return btime + ticks / os.sysconf("SC_CLK_TCK")


def is_alive(who: ProcessIdentity, probe: Probe | None = None) -> bool:
    """Alive as far as this machine can tell (``unknown`` is not alive: see callers)."""
    return liveness(who, probe or SystemProbe()) == "alive"
