"""The archiving worker's side of the loop: run one task, report how it ended.

:func:`run_guarded` runs on the worker thread and never raises; the loop gets a
:class:`TaskDone` on its queue (:func:`task_done`, from the future's callback).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from daemon.errors import ArchiveError
from daemon.eventlog.events import JobFailed
from daemon.ops import Workspace
from daemon.service.sessions import Task, run_task


@dataclass(frozen=True)
class TaskDone:
    task: Task
    error: str | None


def run_guarded(ws: Workspace, task: Task) -> str | None:
    """On the worker thread: do the task; an error is returned, never raised."""
    try:
        run_task(ws, task)
    except ArchiveError as e:
        return str(e)  # ArchiveFailed is already recorded
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
        ws.record(JobFailed(job=f"{task.kind}:{task.session_id or '-'}", error=error))
        return error
    return None


def task_done(task: Task, future: Future[str | None]) -> TaskDone:
    error = future.exception()
    return TaskDone(task, str(error) if error is not None else future.result())
