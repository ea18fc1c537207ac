"""Dead means dead on the daemon's side: sessions are abandoned by their trainers'
processes, not by a flock on a file someone replaced; prepare waits for earlier
trainers, spares open files and clears the ``prepare_clears`` folders."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon import ops, protocol
from daemon.config import load_settings
from daemon.errors import ConfigError
from daemon.eventlog.events import (
    Event,
    SessionAbandoned,
    SessionRunning,
    SessionStarted,
    SessionStopped,
    StoredEvent,
)
from daemon.eventlog.fold import State, fold
from daemon.openfiles import OpenFiles, scan_open_files
from daemon.protocol import LockInfo, Seen
from daemon.protocol.document import read_boot_id, read_start_time
from daemon.service.sessions import LockView, Task, decide, observe_lock, run_task
from daemon.service.trainers import prepare_blockers, probe_trainers
from tests.daemon_helpers import make_daemon_workspace

INFO = LockInfo("s1", 42, "h", "b", "t", archive=True, state="running", start_time=7)


def record(state: State, *events: Event) -> State:
    stored = [
        StoredEvent(state.last_seq + i + 1, "ts", e.type, e.SCHEMA, e.payload())
        for i, e in enumerate(events)
    ]
    return fold(state, stored)


def probe_of(verdicts: dict[int, str]) -> Callable[[int], Seen]:
    """A probe on host "h", boot "b": pid -> "exists" (start 7), "gone" or "denied"."""
    return lambda pid: Seen("h", "b", verdicts.get(pid, "gone"), 7)  # type: ignore[arg-type]


RUNNING = record(
    State(), SessionStarted("s1", pid=42, host="h", boot_id="b", start_time=7), SessionRunning("s1")
)


def test_a_deleted_lock_file_abandons_no_live_trainer() -> None:
    assert decide(LockView(None, False, trainers={"s1": "alive"}), RUNNING, now=0).record == ()
    dead = decide(LockView(None, False, trainers={"s1": "dead"}), RUNNING, now=0)
    assert dead.record == (SessionAbandoned("s1", pid=42, last_state="running"),)


def test_a_replaced_lock_file_nobody_holds_abandons_no_live_trainer() -> None:
    alive = LockView(INFO, held=False, trainers={"s1": "alive"})
    assert decide(alive, RUNNING, now=0) == decide(LockView(INFO, True), RUNNING, now=0)
    assert decide(LockView(INFO, held=False, trainers={"s1": "dead"}), RUNNING, now=0).record
    # a garbage save nobody holds speaks for no one, but a live trainer is still alive
    garbage = LockView(None, held=False, invalid=True, trainers={"s1": "alive"})
    assert decide(garbage, RUNNING, now=0).record == ()


def test_a_dead_trainer_is_abandoned_even_if_someone_holds_the_new_file() -> None:
    assert protocol.is_stale(INFO, held=True, trainer="dead")
    assert not protocol.is_stale(INFO, held=False, trainer="alive")
    assert protocol.is_stale(INFO, held=False)  # unknown (another host): the flock decides
    assert not protocol.is_stale(
        INFO.with_state("stopped", "completed"), held=False, trainer="dead"
    )


def test_session_started_records_who_the_trainer_is() -> None:
    plan = decide(LockView(INFO.with_state("starting"), True), State(), now=0)
    started = plan.record[0]
    assert isinstance(started, SessionStarted)
    assert (started.pid, started.boot_id, started.start_time) == (42, "b", 7)
    session = record(State(), *plan.record).sessions["s1"]
    assert (session.pid, session.host, session.boot_id, session.start_time) == (42, "h", "b", 7)
    old = fold(State(), [StoredEvent(1, "ts", "SessionStarted", 1, {"session_id": "o", "pid": 3})])
    assert (old.sessions["o"].boot_id, old.sessions["o"].start_time) == ("", None)


def test_probe_trainers_covers_the_lock_and_every_unfinished_session() -> None:
    state = record(
        RUNNING,
        SessionStarted("s0", pid=41, host="h", boot_id="b"),
        SessionStarted("s9", pid=49, host="h", boot_id="b"),
        SessionStopped("s9", "completed"),
    )
    found = probe_trainers(INFO, state, probe_of({42: "exists", 41: "denied"}))
    assert found == {"s1": "alive", "s0": "alive"}  # s9 stopped: not asked
    assert probe_trainers(None, state, probe_of({})) == {"s1": "dead", "s0": "dead"}


def test_prepare_waits_for_every_earlier_trainer_that_may_live() -> None:
    state = record(
        RUNNING,
        SessionAbandoned("s1"),  # recorded abandoned (an older daemon), but its pid lives on
        SessionStarted("s2", pid=43, host="h", boot_id="b"),
        SessionStarted("far", pid=44, host="elsewhere", boot_id="x"),
        SessionStopped("far", "completed"),
    )
    probe = probe_of({42: "exists", 43: "exists"})
    blockers = prepare_blockers(state, "s2", see_all=True, probe=probe)
    assert blockers == ["session s1 (pid 42) may still run"]
    assert prepare_blockers(state, "s2", see_all=True, probe=probe_of({43: "exists"})) == []
    unknown = record(state, SessionStarted("nfs", pid=45, host="elsewhere", boot_id="x"))
    assert prepare_blockers(unknown, "s2", see_all=True, probe=probe_of({43: "exists"})) == []
    assert prepare_blockers(unknown, "s2", see_all=False, probe=probe_of({43: "exists"})) == [
        "session nfs (pid 45) may still run"
    ]


def test_observe_lock_with_the_state_probes_real_processes(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    info = LockInfo.new(archive=True).with_state("running")
    live = info.__class__(
        **{**info.__dict__, "pid": sleeper.pid, "start_time": read_start_time(sleeper.pid)}
    )
    path = tmp_path / "training.lock"
    path.write_text(live.to_json())
    try:
        view, _ = observe_lock(path, state=State())
        assert not view.held and view.trainers == {live.session_id: "alive"}
        assert decide(view, State(), now=0).record[0] == (
            SessionStarted(
                live.session_id,
                pid=sleeper.pid,
                host=live.host,
                started_at=live.started_at,
                archive=True,
                boot_id=read_boot_id(),
                start_time=live.start_time,
            )
        )
    finally:
        sleeper.kill()
        sleeper.wait()
    view, _ = observe_lock(path, state=State())
    assert view.trainers == {live.session_id: "dead"}
    assert [e.type for e in decide(view, State(), now=0).record] == [
        "SessionStarted",
        "SessionAbandoned",  # dead, and never stopped
    ]


# --- prepare clears what is archived ------------------------------------------------


def models_workspace(root: Path, **config: object) -> Path:
    make_daemon_workspace(root, **config)
    (root / "models/checkpoints/memory_efficient_model_s0_100_steps.zip").write_bytes(b"c" * 900)
    (root / "models/backups").mkdir()
    (root / "models/backups/memory_efficient_model_final_20260101_000000.zip").write_bytes(b"b")
    (root / "models/backups/deep").mkdir()
    (root / "models/backups/deep/old.zip").write_bytes(b"d")
    (root / "ckpt.pth").write_bytes(b"root checkpoint")
    return root


def left(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {
        p for p in (str(q.relative_to(root)) for q in root.rglob("*")) if p.startswith(".daemon")
    }


def test_prepare_clears_checkpoints_and_backups_and_keeps_what_the_next_session_needs(
    tmp_path: Path,
) -> None:
    root = models_workspace(tmp_path / "ws")
    with ops.open_workspace(root) as ws:
        made = ops.archive_now(ws, reason="pre_training", session_id="s1")
        (root / "models/checkpoints/new_after_archive.zip").write_bytes(b"n")
        prepared = ops.prepare_logs(ws, made.path, "s1")
    remaining = {p for p in left(root) if not p.startswith("archives/")}
    assert remaining == {
        "models/memory_efficient_model_final.zip",
        "models/checkpoints/new_after_archive.zip",  # no archive holds it
        "config/config.json",
        "ckpt.pth",
    }
    assert prepared.removed == 5 and prepared.kept == 0
    assert (root / "models/checkpoints").is_dir() and (root / "models/backups").is_dir()
    assert not (root / "models/backups/deep").exists()  # emptied sub-folders go


def test_prepare_clears_only_the_configured_folders(tmp_path: Path) -> None:
    root = models_workspace(tmp_path / "ws", prepare_clears=["logs/trades"])
    with ops.open_workspace(root) as ws:
        made = ops.archive_now(ws, reason="pre_training", session_id="s1")
        ops.prepare_logs(ws, made.path, "s1")
    assert not (root / "logs/trades/trade_execution.log").exists()
    assert (root / "logs/training.log").is_file()
    assert (root / "models/checkpoints/memory_efficient_model_s0_100_steps.zip").is_file()


def test_prepare_never_removes_a_file_a_live_process_has_open(tmp_path: Path) -> None:
    root = models_workspace(tmp_path / "ws")
    held = root / "logs/training.log"
    with held.open() as f:
        holder = subprocess.Popen(["sleep", "60"], stdin=f)
    try:
        with ops.open_workspace(root) as ws:
            made = ops.archive_now(ws, reason="pre_training", session_id="s1")
            seen = scan_open_files()
            assert seen.holds(held.stat())
            prepared = ops.prepare_logs(ws, made.path, "s1", open_files=seen)
        assert held.is_file() and prepared.kept == 1
        assert not (root / "logs/trades/trade_execution.log").exists()
    finally:
        holder.kill()
        holder.wait()
    assert OpenFiles(frozenset(), True).holds(held.stat()) is False


def test_the_prepare_task_skips_while_an_earlier_trainer_lives(tmp_path: Path) -> None:
    """The earlier trainer's lock file was deleted; a trainer that bypassed the guard starts."""
    root = models_workspace(tmp_path / "ws")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with ops.open_workspace(root) as ws, protocol.TrainerLock(ws.paths.lock_file) as lock:
            ws.record(
                SessionStarted(
                    "earlier",
                    pid=sleeper.pid,
                    host=socket.gethostname(),
                    boot_id=read_boot_id(),
                    start_time=read_start_time(sleeper.pid),
                )
            )
            info = LockInfo.new(archive=True)
            lock.acquire(info)
            before = left(root)
            name = run_task(ws, Task("prepare", info.session_id, "pre_training"))
            assert name is not None and before <= left(root)  # nothing removed
            skipped = [e.data for e in ws.store.read(types=["PrepareSkipped"])]
            assert len(skipped) == 1 and f"session earlier (pid {sleeper.pid})" in skipped[0]["why"]
            assert list(ws.store.read(types=["WorkspacePrepared"])) == []
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(
    "value", [["models"], ["config"], ["../logs"], ["/srv/x/logs"], ["logs/../models"], "logs", [1]]
)
def test_prepare_clears_is_checked_at_the_edge(tmp_path: Path, value: object) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.json").write_text(json.dumps({"prepare_clears": value}))
    with pytest.raises(ConfigError, match="prepare_clears") as e:
        load_settings(tmp_path)
    assert str(tmp_path / "config/config.json") in str(e.value)
    assert "\n" not in str(e.value)


def test_prepare_clears_defaults(tmp_path: Path) -> None:
    assert load_settings(tmp_path).daemon.prepare_clears == (
        "logs",
        "models/checkpoints",
        "models/backups",
    )
