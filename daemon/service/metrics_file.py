"""``metrics_file``: the daemon's Prometheus textfile, kept current from the main loop.

A pure part and a thin adapter, as elsewhere:

* :func:`tally` folds the events that only the metrics need (counts and times of
  archives made, failures, prunes, uploads) into a frozen :class:`Tally`;
  :func:`figures` builds :class:`daemon.metrics.Figures` from the folded
  :class:`State`, that tally and the archive folder's listing, so the values are
  those of ``list --json`` (count, bytes) and ``status --json`` (failures,
  session state). The newest success is the ``created_at`` of the newest
  verified archive in the log's order, as ``list --json`` shows it.
* :class:`MetricsFile` sees every appended event (the store's ``on_append``, on
  whichever thread recorded it), marks itself dirty on the ones that change a
  figure, and :meth:`MetricsFile.flush` (called by the main loop's ``_act``)
  rewrites the file with :func:`daemon.metrics.write_textfile`. Upload events
  are matched by name, so they count as soon as the remote part records them.
  An ``OSError`` (a read-only or missing folder) is one warning per distinct
  error, never a crash.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import structlog

from daemon.archive import list_archive_files
from daemon.eventlog.events import StoredEvent
from daemon.eventlog.fold import State
from daemon.metrics import Figures, write_textfile

log = structlog.get_logger("daemon.metrics")

TALLIED = (
    "ArchiveCompleted",
    "ArchiveFailed",
    "ArchivePruned",
    "ArchiveUploaded",
    "ArchiveUploadFailed",
)
"""Event types whose counts and times only the metrics keep."""
REWRITE_ON = frozenset(
    {*TALLIED, "ArchiveVerified", "ArchiveMissing", "DaemonStarted", "RotationCompleted"}
)
"""Event types after which the file is rewritten."""


@dataclass(frozen=True)
class Tally:
    """Counts and times from the event log that the folded state does not keep."""

    created: int = 0
    last_failure: float | None = None
    pruned: int = 0
    last_prune: float | None = None
    uploads: int = 0
    upload_failures: int = 0
    last_upload: float | None = None


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def tally(t: Tally, ev: StoredEvent) -> Tally:
    """``t`` after ``ev`` (any other type leaves it as it is)."""
    ts = _epoch(ev.ts)
    match ev.type:
        case "ArchiveCompleted":
            return replace(t, created=t.created + 1)
        case "ArchiveFailed":
            return replace(t, last_failure=ts)
        case "ArchivePruned":
            return replace(t, pruned=t.pruned + 1, last_prune=ts)
        case "RotationCompleted":
            return replace(t, last_prune=ts)
        case "ArchiveUploaded":
            return replace(t, uploads=t.uploads + 1, last_upload=ts)
        case "ArchiveUploadFailed":
            return replace(t, upload_failures=t.upload_failures + 1)
    return t


def figures(
    workspace: Path,
    state: State,
    t: Tally,
    on_disk: Sequence[tuple[str, int]],
    *,
    up: bool = True,
    rotated_at: float | None = None,
) -> Figures:
    """The figures of one instant; ``on_disk`` is the archive folder as ``list`` sees it."""
    verified = [a for a in state.archives.values() if a.verified]
    last_ok = _epoch(verified[-1].created_at) if verified else None
    remote_seen = t.uploads or t.upload_failures or state.uploads
    pending = len(state.pending_uploads()) if remote_seen else 0
    session = state.current_session
    prunes = [x for x in (t.last_prune, rotated_at) if x is not None]
    return Figures(
        workspace=str(workspace),
        up=up,
        archives=len(on_disk),
        archive_bytes=sum(size for _, size in on_disk),
        archives_created_total=t.created,
        archive_failures_total=state.archive_failures,
        last_archive_success_timestamp=last_ok,
        last_archive_failure_timestamp=t.last_failure,
        pruned_total=t.pruned,
        last_prune_timestamp=max(prunes) if prunes else None,
        uploads_total=t.uploads,
        upload_failures_total=t.upload_failures,
        pending_uploads=pending,
        last_upload_success_timestamp=t.last_upload,
        session_state=session.state if session is not None else None,
    )


def archive_listing(folder: Path) -> list[tuple[str, int]]:
    """Name and size of each archive in ``folder``, as ``list --json`` has them."""
    if not folder.is_dir():
        return []
    found = []
    for path in list_archive_files(folder):
        try:
            found.append((path.name, path.stat().st_size))
        except FileNotFoundError:
            continue  # pruned meanwhile
    return found


class MetricsFile:
    """The textfile of one daemon: dirty on relevant events, rewritten by :meth:`flush`."""

    def __init__(self, path: Path | None, workspace: Path, archive_dir: Path) -> None:
        self.path = path
        self.workspace = workspace
        self.archive_dir = archive_dir
        self.tally = Tally()
        self.dirty = True  # the first flush writes the file at start
        self.rotated_at: float | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._last_error: str | None = None

    def hook(self, emit: Callable[[StoredEvent], None]) -> Callable[[StoredEvent], None]:
        """An ``on_append`` that calls ``emit`` and then observes the event."""

        def on_append(ev: StoredEvent) -> None:
            emit(ev)
            self.observe(ev)

        return on_append

    def load_if_needed(self, stored: Callable[[Sequence[str]], Iterable[StoredEvent]]) -> None:
        """:meth:`load` from ``stored(types)`` once a ``metrics_file`` is set (at start, or
        by the reload that sets it): without one, the history of all time is not read."""
        if self.path is not None and not self._loaded:
            self.load(stored(TALLIED))

    def load(self, events: Iterable[StoredEvent]) -> None:
        """The tally of the log so far (the events of :data:`TALLIED` types)."""
        t = Tally()
        for ev in events:
            t = tally(t, ev)
        with self._lock:
            self.tally, self._loaded = t, True

    def observe(self, ev: StoredEvent) -> None:
        with self._lock:
            if self._loaded:
                self.tally = tally(self.tally, ev)
            if ev.type in REWRITE_ON:
                self.dirty = True

    def rotation_ran(self, now: float) -> None:
        """A rotation run ended (whether or not it deleted anything)."""
        self.rotated_at, self.dirty = now, True

    def flush(self, state: Callable[[], State], *, up: bool = True, force: bool = False) -> None:
        """Rewrite the file if something changed (or ``force``); an OSError is a warning."""
        if self.path is None or not (self.dirty or force):
            return
        with self._lock:
            self.dirty, t = False, self.tally
        f = figures(
            self.workspace,
            state(),
            t,
            archive_listing(self.archive_dir),
            up=up,
            rotated_at=self.rotated_at,
        )
        try:
            write_textfile(self.path, f)
        except OSError as e:
            error = f"{type(e).__name__}: {e}"
            if error != self._last_error:
                log.warning("cannot write the metrics file", path=str(self.path), error=error)
            self._last_error = error
        else:
            self._last_error = None
