"""The daemon's side of the lock-file protocol: a pure decision, then tasks.

:func:`decide` takes what the lock file says (:class:`LockView`), the folded
:class:`State` and ``now``, and returns a :class:`Plan`: the session events to
record at once and the archiving tasks still owed, most urgent first. It does
no IO, so it can be called as often as anything changes: it is idempotent,
which is also why the daemon's own probes of the lock can never cause a
reaction of their own.

Exactly-once: a session is owed a final archive only while neither its
``final_archive`` nor any archive in the state names it with a final reason;
the service adopts archives left unrecorded by a crash (read from their
manifests) before it first decides, so a crash between an archive's rename and
its ``ArchiveCompleted`` cannot produce a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Literal

from daemon import archive as engine
from daemon import ops, protocol
from daemon.archive.sources import SourceFile, collect_sources
from daemon.errors import ArchiveError, DaemonError
from daemon.eventlog.events import (
    AckFailed,
    Event,
    PrepareSkipped,
    SessionAbandoned,
    SessionAcknowledged,
    SessionRunning,
    SessionStarted,
    SessionStopped,
)
from daemon.eventlog.fold import FINAL_REASONS, SessionInfo, State
from daemon.openfiles import scan_open_files
from daemon.ops import Workspace
from daemon.protocol import Liveness, LockInfo
from daemon.service.adoption import reconcile_archives
from daemon.service.trainers import prepare_blockers, probe_trainers

TaskKind = Literal["prepare", "finalize", "rotate"]


@dataclass(frozen=True)
class LockView:
    """What one look at the lock file found."""

    info: LockInfo | None
    """Its content, or None when there is no lock file (or it is unreadable)."""
    held: bool
    """Whether some process held its flock."""
    invalid: bool = False
    """The file exists but holds no valid protocol document."""
    trainers: Mapping[str, Liveness] = field(default_factory=dict)
    """Liveness of the trainers of the lock's session and of every unfinished one
    (:func:`~daemon.service.trainers.probe_trainers`); a session missing here is
    ``unknown``, for which the flock decides."""

    def trainer(self, session_id: str) -> Liveness:
        return self.trainers.get(session_id, "unknown")


@dataclass(frozen=True)
class Task:
    """Work for the archiving worker; one runs at a time."""

    kind: TaskKind
    session_id: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        if self.kind == "rotate":
            return "rotating archives"
        if self.kind == "prepare":
            return f"archiving pre_training and preparing for session {self.session_id}"
        return f"archiving {self.reason} for session {self.session_id}"


ROTATE = Task("rotate")


@dataclass(frozen=True)
class Plan:
    record: tuple[Event, ...] = ()
    tasks: tuple[Task, ...] = ()


def final_archive_of(state: State, session_id: str) -> str | None:
    """The name of an archive that closes ``session_id``, if any."""
    session = state.sessions.get(session_id)
    if session is not None and session.final_archive:
        return session.final_archive
    for info in state.archives.values():
        if info.session_id == session_id and info.reason in FINAL_REASONS:
            return info.name
    return None


def pre_archive_of(state: State, session_id: str) -> str | None:
    session = state.sessions.get(session_id)
    if session is not None and session.pre_archive:
        return session.pre_archive
    for info in state.archives.values():
        if info.session_id == session_id and info.reason == "pre_training":
            return info.name
    return None


def decide(
    lock: LockView,
    state: State,
    *,
    now: float,
    retry_at: Mapping[Task, float] | None = None,
) -> Plan:
    """What to record and which tasks are owed, given the lock and the state."""
    record: list[Event] = []
    sessions: dict[str, SessionInfo] = dict(state.sessions)
    order = list(state.session_order)
    info = lock.info
    if info is not None:
        session = sessions.get(info.session_id)
        if session is None:
            record.append(
                SessionStarted(
                    session_id=info.session_id,
                    pid=info.pid,
                    host=info.host,
                    started_at=info.started_at,
                    archive=info.archive,
                    boot_id=info.boot_id,
                    start_time=info.start_time,
                )
            )
            session = SessionInfo(info.session_id, "starting", archive=info.archive, pid=info.pid)
            order.append(info.session_id)
        sessions[info.session_id] = _advance(session, info, lock, record)
    if not (lock.invalid and lock.held):
        # Sessions the log thinks alive that the lock no longer speaks for ended
        # while nobody watched, unless their trainer's process still lives: the
        # lock file may have been deleted or replaced under it (it takes it again).
        # An invalid lock nobody holds speaks for no one: its writer died mid-write
        # (killed between truncate and write, or the write hit ENOSPC). Only an
        # invalid lock that is held may be a live trainer's, so it abandons nothing.
        current = info.session_id if info is not None else None
        for sid in order:
            s = sessions[sid]
            if sid != current and not s.ended and lock.trainer(sid) != "alive":
                record.append(SessionAbandoned(session_id=sid, pid=s.pid, last_state=s.state))
                sessions[sid] = replace(s, state="abandoned")
    tasks: list[Task] = []
    for sid in order:
        s = sessions[sid]
        if s.ended and s.archive and final_archive_of(state, sid) is None:
            reason = "post_training" if s.state == "stopped" else "abandoned"
            tasks.append(Task("finalize", sid, reason))
    if info is not None and lock.held and info.state == "starting" and info.archive:
        s = sessions[info.session_id]
        if s.state == "starting" and not s.acknowledged:
            tasks.append(Task("prepare", info.session_id, "pre_training"))
    waits = retry_at or {}
    ready = tuple(t for t in tasks if waits.get(t, now) <= now)
    return Plan(tuple(record), ready)


def _advance(
    session: SessionInfo, info: LockInfo, lock: LockView, record: list[Event]
) -> SessionInfo:
    """Move one session along by what its lock file says now (dead is checked: its
    trainer's process, not the flock alone, decides whether it was abandoned)."""
    if session.ended:
        return session
    sid = info.session_id
    if info.state == "stopped":
        record.append(SessionStopped(session_id=sid, outcome=info.outcome))
        return replace(session, state="stopped", outcome=info.outcome)
    if protocol.is_stale(info, held=lock.held, trainer=lock.trainer(sid)):
        record.append(SessionAbandoned(session_id=sid, pid=info.pid, last_state=info.state))
        return replace(session, state="abandoned")
    if info.state == "running" and session.state == "starting":
        record.append(SessionRunning(session_id=sid))
        return replace(session, state="running")
    return session


def backoff(failures: int, *, base_s: float = 5.0, cap_s: float = 300.0) -> float:
    """Seconds to wait before retrying a task that failed ``failures`` times in a row."""
    return float(min(cap_s, base_s * 2 ** min(30, max(0, failures - 1))))


# --- the thin executor: IO around the decision --------------------------------


def observe_lock(
    path: Path, *, state: State | None = None, attempts: int = 3
) -> tuple[LockView, str | None]:
    """Look at the lock file: (view, error text if its content is invalid).

    With ``state``, the view also tells whether the trainers of the lock's
    session and of every unfinished session still live (their processes).
    """
    view, error = _look(path, attempts)
    if state is not None:
        view = replace(view, trainers=probe_trainers(view.info, state))
    return view, error


def _look(path: Path, attempts: int) -> tuple[LockView, str | None]:
    """One look at the lock file, without probing processes.

    The flock is probed *before* the content is read, and probed again before a
    lock is called abandoned: a trainer writes ``stopped`` before it releases,
    and takes the flock before it writes, so a content read between two probes
    that both find the lock free truly belongs to a dead trainer. Probing opens
    the file read-only, which the lock watcher ignores.
    """
    view = LockView(None, False)
    for _ in range(attempts):
        held = protocol.lock_is_held(path)
        try:
            info = protocol.read_lock(path)
        except protocol.LockFileError as e:
            return LockView(None, held or protocol.lock_is_held(path), invalid=True), str(e)
        view = LockView(info, held)
        if info is None or held or info.state == "stopped":
            return view, None
        if protocol.lock_is_held(path):
            continue  # a new trainer took it meanwhile: look again
        try:
            again = protocol.read_lock(path)
        except protocol.LockFileError:
            continue
        if again == info:
            return view, None
    return view, None


def run_task(ws: Workspace, task: Task, *, progress: ops.Progress | None = None) -> str | None:
    """Do one task (on the worker thread); returns the archive it made or used."""
    if task.kind == "rotate":
        ops.prune(ws)
        return None
    assert task.session_id is not None and task.reason is not None
    sid = task.session_id
    if task.kind == "finalize":
        done = final_archive_of(ws.state(), sid)
        if done is None and reconcile_archives(ws, closing=sid):
            done = final_archive_of(ws.state(), sid)
        if done is not None:
            return done
        return ops.archive_now(ws, reason=task.reason, session_id=sid, progress=progress).name
    state = ws.state()
    name = pre_archive_of(state, sid) or covering_archive(ws, state)
    if name is None and _holds_data(ws):
        try:
            name = ops.archive_now(
                ws, reason="pre_training", session_id=sid, progress=progress
            ).name
        except ArchiveError as e:  # ArchiveFailed is recorded: answer the trainer at once
            refuse_prepare(ws, sid, str(e))
            return None
    if name is not None:
        lock_file = ws.paths.lock_file
        view, _ = observe_lock(lock_file)
        open_files = scan_open_files()
        blockers = prepare_blockers(state, sid, see_all=open_files.complete)
        if blockers:
            ws.record(PrepareSkipped(session_id=sid, archive=name, why="; ".join(blockers)))
        elif may_prepare(view, sid):
            still_ours = partial(lock_still_ours, lock_file, sid)
            ops.prepare_logs(
                ws, ws.paths.archive_dir / name, sid, still_ours=still_ours, open_files=open_files
            )
        else:
            ws.record(PrepareSkipped(session_id=sid, archive=name))
    acknowledge(ws, protocol.Ack(session_id=sid, ready=True, archive=name))
    return name


def refuse_prepare(ws: Workspace, session_id: str, reason: str) -> None:
    """Answer a starting trainer at once that no archive was made (``ready: false``, why):
    it goes on, as with no daemon, instead of waiting ``ack_timeout_s`` for nothing."""
    acknowledge(ws, protocol.Ack(session_id=session_id, ready=False, archive=None, reason=reason))


def acknowledge(ws: Workspace, ack: protocol.Ack) -> None:
    """Write the ack and record it; an ack that cannot be written is ``AckFailed`` (the
    session is still marked answered: the trainer's own timeout lets it go on)."""
    path = protocol.ack_path(ws.paths.lock_file)
    try:
        protocol.write_ack(ws.paths.lock_file, ack)
    except OSError as e:
        ws.record(AckFailed(session_id=ack.session_id, path=str(path), error=_os_error(e)))
    ws.record(
        SessionAcknowledged(
            session_id=ack.session_id, archive=ack.archive, ready=ack.ready, reason=ack.reason
        )
    )


def _os_error(e: OSError) -> str:
    return f"{e.strerror or e}" + (f" ({e.filename})" if e.filename else "")


def may_prepare(lock: LockView, session_id: str) -> bool:
    """Whether logs/ may be emptied for ``session_id``: only while its trainer holds the lock
    and still says ``starting`` (waiting for the ack, writing no logs yet)."""
    info = lock.info
    return (
        lock.held
        and not lock.invalid
        and info is not None
        and info.session_id == session_id
        and info.state == "starting"
    )


def lock_still_ours(path: Path, session_id: str) -> bool:
    """One quick look for :func:`may_prepare`; no retries: a lock caught mid-rewrite is not ours."""
    held = protocol.lock_is_held(path)
    try:
        info = protocol.read_lock(path, retry_s=0)
    except protocol.LockFileError:
        return False
    return may_prepare(LockView(info, held), session_id)


def covering_archive(ws: Workspace, state: State) -> str | None:
    """The newest verified archive that holds every file of the workspace unchanged."""
    verified = [a for a in state.archives.values() if a.verified]
    if not verified:
        return None
    newest = max(verified, key=lambda a: a.seq)  # recorded last, whatever its name says
    path = ws.paths.archive_dir / newest.name
    try:
        manifest = engine.read_manifest(path)
    except (OSError, ValueError, DaemonError):
        return None
    members = {m.path: m for m in manifest.members if not m.changed}
    for src in _sources(ws):
        m = members.get(src.arcname)
        if m is None or m.size != src.size:
            return None
        if (m.mtime_ns or int(m.mtime * 1e9)) // 1000 != src.mtime_ns // 1000:
            return None
    return path.name


def _sources(ws: Workspace) -> list[SourceFile]:
    """What an archive of the workspace would hold now (the engine's own selection)."""
    return collect_sources(ws.paths.workspace, exclude=[ws.paths.archive_dir])[0]


def _holds_data(ws: Workspace) -> bool:
    """Anything of a session to keep: a file in logs/ or models/, or a root checkpoint."""
    return any(not src.arcname.startswith("config/") for src in _sources(ws))
