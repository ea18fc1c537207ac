"""The session decision is pure: lock view + state + now -> what to record, what to archive."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon import archive as engine
from daemon import ops, protocol
from daemon.eventlog.events import (
    ArchiveCompleted,
    Event,
    SessionAbandoned,
    SessionAcknowledged,
    SessionRunning,
    SessionStarted,
    SessionStopped,
    StoredEvent,
)
from daemon.eventlog.fold import State, fold
from daemon.protocol import LockInfo
from daemon.service.sessions import (
    LockView,
    Task,
    backoff,
    decide,
    lock_still_ours,
    may_prepare,
    observe_lock,
    run_task,
)
from tests.daemon_helpers import make_daemon_workspace, workspace_id

INFO = LockInfo(
    session_id="s1", pid=42, host="h", boot_id="b", started_at="t", archive=True, state="starting"
)


def record(state: State, *events: Event) -> State:
    seq = state.last_seq
    stored = []
    for ev in events:
        seq += 1
        stored.append(StoredEvent(seq, "ts", ev.type, ev.SCHEMA, ev.payload()))
    return fold(state, stored)


def completed(name: str, reason: str, sid: str | None) -> ArchiveCompleted:
    return ArchiveCompleted(name, reason, sid, archive_id="x", bytes=1, members=1)


def test_no_lock_file_no_session_nothing_to_do() -> None:
    assert decide(LockView(None, False), State(), now=0).record == ()
    assert decide(LockView(None, False), State(), now=0).tasks == ()


def test_a_starting_session_is_recorded_and_prepared() -> None:
    plan = decide(LockView(INFO, held=True), State(), now=0)
    assert plan.record == (
        SessionStarted("s1", pid=42, host="h", started_at="t", archive=True, boot_id="b"),
    )
    assert plan.tasks == (Task("prepare", "s1", "pre_training"),)
    state = record(State(), *plan.record, SessionAcknowledged("s1", "a.zip"))
    assert decide(LockView(INFO, held=True), state, now=0).tasks == ()


def test_running_then_stopped_gets_one_post_training_archive() -> None:
    state = record(State(), SessionStarted("s1"), SessionAcknowledged("s1"))
    plan = decide(LockView(INFO.with_state("running"), True), state, now=0)
    assert plan.record == (SessionRunning("s1"),) and plan.tasks == ()
    state = record(state, *plan.record)
    stopped = INFO.with_state("stopped", "completed")
    plan = decide(LockView(stopped, held=False), state, now=0)
    assert plan.record == (SessionStopped("s1", "completed"),)
    assert plan.tasks == (Task("finalize", "s1", "post_training"),)
    state = record(state, *plan.record, completed("post.zip", "post_training", "s1"))
    assert decide(LockView(stopped, False), state, now=0) == decide(
        LockView(None, False), state, now=0
    )
    assert decide(LockView(stopped, False), state, now=0).tasks == ()


def test_a_lock_nobody_holds_before_stopped_is_abandoned() -> None:
    state = record(State(), SessionStarted("s1"), SessionRunning("s1"))
    plan = decide(LockView(INFO.with_state("running"), held=False), state, now=0)
    assert plan.record == (SessionAbandoned("s1", pid=42, last_state="running"),)
    assert plan.tasks == (Task("finalize", "s1", "abandoned"),)


def test_archive_false_is_recorded_only() -> None:
    info = replace(INFO, archive=False)
    plan = decide(LockView(info, True), State(), now=0)
    assert [e.type for e in plan.record] == ["SessionStarted"] and plan.tasks == ()
    state = record(State(), *plan.record)
    plan = decide(LockView(info.with_state("stopped", "failed"), False), state, now=0)
    assert plan.record == (SessionStopped("s1", "failed"),) and plan.tasks == ()


def test_a_session_that_ran_while_the_daemon_was_down_is_archived() -> None:
    plan = decide(LockView(INFO.with_state("stopped", "completed"), False), State(), now=0)
    assert [e.type for e in plan.record] == ["SessionStarted", "SessionStopped"]
    assert plan.tasks == (Task("finalize", "s1", "post_training"),)


def test_an_archive_adopted_before_its_session_was_known_still_counts() -> None:
    """Exactly once even when ArchiveCompleted precedes SessionStarted in the log."""
    state = record(State(), completed("post.zip", "post_training", "s1"))
    plan = decide(LockView(INFO.with_state("stopped", "completed"), False), state, now=0)
    assert plan.tasks == ()


def test_sessions_the_lock_no_longer_speaks_for_are_abandoned() -> None:
    state = record(State(), SessionStarted("old"), SessionRunning("old"))
    plan = decide(LockView(INFO, held=True), state, now=0)
    assert SessionAbandoned("old", last_state="running") in plan.record
    assert plan.tasks[0] == Task("finalize", "old", "abandoned")  # before the new one's prepare
    assert plan.tasks[1] == Task("prepare", "s1", "pre_training")


def test_an_invalid_lock_someone_holds_abandons_nothing() -> None:
    """Its trainer may be alive, caught mid-rewrite: wait for it."""
    state = record(State(), SessionStarted("s1"), SessionRunning("s1"))
    plan = decide(LockView(None, held=True, invalid=True), state, now=0)
    assert plan.record == () and plan.tasks == ()


def test_an_invalid_lock_nobody_holds_abandons_the_current_session() -> None:
    """A trainer killed between truncate and write (or out of space) left an empty lock."""
    state = record(State(), SessionStarted("s1"), SessionRunning("s1"))
    plan = decide(LockView(None, held=False, invalid=True), state, now=0)
    assert plan.record == (SessionAbandoned("s1", last_state="running"),)
    assert plan.tasks == (Task("finalize", "s1", "abandoned"),)
    state = record(state, *plan.record)
    again = decide(LockView(None, held=False, invalid=True), state, now=0)
    assert again.record == () and again.tasks == plan.tasks
    ended = record(state, completed("a.zip", "abandoned", "s1"))
    assert decide(LockView(None, held=False, invalid=True), ended, now=0) == decide(
        LockView(None, False), ended, now=0
    )


def test_failed_tasks_wait_for_their_retry_time() -> None:
    task = Task("finalize", "s1", "post_training")
    view = LockView(INFO.with_state("stopped"), False)
    assert decide(view, State(), now=10, retry_at={task: 20}).tasks == ()
    assert decide(view, State(), now=20, retry_at={task: 20}).tasks == (task,)
    assert [backoff(n) for n in (1, 2, 3, 10)] == [5.0, 10.0, 20.0, 300.0]


@given(
    st.sampled_from(["starting", "running", "stopped"]),
    st.booleans(),
    st.booleans(),
    st.lists(st.sampled_from(["started", "running", "stopped", "abandoned"]), max_size=3),
)
def test_deciding_twice_records_nothing_new(lock_state, held, archive, history) -> None:
    """Idempotent: once its events are recorded, the same look decides nothing more."""
    events: list[Event] = []
    for h in history:
        events.append(
            {
                "started": SessionStarted("s1", archive=archive),
                "running": SessionRunning("s1"),
                "stopped": SessionStopped("s1"),
                "abandoned": SessionAbandoned("s1"),
            }[h]
        )
    state = record(State(), *events)
    view = LockView(replace(INFO, archive=archive, state=lock_state), held)
    first = decide(view, state, now=0)
    again = decide(view, record(state, *first.record), now=0)
    assert again.record == ()
    assert again.tasks == first.tasks


# --- observe_lock on real files ----------------------------------------------


def test_observe_missing_held_and_released(tmp_path: Path) -> None:
    path = tmp_path / "training.lock"
    assert observe_lock(path) == (LockView(None, False), None)
    lock = protocol.TrainerLock(path)
    lock.acquire(INFO)
    view, error = observe_lock(path)
    assert error is None and view.held and view.info == INFO
    lock.write(INFO.with_state("running"))
    lock.release()
    view, error = observe_lock(path)
    assert not view.held and view.info is not None and view.info.state == "running"
    with protocol.TrainerLock(path) as again:  # probes left no lock behind
        again.acquire(INFO.with_state("stopped"))


@pytest.mark.parametrize("content", ["", "{nope", '{"protocol": 1}', "[]"])
def test_observe_garbage(tmp_path: Path, content: str) -> None:
    path = tmp_path / "training.lock"
    path.write_text(content)
    view, error = observe_lock(path)
    assert view == LockView(None, False, invalid=True)
    assert error is not None and str(path) in error


# --- prepare re-checks the lock before it deletes -----------------------------


@pytest.mark.parametrize(
    ("view", "ok"),
    [
        (LockView(INFO, held=True), True),
        (LockView(INFO, held=False), False),  # its trainer died
        (LockView(INFO.with_state("running"), held=True), False),  # it stopped waiting
        (LockView(replace(INFO, session_id="s2"), held=True), False),  # another session
        (LockView(None, held=True, invalid=True), False),  # mid-rewrite: not provably ours
        (LockView(None, held=False), False),  # no lock file
    ],
)
def test_prepare_only_while_the_lock_says_starting_for_this_session(
    view: LockView, ok: bool
) -> None:
    assert may_prepare(view, "s1") is ok


def test_lock_still_ours_follows_the_trainer(tmp_path: Path) -> None:
    path = tmp_path / "training.lock"
    assert not lock_still_ours(path, "s1")
    with protocol.TrainerLock(path) as lock:
        lock.acquire(INFO)
        assert lock_still_ours(path, "s1") and not lock_still_ours(path, "s2")
        lock.write(INFO.with_state("running"))
        assert not lock_still_ours(path, "s1")
        lock.write(INFO)
    assert not lock_still_ours(path, "s1")  # released: nobody waits for the ack


def _logs_tree(ws: Path) -> tuple[set[str], set[str]]:
    paths = list((ws / "logs").rglob("*"))
    files = {str(p.relative_to(ws)) for p in paths if p.is_file()}
    dirs = {str(p.relative_to(ws)) for p in paths if p.is_dir()}
    return files, dirs


def test_prepare_logs_stops_deleting_once_still_ours_says_no(tmp_path: Path) -> None:
    root = make_daemon_workspace(tmp_path / "ws")
    (root / "logs/tensorboard/run1").mkdir(parents=True)
    (root / "logs/tensorboard/run1/events.out").write_bytes(b"x" * 1000)
    with ops.open_workspace(root) as ws:
        made = ops.archive_now(ws, reason="pre_training", session_id="s1")
        files, dirs = _logs_tree(root)
        assert len(files) == 3
        answers = iter([True])  # ours for the first unlink, then the trainer went on
        prepared = ops.prepare_logs(ws, made.path, "s1", still_ours=lambda: next(answers, False))
        assert prepared == ops.Prepared(removed=1, kept=2, complete=False)
        left, left_dirs = _logs_tree(root)
        assert len(left) == 2 and left < files
        assert left_dirs == dirs  # no folder removed, not even an emptied one
        types = [e.type for e in ws.store.read()]
        assert "PrepareSkipped" in types and "WorkspacePrepared" not in types


def test_prepare_task_deletes_nothing_when_the_trainer_already_runs(tmp_path: Path) -> None:
    """Past its ack timeout the trainer writes ``running`` and logs: prepare must not delete."""
    root = make_daemon_workspace(tmp_path / "ws")
    files, dirs = _logs_tree(root)
    with ops.open_workspace(root) as ws, protocol.TrainerLock(ws.paths.lock_file) as lock:
        lock.acquire(INFO)
        lock.write(INFO.with_state("running"))
        name = run_task(ws, Task("prepare", "s1", "pre_training"))
        assert name is not None and (root / "archives" / name).is_file()
        assert _logs_tree(root) == (files, dirs)
        skipped = list(ws.store.read(types=["PrepareSkipped"]))
        assert [e.data["removed"] for e in skipped] == [0]
        assert list(ws.store.read(types=["WorkspacePrepared"])) == []
        ack = protocol.read_ack(protocol.ack_path(ws.paths.lock_file))
        assert ack is not None and ack.session_id == "s1" and ack.archive == name


# --- a final archive the log missed is adopted, not made again ------------------


def test_finalize_adopts_this_sessions_unrecorded_archive_instead_of_a_second(
    tmp_path: Path,
) -> None:
    """ArchiveCompleted failed to append (a brief SQLite failure): the retry must not re-archive."""
    root = make_daemon_workspace(tmp_path / "ws")
    archives = root / "archives"
    wid = workspace_id(root)  # as the daemon that made them would have
    other = engine.create_archive(
        root, archives, reason="post_training", session_id="s2", workspace_id=wid
    )
    pre = engine.create_archive(
        root, archives, reason="pre_training", session_id="s1", workspace_id=wid
    )
    final = engine.create_archive(
        root, archives, reason="post_training", session_id="s1", workspace_id=wid
    )
    with ops.open_workspace(root) as ws:
        ws.record_many([SessionStarted("s1"), SessionStopped("s1", "completed")])
        name = run_task(ws, Task("finalize", "s1", "post_training"))
        assert name == final.path.name
        assert list(ws.store.read(types=["ArchiveStarted"])) == []
        state = ws.state()
        assert state.sessions["s1"].final_archive == final.path.name
        assert state.archives[final.path.name].verified
        assert other.path.name not in state.archives  # another session's: not looked at here
        assert pre.path.name not in state.archives  # not a final archive
        assert decide(LockView(None, False), state, now=0).tasks == ()
    assert len(engine.list_archive_files(archives)) == 3
