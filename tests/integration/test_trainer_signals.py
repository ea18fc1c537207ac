"""How a session ends: SIGINT and SIGTERM are ``interrupted``, an exception ``failed``."""

from __future__ import annotations

import signal

import pytest

from tests.trainer_helpers import (
    lock_state,
    make_workspace,
    read_json,
    read_traces,
    run_trainer,
    start_trainer,
    wait_until,
)

FINAL = "memory_efficient_model_final.zip"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_model_and_ends_interrupted(tmp_path, signum):
    ws = make_workspace(tmp_path, total_episodes=50)
    proc = start_trainer(ws)
    log = ws / "logs" / "training.log"
    wait_until("two chunks trained", lambda: log.exists() and "chunk 2/" in log.read_text())
    assert lock_state(ws) == ("running", None)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert lock_state(ws) == ("stopped", "interrupted")
    summary = read_json(ws / "logs" / "session_summary.json")
    assert summary["outcome"] == "interrupted"
    assert 128 <= summary["steps"] < summary["planned_steps"]
    assert (ws / "models" / FINAL).stat().st_size > 0
    evals = [r for r in read_traces(ws) if r["phase"] == "eval"]
    assert summary["metrics"]["trades"] == len(evals)
    assert f"stopped by signal {signal.Signals(signum).name}" in log.read_text()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_right_after_the_lock_is_taken_still_ends_interrupted(tmp_path, signum):
    """The lock says ``starting`` while torch is still being imported (about 2 s)."""
    ws = make_workspace(tmp_path)
    proc = start_trainer(ws)
    wait_until("state starting", lambda: lock_state(ws) == ("starting", None))
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert lock_state(ws) == ("stopped", "interrupted")
    summary = read_json(ws / "logs" / "session_summary.json")
    assert (summary["outcome"], summary["steps"]) == ("interrupted", 0)
    assert not (ws / "models" / FINAL).exists()


def test_an_exception_ends_failed_with_summary_and_stopped_lock(tmp_path):
    ws = make_workspace(tmp_path)
    (ws / "models").mkdir()
    (ws / "models" / "checkpoints").write_text("a file where a folder should be")
    proc = run_trainer(ws)
    assert proc.returncode == 1, proc.stderr
    assert lock_state(ws) == ("stopped", "failed")
    summary = read_json(ws / "logs" / "session_summary.json")
    assert summary["outcome"] == "failed"
    assert "checkpoints" in summary["error"]
    assert summary["metrics"] is None
    assert not (ws / "models" / FINAL).exists()
    log = (ws / "logs" / "training.log").read_text()
    assert "training failed" in log
    assert "Traceback" in log
    assert f"session {summary['session_id']} stopped: failed" in log
