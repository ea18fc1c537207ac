"""``python -m daemon run``: the long-running service and its main loop.

One thread decides. Watchdog handlers, scheduler jobs, signal handlers and the
archiving worker only put items on one queue; the main loop takes them with
``get(timeout=...)`` where the timeout is the next deadline (a coalescing
window, the systemd watchdog ping, the health file), so an idle daemon sleeps.
Archiving runs on one worker thread, one task at a time, so the loop keeps
recording file events and pinging systemd while a large archive is written.

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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import structlog

from daemon import logs, ops
from daemon.config import Settings, check_reloadable, load_settings
from daemon.errors import ArchiveError, ConfigError
from daemon.eventlog.events import (
    ConfigRejected,
    ConfigReloaded,
    DaemonStarted,
    DaemonStopped,
    Event,
    JobFailed,
    LockFileInvalid,
)
from daemon.eventlog.fold import FileInfo, State
from daemon.service.metrics_file import TALLIED, MetricsFile
from daemon.service.model_check import ModelChecker
from daemon.service.notify import Health, Notifier
from daemon.service.scheduler import JobDue, Scheduler, intervals
from daemon.service.sessions import (
    ROTATE,
    Task,
    backoff,
    decide,
    observe_lock,
    reconcile_archives,
    run_task,
)
from daemon.service.texts import health_fields, status_text, version
from daemon.watch.coalesce import Coalescer, Raw, settle
from daemon.watch.observer import LockTouched, RescanWanted, Watcher
from daemon.watch.rescan import diff, snapshot, stat_file

log = structlog.get_logger("daemon.service")

WAKE = object()
BATCH = 5000
"""Items taken from the queue before the loop acts on them."""
LOCK_RECHECK_S = 0.3
"""A dying trainer's close event can precede the release of its flock: look again."""
START_EXTEND_S = 60.0
"""How much more start-up time each EXTEND_TIMEOUT_USEC asks for while archives are adopted."""
START_EXTEND_EVERY_S = 10.0
"""How often, at most, it is asked for while one archive is verified."""


@dataclass(frozen=True)
class TaskDone:
    task: Task
    error: str | None


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
        p = settings.paths
        self.metrics = MetricsFile(p.metrics_file, p.workspace, p.archive_dir)
        self.ws = ops.Workspace(settings, recover=True, on_append=self.metrics.hook(logs.emit))
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
        self.metrics.load(self.ws.store.read(types=list(TALLIED)))
        self.ws.record(
            DaemonStarted(pid=os.getpid(), version=version(), workspace=str(paths.workspace))
        )
        self._status(f"recovering ({state.last_seq} events replayed)")
        self.models.remember(e.event for e in self.ws.store.read(types=["ModelInvalid"]))
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
                self._rescan_now("start")
                self._act(self.clock())  # the lock, and the work owed since the last run
                self.notifier.ready(self._status_text())
                log.info("daemon ready", workspace=str(paths.workspace), watcher=self.watcher.mode)
                self._loop()
                reason = self._stop_reason or "stopped"
                self.notifier.stopping(f"stopping ({reason})")
                self._drain()
        finally:
            self.ws.record(DaemonStopped(pid=os.getpid(), reason=reason))
            self.metrics.flush(self._state, up=False, force=True)
            self.health.remove()
            self.ws.close()
        return 0

    def _extend_start(self, archive: str) -> None:
        """While unrecorded archives are verified before READY=1, keep systemd's start timeout
        (TimeoutStartSec) from running out: EXTEND_TIMEOUT_USEC, at most every few seconds."""
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
        deadlines = [self.coalescer.next_deadline(), self._lock_recheck, self.health.due_at]
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
        elif isinstance(item, JobDue):
            self._job_due(item.name)
        elif isinstance(item, TaskDone):
            self._task_done(item)
        elif isinstance(item, Event):
            self.ws.record(item)  # WatcherDegraded, JobFailed, JobMissed

    def _job_due(self, name: str) -> None:
        if name == "stale_check":
            self._lock_dirty = True
            if not self.watcher.alive():
                self._restart_watcher()
        elif name == "rescan":
            self._rescan = self._rescan or "schedule"
        elif name == "rotate":
            self._rotate = True

    def _act(self, now: float) -> None:
        if self._reload:
            self._reload = False
            self._reload_config()
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
        if self._rotate and self._busy is None and self._stop_reason is None:
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

    def _stat(self, rel: str) -> FileInfo | None:
        return stat_file(self.settings.paths.workspace, rel)

    def _record(self, events: list[Event]) -> None:
        """Record events; then a ``ModelInvalid`` for each damaged model zip they name."""
        if events:
            self.ws.record_many(events)
            self.ws.record_many(self.models.check(events))

    def _rescan_now(self, trigger: str) -> None:
        self._rescan = None
        current = snapshot(self.settings.paths.workspace)
        self._record(diff(current, self._state().files, trigger))
        self.ws.record_many(self.models.check_files(current))

    def _check_lock(self, now: float, *, submit: bool = True) -> None:
        path = self.settings.paths.lock_file
        view, error = observe_lock(path)
        if error is not None:
            self._lock_invalid(path, error)
        plan = decide(view, self._state(), now=now, retry_at=self._retry_at)
        self._record(list(plan.record))
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
        future = self.worker.submit(self._run, task)
        future.add_done_callback(lambda f: self.queue.put(_done(task, f)))

    def _run(self, task: Task) -> str | None:
        """On the worker thread: do the task; an error is returned, never raised."""
        try:
            run_task(self.ws, task)
        except ArchiveError as e:
            return str(e)  # ArchiveFailed is already recorded
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            self.ws.record(JobFailed(job=f"{task.kind}:{task.session_id or '-'}", error=error))
            return error
        return None

    def _task_done(self, done: TaskDone) -> None:
        self._busy = None
        self._lock_dirty = True
        if done.task == ROTATE and done.error is None:
            self.metrics.rotation_ran(time.time())
        if done.error is None:
            self._failures.pop(done.task, None)
            self._retry_at.pop(done.task, None)
            return
        count = self._failures[done.task] = self._failures.get(done.task, 0) + 1
        wait = backoff(count, cap_s=self.settings.daemon.retry_max_s)
        self._retry_at[done.task] = self.clock() + wait

    def _restart_watcher(self) -> None:
        log.warning("watcher died; restarting it", mode=self.watcher.mode)
        self.watcher.stop()
        self.watcher.start()
        self._rescan = "observer_restarted"

    def _ping(self, now: float) -> None:
        if self.notifier.watchdog_s is None or now < self._next_ping:
            return
        self._next_ping = now + self.notifier.watchdog_s
        if self.watcher.alive() and self.scheduler.alive():
            self.notifier.watchdog()

    def _reload_config(self) -> None:
        self.notifier.reloading()
        old = self.settings
        path = str(old.paths.config_file)
        try:
            new = load_settings(old.paths.workspace, self.config_file)
            check_reloadable(old, new)
        except ConfigError as e:
            self.ws.record(ConfigRejected(path=path, error=str(e)))
        else:
            self.settings = self.ws.settings = new
            self.ws.paths = new.paths
            self.metrics.path, self.metrics.dirty = new.paths.metrics_file, True
            self.coalescer.window_s = new.daemon.coalesce_window_s
            logs.configure(new.logging)
            self.scheduler.schedule(intervals(self.settings.daemon))
            if new.paths.lock_file != old.paths.lock_file:
                self.watcher.lock_file = new.paths.lock_file
                self._restart_watcher()
            self.ws.record(ConfigReloaded(path=path))
        self.notifier.send(READY="1", STATUS=self._status_text())

    # --- status -------------------------------------------------------------

    def _status_text(self) -> str:
        return status_text(self._busy, self._view, stopping=self._stop_reason is not None)

    def _status(self, text: str) -> None:
        self.notifier.status(text)
        if self.health.wanted(text, self.clock()):
            self.health.write(text, self.clock(), self._health_fields())

    def _health_fields(self) -> dict[str, object]:
        return health_fields(
            getattr(self, "watcher", None),
            getattr(self, "scheduler", None),
            self._busy,
            self.coalescer,
            self._view,
        )


def _done(task: Task, future: Future[str | None]) -> TaskDone:
    error = future.exception()
    return TaskDone(task, str(error) if error is not None else future.result())
