"""Files that stay open: their growth is learnt by a cheap periodic stat, not per write.

With inotify the watcher subscribes to open, close and create/delete/move, not
to every write (``IN_MODIFY``): a writer that appends and flushes a line at a
time would otherwise cost the daemon a notification per line. What it loses,
the growth of a file that stays open, :class:`OpenFiles` gets back: every
path opened and not yet closed is stat'ed once per ``poll_s`` and reported
when its size or mtime moved.

* ``opened`` adds one to a path's count of opens, ``closed`` (after writing)
  and ``released`` (after reading) take one away: every open is matched by
  exactly one close, so a count above 0 means someone has the file open;
* a *suspect* is a path found changed by a rescan, e.g. a log a trainer opened
  before the daemon started (no open notification was seen): it is polled too,
  until it has not changed for ``suspect_idle_s``.

No IO here: ``stat`` is passed in, the clock is a ``now`` argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from daemon.eventlog.fold import FileInfo

StatFn = Callable[[str], FileInfo | None]

POLL_S = 1.0
"""How often the open files are stat'ed."""
SUSPECT_IDLE_S = 120.0
"""How long a suspect (changed, no open seen) is polled after its last change."""


@dataclass
class _Tracked:
    opens: int = 0
    last: FileInfo | None = None
    suspect_until: float | None = None

    def wanted(self, now: float) -> bool:
        return self.opens > 0 or (self.suspect_until is not None and now < self.suspect_until)


class OpenFiles:
    """Paths open (or suspected open) now, and when to look at them next."""

    def __init__(self, poll_s: float = POLL_S, suspect_idle_s: float = SUSPECT_IDLE_S) -> None:
        self.poll_s = poll_s
        self.suspect_idle_s = suspect_idle_s
        self._tracked: dict[str, _Tracked] = {}
        self._next_poll: float | None = None

    def __len__(self) -> int:
        return len(self._tracked)

    def __contains__(self, path: object) -> bool:
        return path in self._tracked

    def opened(self, path: str, now: float) -> None:
        entry = self._tracked.setdefault(path, _Tracked())
        entry.opens += 1
        self._arm(now)

    def closed(self, path: str) -> None:
        """A close, after writing or not: one open fewer."""
        entry = self._tracked.get(path)
        if entry is None:
            return
        entry.opens = max(0, entry.opens - 1)
        if entry.opens == 0 and entry.suspect_until is None:
            del self._tracked[path]

    def moved(self, src: str, dest: str) -> None:
        """A rename keeps the open file descriptors: follow the file to its new name."""
        entry = self._tracked.pop(src, None)
        if entry is not None:
            self._tracked[dest] = entry

    def deleted(self, path: str) -> None:
        self._tracked.pop(path, None)

    def suspect(self, paths: Iterable[str], now: float) -> None:
        """Poll these too, until each has been quiet for ``suspect_idle_s``."""
        for path in paths:
            entry = self._tracked.setdefault(path, _Tracked())
            entry.suspect_until = now + self.suspect_idle_s
            self._arm(now)

    def next_deadline(self) -> float | None:
        return self._next_poll if self._tracked else None

    def poll(self, stat: StatFn, now: float) -> list[str]:
        """The tracked paths whose size or mtime changed since the last poll (when one is due).

        A path's first poll always names it (settling it against the state costs
        nothing when it did not change); a path gone from disk, or no longer
        wanted, is forgotten.
        """
        if self._next_poll is None or now < self._next_poll:
            return []
        changed: list[str] = []
        for path, entry in list(self._tracked.items()):
            info = stat(path)
            if info is None:
                del self._tracked[path]
                continue
            if info != entry.last:
                changed.append(path)
                if entry.suspect_until is not None:
                    entry.suspect_until = now + self.suspect_idle_s
            entry.last = info
            if not entry.wanted(now):
                del self._tracked[path]
        self._next_poll = now + self.poll_s if self._tracked else None
        return changed

    def _arm(self, now: float) -> None:
        if self._next_poll is None:
            self._next_poll = now + self.poll_s
