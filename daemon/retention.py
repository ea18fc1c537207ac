"""Archive retention: a pure function from this workspace's archives to the ones to delete.

"Newest" is the order in which this workspace's event log recorded its
archives (``Candidate.order``, the seq of their ``ArchiveCompleted``), never a
name or a clock: an archive named years in the future (a clock that was once
ahead) is simply old once newer ones are recorded, and a clock that jumps back
or forth cannot make a new archive look old. The name breaks ties between
candidates of equal ``order`` only (archives of this workspace that its log
has not recorded yet, all given an order after every recorded one, so they
count as the newest and are kept). ``keep_daily``/``keep_weekly`` group by
``recorded_at`` (the log's time of recording; the name's time when none), but
walk the archives in log order, so the archive they keep in a day is the
newest one recorded, and a time from the future only takes a bucket of its own.

Rules, applied together (an archive survives if any rule keeps it):

* the newest ``keep_last`` archives;
* with ``keep_daily`` N, the newest archive of each of the N most recent days
  that have one (likewise ``keep_weekly`` with ISO weeks), as borg does;
* pinned archives, the newest verified archive and archives whose off-machine copy is
  not verified yet (``held``), always, whatever else says.

``max_total_bytes`` then deletes the oldest archives not protected by a pin or
by being the newest verified one until the total fits, so it may also remove
archives the count rules kept: the cap is a hard limit on disk use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from daemon.archive.manifest import ARCHIVE_RE


@dataclass(frozen=True)
class Candidate:
    """What the policy knows of one archive."""

    name: str
    bytes: int
    pinned: bool = False
    verified: bool = False
    order: int = 0
    """Where this workspace's log recorded it: higher is newer (the seq of its record)."""
    recorded_at: datetime | None = None
    """When the log recorded it (for keep_daily/keep_weekly); None: the time in its name."""
    held: str = ""
    """Why it is kept whatever the rules say, if it is (with a remote, "not uploaded yet")."""


@dataclass(frozen=True)
class Policy:
    keep_last: int = 5
    keep_daily: int = 0
    keep_weekly: int = 0
    max_total_bytes: int | None = None


@dataclass(frozen=True)
class Decision:
    name: str
    delete: bool
    why: str
    """For a kept archive, the first rule that keeps it; for a deleted one, why."""
    bytes: int = 0


def sort_key(name: str) -> tuple[str, str, int]:
    """Chronological order of archive names (``_2`` sorts after the plain name)."""
    m = ARCHIVE_RE.match(name)
    if m is None:
        raise ValueError(f"not an archive name: {name!r}")
    return m.group(1), m.group(2), int(m.group(3) or 1)


def created_at(name: str) -> datetime:
    day, time, _ = sort_key(name)
    return datetime.strptime(day + time, "%Y%m%d%H%M%S")


def newest_first(archives: Sequence[Candidate]) -> list[Candidate]:
    """By the log's order of recording, newest first; the name only breaks ties."""
    return sorted(archives, key=lambda a: (a.order, sort_key(a.name)), reverse=True)


def decide(archives: Sequence[Candidate], policy: Policy) -> list[Decision]:
    """One decision per archive, newest first. Names not matching the archive
    pattern are never passed here (the caller lists only final archives)."""
    newest = newest_first(archives)
    why: dict[str, str] = {}

    def keep(name: str, reason: str) -> None:
        why.setdefault(name, reason)

    protected: set[str] = set()
    for a in newest:
        if a.pinned:
            keep(a.name, "pinned")
            protected.add(a.name)
        if a.held:
            keep(a.name, a.held)
            protected.add(a.name)
    newest_verified = next((a for a in newest if a.verified), None)
    if newest_verified is not None:
        keep(newest_verified.name, "newest verified")
        protected.add(newest_verified.name)
    for a in newest[: policy.keep_last]:
        keep(a.name, "keep_last")
    for label, count, period in (
        ("keep_daily", policy.keep_daily, "%Y-%m-%d"),
        ("keep_weekly", policy.keep_weekly, "%G-W%V"),
    ):
        seen: set[str] = set()
        for a in newest:
            if len(seen) >= count:
                break
            when = a.recorded_at if a.recorded_at is not None else created_at(a.name)
            bucket = when.strftime(period)
            if bucket not in seen:
                seen.add(bucket)
                keep(a.name, label)

    capped: set[str] = set()
    if policy.max_total_bytes is not None:
        total = sum(a.bytes for a in newest if a.name in why)
        for a in reversed(newest):
            if total <= policy.max_total_bytes:
                break
            if a.name in why and a.name not in protected:
                del why[a.name]
                capped.add(a.name)
                total -= a.bytes

    def decision(a: Candidate) -> Decision:
        if a.name in why:
            return Decision(a.name, False, why[a.name], a.bytes)
        reason = "over max_total_bytes" if a.name in capped else "outside retention"
        return Decision(a.name, True, reason, a.bytes)

    return [decision(a) for a in newest]


def to_delete(archives: Sequence[Candidate], policy: Policy) -> list[str]:
    return [d.name for d in decide(archives, policy) if d.delete]
