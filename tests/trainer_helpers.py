"""Shared helpers of the trainer tests: tiny workspaces and the trainer as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

TINY_CONFIG: dict[str, Any] = {
    "steps_per_batch": 64,
    "total_episodes": 1,
    "synthetic_bars": 300,
    "window": 8,
    "net_arch": [8],
    "n_epochs": 2,
    "batch_size": 32,
    "checkpoint_freq": 100,
    "seed": 7,
}
"""300 bars: 240 for training (231 steps per episode), 60 held out (59 steps).
One episode in chunks of 64 is 4 chunks, 256 steps; checkpoints at 100 and 200."""
TINY_EPISODE_STEPS = 231
TINY_EVAL_STEPS = 59


def make_workspace(root: Path, **overrides: Any) -> Path:
    """A workspace with a tiny training config (``overrides`` replace its keys)."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    config = {**TINY_CONFIG, **overrides}
    (root / "config" / "training_config.json").write_text(json.dumps(config))
    return root


def trainer_cmd(workspace: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "trainer", "--workspace", str(workspace), *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_trainer(
    workspace: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        trainer_cmd(workspace, *args),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_trainer(workspace: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        trainer_cmd(workspace, *args),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(what: str, condition: Callable[[], T | None], timeout: float = 60) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_traces(workspace: Path) -> list[dict[str, Any]]:
    files = sorted((workspace / "logs" / "trades").glob("trade_traces_*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def lock_state(workspace: Path) -> tuple[str, str | None] | None:
    """(state, outcome) of the workspace's lock file, None while it is missing or mid-write."""
    try:
        doc = json.loads((workspace / "training.lock").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc["state"], doc["outcome"]


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime: a snapshot to compare."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class LiveTrainer:
    """The trainer as a running subprocess whose stderr is collected as it comes."""

    def __init__(self, workspace: Path, *args: str) -> None:
        self.proc = start_trainer(workspace, *args)
        self.lines: list[str] = []
        assert self.proc.stderr is not None
        self._reader = threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

    def _drain(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        wait_until(repr(text), lambda: any(text in line for line in list(self.lines)), timeout)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        assert self.proc.stdout is not None
        self.proc.stdout.read()
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout)
        return code, "".join(self.lines)
