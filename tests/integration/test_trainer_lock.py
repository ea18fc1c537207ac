"""The trainer's side of the lock-file protocol, against a stand-in daemon.

The test process plays the daemon: it holds ``.daemon/daemon.lock`` (so the trainer
sees a live daemon) and writes the acknowledgement with the protocol module.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from daemon.protocol import (
    Ack,
    LockInfo,
    TrainerLock,
    daemon_lock_path,
    held_exclusively,
    read_lock,
    write_ack,
)
from tests.trainer_helpers import (
    LiveTrainer,
    lock_state,
    make_workspace,
    read_json,
    run_trainer,
    start_trainer,
    tree,
    wait_until,
)
from trainer.data import synthetic_series


def lock_info(workspace: Path) -> LockInfo | None:
    try:
        return read_lock(workspace / "training.lock")
    except ValueError:
        return None


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def training_log(workspace: Path) -> str:
    return (workspace / "logs" / "training.log").read_text()


def test_waits_for_the_daemons_ack_then_runs_and_stops(tmp_path):
    ws = make_workspace(tmp_path)
    with held_exclusively(daemon_lock_path(ws)):
        proc = start_trainer(ws)
        info = wait_until("state starting", lambda: lock_info(ws))
        assert (info.state, info.archive, info.pid) == ("starting", True, proc.pid)
        assert not (ws / "logs").exists()  # nothing written before the daemon prepared
        write_ack(ws / "training.lock", Ack(info.session_id, True, "training_backup_x.zip"))
        seen = wait_until("state running", lambda: lock_state(ws) in {("running", None)})
        assert seen
        code, err = finish(proc)
    assert code == 0, err
    assert lock_state(ws) == ("stopped", "completed")
    log = training_log(ws)
    assert log.index("a daemon is alive: waiting up to 300 s") < log.index(
        "daemon acknowledged the session (archive: training_backup_x.zip)"
    )
    assert read_json(ws / "logs" / "session_summary.json")["session_id"] == info.session_id


def test_an_ack_for_another_session_is_not_enough_and_the_wait_is_bounded(tmp_path):
    ws = make_workspace(tmp_path, ack_timeout_s=0.5)
    write_ack(ws / "training.lock", Ack("some-older-session", True, None))
    with held_exclusively(daemon_lock_path(ws)):
        code, err = finish(start_trainer(ws))
    assert code == 0, err
    assert "no acknowledgement from the daemon within 0.5 s: training anyway" in training_log(ws)
    assert lock_state(ws) == ("stopped", "completed")


def test_no_archive_does_not_wait_for_a_live_daemon(tmp_path):
    """Also trains on a CSV as exported by a broker (day-first times, newest first)."""
    ws = make_workspace(tmp_path)
    series = synthetic_series(300, seed=9)
    rows = [
        f"{np.datetime_as_string(t, unit='s')},{o},{h},{lo},{c},100"
        for t, o, h, lo, c in zip(
            series.times, series.open, series.high, series.low, series.close, strict=True
        )
    ]
    day_first = [f"{r[8:10]}.{r[5:7]}.{r[0:4]} {r[11:19]}.000{r[19:]}" for r in reversed(rows)]
    csv = tmp_path / "EURUSD.csv"
    csv.write_text("Gmt time,Open,High,Low,Close,Volume\n" + "\n".join(day_first) + "\n")
    with held_exclusively(daemon_lock_path(ws)):
        code, err = finish(start_trainer(ws, "--no-archive", "--data", str(csv)))
    assert code == 0, err
    doc = json.loads((ws / "training.lock").read_text())
    assert (doc["archive"], doc["state"], doc["outcome"]) == (False, "stopped", "completed")
    assert "archive disabled (--no-archive): not waiting" in training_log(ws)
    summary = read_json(ws / "logs" / "session_summary.json")
    assert summary["data"] == {
        "source": str(csv),
        "bars": 300,
        "train_bars": 240,
        "held_out_bars": 60,
    }
    assert summary["steps"] == 256


def test_a_daemon_that_dies_while_we_wait_is_not_waited_for(tmp_path):
    ws = make_workspace(tmp_path)
    with held_exclusively(daemon_lock_path(ws)):
        trainer = LiveTrainer(ws)
        trainer.wait_for_output("a daemon is alive: waiting up to 300 s")
    code, err = trainer.finish()
    assert code == 0, err
    assert "the daemon stopped before acknowledging: training anyway" in training_log(ws)


def test_a_second_trainer_is_refused_and_touches_nothing(tmp_path):
    ws = make_workspace(tmp_path)
    with TrainerLock(ws / "training.lock") as held:
        held.acquire(LockInfo.new(archive=True))
        before = tree(ws)
        proc = run_trainer(ws)
        assert tree(ws) == before
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "another training session holds the lock (session " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (ws / "logs").exists()
