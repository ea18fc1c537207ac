"""``python -m daemon run``: the long-running service and its main loop.

One thread decides. Watchdog handlers, scheduler jobs, signal handlers and the
archiving worker only put items on one queue; the main loop takes them with
``get(timeout=...)`` where the timeout is the next deadline (a coalescing
window, the systemd watchdog ping, the health file), so an idle daemon sleeps.
Archiving runs on one worker thread, one task at a time, uploads on another
(service/uploads.py), so the loop records and pings while archives are made.

Start-up: take ``.daemon/daemon.lock`` for life (a second daemon exits 2),
replay the event log, remove temporary files of interrupted archives, adopt
archives a crash left unrecorded, start the watches, rescan, decide what the
lock file and the log owe, and only then tell systemd READY=1. SIGTERM/SIGINT
drain (the running task finishes, pending file events are recorded) and exit
0; SIGHUP reloads the config.
"""

from __future__ import annotations

import hashlib
import os
import queue
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import FrameType

import structlog

from daemon import logs, ops
from daemon.config import Settings
from daemon.eventlog.events import (
    DaemonStarted,
    DaemonStopped,
    Event,
    LockFileInvalid,
)
from daemon.eventlog.fold import State
from daemon.service.holding import RETRY_S, HoldingWorkspace
from daemon.service.metrics_file import MetricsFile
from daemon.service.model_check import ModelChecker
from daemon.service.notify import Health, Notifier
from daemon.service.reload import reload_config
from daemon.service.scheduler import JobDue, Scheduler, intervals
from daemon.service.sessions import (
    ROTATE,
    Task,
    backoff,
    decide,
    observe_lock,
    reconcile_archives,
    refuse_prepare,
)
from daemon.service.texts import health_fields, rearm_text, status_text, version
from daemon.service.uploads import Uploader, UploadsDone, replace_uploader
from daemon.service.worker import TaskDone, run_guarded, task_done
from daemon.watch.coalesce import Coalescer, Raw, settle
from daemon.watch.observer import AreaChanged, LockTouched, RescanWanted, Watcher
from daemon.watch.rescan import diff, snapshot, stat_file

log = structlog.get_logger("daemon.service")

WAKE = object()
BATCH = 5000  # items taken from the queue before the loop acts on them
LOCK_RECHECK_S = 0.3
"""A dying trainer's close event can precede the release of its flock: look again."""
START_EXTEND_S = 60.0
"""How much more start-up time each EXTEND_TIMEOUT_USEC asks for while archives are adopted."""
START_EXTEND_EVERY_S = 10.0
"""How often, at most, it is asked for while one archive is verified."""


class Daemon:
    """The service for one workspace; :meth:`serve` returns the exit code."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier,
        *,
        config_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.notifier = notifier
        self.config_file = config_file
        self.clock = clock
        self.queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.coalescer = Coalescer(settings.daemon.coalesce_window_s)
        self._stat = partial(stat_file, settings.paths.workspace)
        p = settings.paths
        self.metrics = MetricsFile(p.metrics_file, p.workspace, p.archive_dir)
        on_append = self.metrics.hook(logs.emit)
        self.ws = HoldingWorkspace(
            settings, recover=True, on_append=on_append, clock=clock, snapshots=True
        )
        self.health = Health(settings.paths.daemon_dir, os.getpid())
        self._stop_reason: str | None = None
        self._reload = False
        self._rescan: str | None = None
        self._lock_dirty = True
        self._lock_recheck: float | None = None
        self._rotate = False
        self._busy: Task | None = None
        self._failures: dict[Task, int] = {}
        self._retry_at: dict[Task, float] = {}
        self._invalid_seen: set[str] = set()
        self.models = ModelChecker(settings.paths.workspace)
        self._next_ping = 0.0
        self._next_extend = 0.0
        self._extending: str | None = None
        self._view = State()
        """The state as last folded: enough for status texts, which need not be exact."""
        self.uploader: Uploader | None = None
        self.watcher: Watcher
        self.scheduler: Scheduler
        self.worker: ThreadPoolExecutor

    # --- life cycle ---------------------------------------------------------

    def serve(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)
        paths = self.settings.paths
        self._status("replaying the event log")
        state = self.ws.state()
        self.metrics.load_if_needed(self.ws.stored)
        self.ws.record(
            DaemonStarted(pid=os.getpid(), version=version(), workspace=str(paths.workspace))
        )
        self._status(f"recovering (state at seq {state.last_seq})")
        self.models.remember(e.event for e in self.ws.stored(["ModelInvalid"]))
        ops.cleanup_temps(self.ws)
        self._check_lock(self.clock(), submit=False)  # sessions first, so adopted archives link
        reconcile_archives(self.ws, heartbeat=self._extend_start)
        reason = "error"
        try:
            with (
                Watcher(
                    paths.workspace,
                    paths.lock_file,
                    self.queue.put,
                    polling_fallback=self.settings.daemon.polling_fallback,
                ) as self.watcher,
                ThreadPoolExecutor(1, thread_name_prefix="archiver") as self.worker,
                Scheduler(self.queue.put) as self.scheduler,
            ):
                self.scheduler.schedule(intervals(self.settings.daemon))
                self.uploader = replace_uploader(None, self.ws, self.settings, self.queue.put)
                self._rescan_now("start")
                self._act(self.clock())  # the lock, and the work owed since the last run
                self.notifier.ready(self._status_text())
                log.info("daemon ready", workspace=str(paths.workspace), watcher=self.watcher.mode)
                self._loop()
                reason = self._stop_reason or "stopped"
                self.notifier.stopping(f"stopping ({reason})")
                self._drain()
        finally:
            if self.uploader is not None:
                self.uploader.stop()  # cancels the transfer in flight: the next run redoes it
            self.ws.record(DaemonStopped(pid=os.getpid(), reason=reason))
            self.ws.retry(self.clock() + RETRY_S)  # one last try for what a full disk held
            self.metrics.flush(self._state, up=False, force=True)
            self.health.remove()
            self.ws.close()  # logs what is still held: the journal keeps it
        return 0

    def _extend_start(self, archive: str) -> None:
        """Keep systemd's start timeout from running out while unrecorded archives are verified
        before READY=1: EXTEND_TIMEOUT_USEC, at most every few seconds."""
        now = self.clock()
        if archive != self._extending or now >= self._next_extend:
            self._extending = archive
            self._next_extend = now + START_EXTEND_EVERY_S
            self.notifier.extend_timeout(START_EXTEND_S, f"verifying unrecorded archive {archive}")

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_reason = signal.Signals(signum).name
        self.queue.put(WAKE)

    def _on_reload_signal(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True
        self.queue.put(WAKE)

    def _loop(self) -> None:
        while self._stop_reason is None:
            self._take()
            self._act(self.clock())

    def _drain(self) -> None:
        """Let the running task finish while still recording what happens, then flush."""
        self.scheduler.stop()
        while self._busy is not None:
            self._take()
            self._act(self.clock())
        self._record(settle(self.coalescer.drain(), self._stat, self._state().files))

    # --- the loop -----------------------------------------------------------

    def _take(self) -> None:
        """Wait for the next item or deadline, then handle everything queued."""
        try:
            item = self.queue.get(timeout=self._timeout())
        except queue.Empty:
            return
        self._handle(item)
        for _ in range(BATCH):
            try:
                self._handle(self.queue.get_nowait())
            except queue.Empty:
                return

    def _timeout(self) -> float | None:
        deadlines = [
            self.coalescer.next_deadline(),
            self._lock_recheck,
            self.health.due_at,
            self.ws.retry_at,
        ]
        if self.notifier.watchdog_s is not None:
            deadlines.append(self._next_ping)
        pending = [d for d in deadlines if d is not None]
        return max(0.0, min(pending) - self.clock()) if pending else None

    def _handle(self, item: object) -> None:
        if isinstance(item, Raw):
            self.coalescer.add(item, self.clock())
        elif isinstance(item, LockTouched):
            self._lock_dirty = True
            self._lock_recheck = self.clock() + LOCK_RECHECK_S
        elif isinstance(item, RescanWanted):
            self._rescan = self._rescan or item.trigger
        elif isinstance(item, AreaChanged):
            self._rearm(item.trigger)
        elif isinstance(item, JobDue):
            self._job_due(item.name)
        elif isinstance(item, TaskDone):
            self._task_done(item)
        elif isinstance(item, UploadsDone) and item.uploaded:
            self._rotate = True  # archives kept for want of a copy may go now
        elif isinstance(item, Event):
            self.ws.record(item)  # WatcherDegraded, JobFailed, JobMissed

    def _job_due(self, name: str) -> None:
        if name == "stale_check":
            self._lock_dirty = True
            if self.uploader is not None:
                self.uploader.wake()  # archives another writer (the CLI) recorded
            self._rearm("tick")  # two lstat calls: is each area still the folder watched?
            if not self.watcher.alive():
                self._restart_watcher()
        elif name == "rescan":
            self._rescan = self._rescan or "schedule"
        elif name == "rotate":
            self._rotate = True

    def _act(self, now: float) -> None:
        if self.ws.retry(now) and self.ws.rescan_owed:
            self._rescan = self._rescan or "disk_space_recovered"
        if self._reload:
            self._reload = False
            reload_config(self)
        self.coalescer.poll(self._stat, now)  # files that stay open: did they grow?
        due = self.coalescer.due(now)
        if due:
            self._record(settle(due, self._stat, self._state().files))
        if self._rescan is not None:
            self._rescan_now(self._rescan)
        if self._lock_recheck is not None and now >= self._lock_recheck:
            self._lock_recheck = None
            self._lock_dirty = True
        if self._lock_dirty:
            self._lock_dirty = False
            self._check_lock(now)
        waiting = self.ws.waiting
        if self._rotate and self._busy is None and self._stop_reason is None and not waiting:
            self._rotate = False
            self._submit(ROTATE)
        self.metrics.flush(self._state)
        self._ping(now)
        self._status(self._status_text())

    # --- what the loop does -------------------------------------------------

    def _state(self) -> State:
        """Fold what was recorded since the last call (each fold copies the file map)."""
        self._view = self.ws.state()
        return self._view

    def _record(self, events: list[Event]) -> None:
        """Record events; then a ``ModelInvalid`` for each damaged model zip they name."""
        if events:
            self.ws.record_many(events)
            self.ws.record_many(self.models.check(events))

    def _rescan_now(self, trigger: str) -> None:
        self._rescan = None
        current = snapshot(self.settings.paths.workspace)
        self._record(events := diff(current, self._state().files, trigger))
        self.coalescer.suspect(events, self.clock())
        self.ws.record_many(self.models.check_files(current))

    def _check_lock(self, now: float, *, submit: bool = True) -> None:
        path = self.settings.paths.lock_file
        view, error = observe_lock(path, state=self._state())
        if error is not None:
            self._lock_invalid(path, error)
        plan = decide(view, self._state(), now=now, retry_at=self._retry_at)
        self._record(list(plan.record))
        if self.ws.wait is not None:  # write no archive now; answer a starting trainer at once
            for task in plan.tasks:
                if task.kind == "prepare" and task.session_id is not None:
                    refuse_prepare(self.ws, task.session_id, self.ws.wait.describe())
            return
        if submit and plan.tasks and self._busy is None and self._stop_reason is None:
            self._submit(plan.tasks[0])

    def _lock_invalid(self, path: Path, error: str) -> None:
        try:
            key = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            key = error
        if key not in self._invalid_seen:
            self._invalid_seen.add(key)
            self.ws.record(LockFileInvalid(path=str(path), error=error))

    def _submit(self, task: Task) -> None:
        self._busy = task
        self._status(task.describe())
        future = self.worker.submit(run_guarded, self.ws, task)
        future.add_done_callback(lambda f: self.queue.put(task_done(task, f)))

    def _task_done(self, done: TaskDone) -> None:
        self._busy = None
        self._lock_dirty = True
        if self.uploader is not None:  # a new archive may be owed a copy
            self.uploader.wake()
        if done.task == ROTATE and done.error is None:
            self.metrics.rotation_ran(time.time())
        if done.error is None:
            self._failures.pop(done.task, None)
            self._retry_at.pop(done.task, None)
            return
        count = self._failures[done.task] = self._failures.get(done.task, 0) + 1
        wait = backoff(count, cap_s=self.settings.daemon.retry_max_s)
        self._retry_at[done.task] = self.clock() + wait

    def _rearm(self, trigger: str) -> None:  # a watched folder moved, went or came: follow it
        if changes := self.watcher.rearm(trigger):
            self._status(rearm_text(changes))  # health and STATUS= say so, then rescan
            self.ws.record_many(changes)
            self._rescan = self._rescan or "rearm"

    def _restart_watcher(self) -> None:
        log.warning("watcher died; restarting it", mode=self.watcher.mode)
        self.watcher.stop()
        self.watcher.start()
        self._rescan = "observer_restarted"

    def _ping(self, now: float) -> None:
        if self.notifier.watchdog_s is None or now < self._next_ping:
            return
        self._next_ping = now + self.notifier.watchdog_s
        uploading = self.uploader is None or self.uploader.alive()
        if self.watcher.alive() and self.scheduler.alive() and uploading:
            self.notifier.watchdog()

    # --- status -------------------------------------------------------------

    def _status_text(self) -> str:
        wait = self.ws.wait
        watcher = getattr(self, "watcher", None)
        return status_text(
            self._busy,
            self._view,
            stopping=self._stop_reason is not None,
            missing=watcher.missing if watcher is not None else (),
            waiting=wait.describe() if wait is not None else None,
        )

    def _status(self, text: str) -> None:
        self.notifier.status(text)
        if self.health.wanted(text, self.clock()):
            self.health.write(text, self.clock(), self._health_fields())

    def _health_fields(self) -> dict[str, object]:
        return (
            health_fields(
                getattr(self, "watcher", None),
                getattr(self, "scheduler", None),
                self._busy,
                self.coalescer,
                self._view,
            )
            | self.ws.wait_fields()
        )
