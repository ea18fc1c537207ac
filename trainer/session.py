"""The trainer's side of the lock-file protocol around one training session.

Order of events (DESIGN.md, "Lock-file protocol"):

1. take the flock on the workspace folder and on the lock file (a second trainer, or a
   lock file naming a live trainer: exit 2) and write ``starting``; from then on a
   :class:`LockKeeper` takes the lock file again within a second if someone deletes
   or replaces it;
2. if ``archive`` is true and a daemon is alive, wait (at most ``ack_timeout_s``,
   saying so in the log every few seconds) for its acknowledgement; with no daemon
   alive, or ``--no-archive``, go on at once and say so in the training log;
3. write ``running`` and train;
4. save the final model, flush every log, write the session summary, then write
   ``stopped`` with the outcome (``completed``, ``failed`` or ``interrupted``) and
   release the flock. Every path, including errors and signals, goes through 4.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from daemon.protocol import (
    LockHeldError,
    LockInfo,
    LockKeeper,
    Outcome,
    TrainerLock,
    daemon_alive,
    wait_for_ack,
)
from trainer.logsetup import LogSetup
from trainer.plan import RunPlan
from trainer.signals import SignalRecorder

if TYPE_CHECKING:
    from trainer.training import Training

log = logging.getLogger("trainer.session")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
WAIT_NOTICE_S = 10.0


class _StillWaiting:
    """``still_waiting`` for ``wait_for_ack``: the daemon lives, no signal came; logs progress."""

    def __init__(self, plan: RunPlan, signals: SignalRecorder) -> None:
        self.plan = plan
        self.signals = signals
        self.began = time.monotonic()
        self.next_notice = self.began + WAIT_NOTICE_S

    def __call__(self) -> bool:
        now = time.monotonic()
        if now >= self.next_notice:
            self.next_notice = now + WAIT_NOTICE_S
            log.info("still waiting for the daemon's acknowledgement (%.0f s)", now - self.began)
        return not self.signals.received() and daemon_alive(self.plan.workspace)


def await_daemon(plan: RunPlan, info: LockInfo, signals: SignalRecorder, logs: LogSetup) -> bool:
    """Wait for the daemon when the protocol asks for it; False if a signal came meanwhile."""
    timeout = plan.config.ack_timeout_s
    if not plan.archive:
        logs.open_file(plan.training_log)
        log.info("archive disabled (--no-archive): not waiting for a daemon")
        return True
    if not daemon_alive(plan.workspace):
        logs.open_file(plan.training_log)
        log.info(
            "no archiving daemon alive in %s: training without a pre-training archive",
            plan.workspace,
        )
        return True
    log.info(
        "a daemon is alive: waiting up to %.0f s for it to archive and prepare the workspace "
        "(session %s)",
        timeout,
        info.session_id,
    )
    ack = wait_for_ack(
        plan.lock_path, info.session_id, timeout, still_waiting=_StillWaiting(plan, signals)
    )
    logs.open_file(plan.training_log)
    if ack is not None and not ack.ready:
        log.warning(
            "the daemon could not archive and prepare the workspace (%s): "
            "training without a pre-training archive",
            ack.reason or "no reason given",
        )
    elif ack is not None:
        log.info("daemon acknowledged the session (archive: %s)", ack.archive or "none")
    elif signals.received():
        log.warning("signal received while waiting for the daemon: not training")
        return False
    elif not daemon_alive(plan.workspace):
        log.warning("the daemon stopped before acknowledging: training anyway")
    else:
        log.warning("no acknowledgement from the daemon within %g s: training anyway", timeout)
    return True


def _lock_report(outcome: str) -> None:
    """What the :class:`LockKeeper` found: the lock file taken again, or why not."""
    if outcome == "retaken":
        log.warning("the lock file was deleted or replaced: took it again")
    else:
        log.error("%s; training goes on (nothing is lost)", outcome)


def exit_code(outcome: Outcome, signum: int | None) -> int:
    if outcome == "completed":
        return EXIT_OK
    if outcome == "interrupted":
        return 128 + (signum or signal.SIGINT)
    return EXIT_FAILED


def run_session(plan: RunPlan, *, progress: bool = False) -> int:
    """Run one session under the lock; returns the process exit code.

    The signal recorder is installed before the lock is taken, so a SIGINT or
    SIGTERM at any moment after that (even while torch is still being imported)
    ends the session as ``interrupted`` with a ``stopped`` lock and exit 130/143.
    """
    wall_start = time.monotonic()
    started = datetime.now(UTC)
    info = LockInfo.new(archive=plan.archive, now=started)
    lock = TrainerLock(plan.lock_path, guard=plan.workspace)
    with SignalRecorder() as signals:
        try:
            lock.acquire(info)
        except LockHeldError as e:
            print(f"trainer: {e}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as e:  # the lock file (or its folder) may not be written by us
            lock.release()
            print(
                f"trainer: cannot take the lock file {plan.lock_path}: {e.strerror}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        with lock, LockKeeper(lock, report=_lock_report):
            outcome = _locked_session(plan, info, lock, signals, started, wall_start, progress)
    return exit_code(outcome, signals.signum)


def _locked_session(
    plan: RunPlan,
    info: LockInfo,
    lock: TrainerLock,
    signals: SignalRecorder,
    started: datetime,
    wall_start: float,
    progress: bool,
) -> Outcome:
    """Steps 2 to 4 of the module docstring, with the lock held and signals recorded."""
    logs = LogSetup(plan.logging.level)
    outcome: Outcome = "failed"
    error: str | None = None
    training: Training | None = None
    try:
        log.info("session %s starting (pid %d, lock %s)", info.session_id, info.pid, lock.path)
        from trainer.training import Training  # torch and SB3: only once the lock is ours

        training = Training(
            plan,
            info.session_id,
            started=started,
            should_stop=signals.received,
            progress=progress,
        )
        if not signals.received() and await_daemon(plan, info, signals, logs):
            lock.write(info.with_state("running"))
            training.setup()
            if progress:  # the bar owns the terminal; the training log keeps every line
                logs.console.setLevel(logging.WARNING)
            training.run()
        outcome = "interrupted" if signals.received() else "completed"
    except Exception as e:
        log.exception("training failed")
        error = f"{type(e).__name__}: {e}"
    logs.console.setLevel(logging.NOTSET)
    if signals.signum is not None:
        log.warning("stopped by signal %s", signal.Signals(signals.signum).name)
    logs.open_file(plan.training_log)
    if training is not None:
        try:
            outcome = training.finish(outcome, error, wall_start)
        except Exception:
            log.exception("could not write the session summary")
            outcome = "failed"
    log.info("session %s stopped: %s", info.session_id, outcome)
    logs.flush()
    lock.write(info.with_state("stopped", outcome))
    logs.close()
    return outcome
