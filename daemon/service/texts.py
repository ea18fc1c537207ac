"""What the daemon says about itself: the STATUS= text, the health fields, its version.

Pure functions of what the loop holds, so they are tested without a daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Protocol

from daemon.eventlog.events import WatchRearmed
from daemon.eventlog.fold import State
from daemon.service.sessions import Task
from daemon.watch.coalesce import Coalescer


class _Alive(Protocol):
    def alive(self) -> bool: ...


class _Watching(_Alive, Protocol):
    @property
    def mode(self) -> str: ...

    @property
    def missing(self) -> Sequence[str]: ...

    def areas(self) -> dict[str, int | None]: ...


def status_text(
    busy: Task | None,
    view: State,
    *,
    stopping: bool,
    missing: Sequence[str] = (),
    waiting: str | None = None,
) -> str:
    """One line for systemd's STATUS= and the health file.

    ``missing``: watched areas whose folder is gone (so nothing watches them);
    ``waiting``: a disk-full wait."""
    if waiting is not None:
        text = waiting + (f"; {busy.describe()}" if busy is not None else "")
    elif busy is not None:
        text = busy.describe()
    else:
        count = len(view.archives)
        text = f"idle, {count} archive{'' if count == 1 else 's'}"
        session = view.current_session
        if session is not None and not session.ended:
            text += f", session {session.session_id} {session.state}"
    if missing:
        text += f", degraded: {' and '.join(f'{a}/' for a in missing)} missing, not watched"
    return f"stopping: {text}" if stopping else text


def rearm_text(changes: Sequence[WatchRearmed]) -> str:
    """The status while watches move to new folders (the rescan after it follows at once)."""
    what = ", ".join(f"{c.area}/ {c.reason}" for c in changes)
    return f"re-arming watches ({what}), rescanning"


def health_fields(
    watcher: _Watching | None,
    scheduler: _Alive | None,
    busy: Task | None,
    coalescer: Coalescer,
    view: State,
) -> dict[str, object]:
    """The health file's fields besides the status text."""
    return {
        "watcher": watcher.mode if watcher else "stopped",
        "watcher_alive": bool(watcher and watcher.alive()),
        "watched_areas": watcher.areas() if watcher else {},
        "missing_areas": list(watcher.missing) if watcher else [],
        "open_files": len(coalescer.open_files),
        "scheduler_alive": bool(scheduler and scheduler.alive()),
        "busy": busy.describe() if busy else None,
        "pending_paths": len(coalescer),
        "raw_notifications": coalescer.raw_count,
        "last_seq": view.last_seq,
    }


def version() -> str:
    """This distribution's version (``DaemonStarted`` records it)."""
    try:
        return _dist_version("training-archiver")
    except PackageNotFoundError:
        return "0.1.0"
