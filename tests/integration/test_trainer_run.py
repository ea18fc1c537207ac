"""A tiny real training session as a subprocess, run twice in one workspace.

The first run's outputs are checked one aspect per test; the second run (no daemon
in between) shows the final model backed up before it is replaced and every other
file of the first run kept.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.trainer_helpers import (
    TINY_EPISODE_STEPS,
    TINY_EVAL_STEPS,
    lock_state,
    make_workspace,
    read_json,
    read_traces,
    run_trainer,
)
from trainer.trade_logger import TRACE_KEYS

FINAL = "memory_efficient_model_final.zip"


@dataclass
class Run:
    workspace: Path
    returncode: int
    stderr: str
    summary: dict[str, Any]
    traces: list[dict[str, Any]]
    final_sha: str


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def do_run(workspace: Path) -> Run:
    before = {p.name for p in (workspace / "logs" / "trades").glob("*.jsonl")}
    proc = run_trainer(workspace, "--default")
    assert proc.returncode == 0, proc.stderr
    summary = read_json(workspace / "logs" / "session_summary.json")
    new = sorted(
        set((workspace / "logs" / "trades").glob("*.jsonl"))
        - {workspace / "logs" / "trades" / n for n in before}
    )
    assert len(new) == 1
    traces = [r for r in read_traces(workspace) if r["session_id"] == summary["session_id"]]
    return Run(
        workspace, proc.returncode, proc.stderr, summary, traces, sha(workspace / "models" / FINAL)
    )


def digests(workspace: Path) -> dict[str, tuple[int, str]]:
    """Size and SHA-256 of every file of the workspace but the lock file."""
    return {
        str(p.relative_to(workspace)): (p.stat().st_size, sha(p))
        for p in sorted(workspace.rglob("*"))
        if p.is_file() and p.name != "training.lock"
    }


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple[Run, Run, dict[str, tuple[int, str]]]:
    """Two runs, and the files after the first one."""
    workspace = make_workspace(tmp_path_factory.mktemp("ws"))
    first = do_run(workspace)
    after_first = digests(workspace)
    return first, do_run(workspace), after_first


@pytest.fixture(scope="module")
def runs(both) -> tuple[Run, Run]:
    return both[0], both[1]


@pytest.fixture(scope="module")
def first(runs) -> Run:
    return runs[0]


def test_the_step_count_is_exact(first):
    assert first.summary["steps"] == first.summary["planned_steps"] == 256
    assert first.summary["outcome"] == "completed"
    assert first.summary["error"] is None
    assert first.summary["fps"] > 0


def test_the_env_runs_on_across_chunks_into_the_next_episode(first):
    train = [r for r in first.traces if r["phase"] == "train"]
    assert {r["episode"] for r in train} == {1, 2}
    assert first.summary["episodes_started"] == 2
    episode_one = [r["step"] for r in train if r["episode"] == 1]
    assert max(episode_one) > 3 * 64  # a reset per chunk would end episode 1 at step 64
    assert min(r["step"] for r in train if r["episode"] == 2) > TINY_EPISODE_STEPS


def test_checkpoints_have_the_expected_names(runs):
    names = sorted(p.name for p in (runs[0].workspace / "models" / "checkpoints").iterdir())
    assert names == sorted(
        f"memory_efficient_model_{run.summary['session_id']}_{steps}_steps.zip"
        for run in runs
        for steps in (100, 200)
    )


def test_one_tensorboard_run_holds_the_scalars_of_every_chunk(first):
    sid = first.summary["session_id"]
    runs = [r for r in (first.workspace / "logs" / "tensorboard").iterdir() if sid in r.name]
    assert [r.name for r in runs] == [f"PPO_{sid}"]
    assert len(list(runs[0].iterdir())) == 1  # one event file: one writer for all chunks
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "rollout/ep_rew_mean", "time/fps", "trading/equity"} <= tags
    steps = [e.step for e in events.Scalars("trading/equity")]
    assert steps == [64, 128, 192, 256]


def test_trace_lines_parse_and_match_the_trade_counts(first):
    assert first.traces
    assert all(tuple(r) == TRACE_KEYS for r in first.traces)
    eval_records = [r for r in first.traces if r["phase"] == "eval"]
    assert len(eval_records) == first.summary["metrics"]["trades"]
    assert sum(r["fee"] for r in eval_records) == pytest.approx(first.summary["metrics"]["fees"])
    assert all(1 <= r["step"] <= TINY_EVAL_STEPS for r in eval_records)
    assert first.summary["trades_logged"] == {
        "train": len(first.traces) - len(eval_records),
        "eval": len(eval_records),
    }
    lines = (first.workspace / "logs" / "trades" / "trade_execution.log").read_text().splitlines()
    sid = first.summary["session_id"]
    assert len([line for line in lines if f" {sid} " in line]) == len(first.traces)


def test_the_summary_holds_the_contract_fields(first):
    s = first.summary
    assert set(s) >= {
        "session_id",
        "algorithm",
        "outcome",
        "steps",
        "wall_s",
        "fps",
        "metrics",
        "config",
        "argv",
        "seed",
        "versions",
    }
    assert set(s["metrics"]) >= {
        "total_return",
        "sharpe",
        "max_drawdown",
        "trades",
        "fees",
        "buy_and_hold_return",
        "sharpe_periods_per_year",
    }
    assert s["algorithm"] == "PPO"
    assert s["config"]["net_arch"] == [8]
    assert s["seed"] == s["config"]["seed"] == 7
    assert s["argv"][-1] == "--default"
    assert set(s["versions"]) >= {"python", "torch", "stable-baselines3", "gymnasium"}
    assert (first.workspace / "logs" / "equity_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lock_and_training_log_tell_how_the_session_went(first):
    assert lock_state(first.workspace) == ("stopped", "completed")
    log = (first.workspace / "logs" / "training.log").read_text()
    sid = first.summary["session_id"]
    assert f"session {sid} starting" in log
    assert "no archiving daemon alive" in log
    assert f"session {sid} stopped: completed" in log
    assert len(re.findall(r"chunk \d/4:", log)) >= 4


def test_a_second_run_backs_up_the_final_model_first(runs):
    first, second = runs
    backups = list((second.workspace / "models" / "backups").iterdir())
    assert len(backups) == 1
    assert re.fullmatch(r"memory_efficient_model_final_\d{8}_\d{6}\.zip", backups[0].name)
    assert sha(backups[0]) == first.final_sha
    assert second.summary["outputs"]["backup"] == str(backups[0])
    assert second.summary["session_id"] != first.summary["session_id"]
    assert not [p for p in (second.workspace / "models").rglob(".*")]  # no temp files left


APPENDED = {"logs/training.log", "logs/trades/trade_execution.log"}


def test_a_second_run_without_a_daemon_keeps_every_file_of_the_first(both):
    first, _, after_first = both
    ws = first.workspace
    now = digests(ws)
    kept = {digest for _, digest in now.values()}
    for name, (size, digest) in after_first.items():
        if name in APPENDED:
            assert sha_prefix(ws / name, size) == digest, f"{name} was not appended to"
            assert now[name][0] > size
        else:
            assert digest in kept, f"{name} of the first run is gone"
    sid = first.summary["session_id"]
    assert now[f"logs/session_summary_{sid}.json"] == after_first["logs/session_summary.json"]
    assert now[f"logs/equity_curve_{sid}.png"] == after_first["logs/equity_curve.png"]


def sha_prefix(path: Path, size: int) -> str:
    with path.open("rb") as handle:
        return hashlib.sha256(handle.read(size)).hexdigest()
