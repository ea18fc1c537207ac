"""APScheduler 3 in-process: interval jobs that only enqueue work for the main loop.

The job store is in memory (the event log is the truth, nothing to persist).
Every job is coalesced, runs one instance at a time and has a generous misfire
grace; a job that raises, misses its time or is skipped because it is still
running becomes an event (``JobFailed`` / ``JobMissed``) handed to ``sink``,
never a dead scheduler. The jobs themselves only put a :class:`JobDue` on the
main queue, so they cannot block and the real work stays on the main loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from daemon.config import DaemonConfig
from daemon.eventlog.events import JobFailed, JobMissed
from daemon.lifecycle import Service

Sink = Callable[[object], None]
MIN_MISFIRE_GRACE_S = 60


@dataclass(frozen=True)
class JobDue:
    """A scheduled job's turn came: the main loop does the work."""

    name: str


class Scheduler(Service):
    """A BackgroundScheduler whose problems are reported as events; a context manager."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._scheduler.add_listener(
            self._on_problem, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )

    def every(self, name: str, seconds: float, func: Callable[[], Any] | None = None) -> None:
        """Run ``func`` (default: enqueue ``JobDue(name)``) every ``seconds``; replaces ``name``."""
        self._scheduler.add_job(
            func or (lambda: self._sink(JobDue(name))),
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            replace_existing=True,
            misfire_grace_time=max(MIN_MISFIRE_GRACE_S, int(seconds * 2)),
        )

    def schedule(self, intervals: Mapping[str, float]) -> None:
        """Set the enqueueing jobs to these intervals (added or rescheduled)."""
        for name, seconds in intervals.items():
            self.every(name, seconds)

    def _on_problem(self, event: JobEvent) -> None:
        try:
            if event.code == EVENT_JOB_ERROR:
                error = getattr(event, "exception", None)
                self._sink(JobFailed(job=event.job_id, error=f"{type(error).__name__}: {error}"))
            else:
                times = getattr(event, "scheduled_run_times", None) or [
                    getattr(event, "scheduled_run_time", None)
                ]
                when = times[0].isoformat() if times and times[0] is not None else ""
                self._sink(JobMissed(job=event.job_id, scheduled_at=when))
        except Exception:
            pass

    def alive(self) -> bool:
        thread = getattr(self._scheduler, "_thread", None)
        return bool(self._scheduler.running and thread is not None and thread.is_alive())

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)


def intervals(d: DaemonConfig) -> dict[str, float]:
    """The daemon's jobs and their intervals in seconds, from its config."""
    return {
        "stale_check": d.stale_check_interval_s,
        "rescan": d.rescan_interval_s,
        "rotate": d.rotation_interval_s,
    }
