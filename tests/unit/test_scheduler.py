"""A real BackgroundScheduler: jobs enqueue, errors and misses become events."""

from __future__ import annotations

import queue
from datetime import UTC, datetime, timedelta

from daemon.eventlog.events import JobFailed, JobMissed
from daemon.service.scheduler import JobDue, Scheduler


def take(q: queue.SimpleQueue[object], kind: type, timeout: float = 10.0) -> object:
    while True:
        item = q.get(timeout=timeout)  # raises queue.Empty at the deadline
        if isinstance(item, kind):
            return item


def test_interval_jobs_enqueue_work() -> None:
    q: queue.SimpleQueue[object] = queue.SimpleQueue()
    with Scheduler(q.put) as s:
        s.schedule({"stale_check": 0.05})
        assert take(q, JobDue) == JobDue("stale_check")
        assert take(q, JobDue) == JobDue("stale_check")
        assert s.alive()
    assert not s.alive()


def test_a_failing_job_becomes_job_failed_and_the_scheduler_lives_on() -> None:
    q: queue.SimpleQueue[object] = queue.SimpleQueue()

    def boom() -> None:
        raise RuntimeError("disk on fire")

    with Scheduler(q.put) as s:
        s.every("boom", 0.05, boom)
        failed = take(q, JobFailed)
        assert failed == JobFailed(job="boom", error="RuntimeError: disk on fire")
        s.schedule({"rescan": 0.05})
        assert take(q, JobDue) == JobDue("rescan")
        assert s.alive()


def test_a_missed_run_becomes_job_missed() -> None:
    q: queue.SimpleQueue[object] = queue.SimpleQueue()
    with Scheduler(q.put) as s:
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        s._scheduler.add_job(
            lambda: None, "date", run_date=long_ago, id="late", misfire_grace_time=1
        )
        missed = take(q, JobMissed)
        assert isinstance(missed, JobMissed) and missed.job == "late"
        assert missed.scheduled_at.startswith(long_ago.isoformat()[:16])
