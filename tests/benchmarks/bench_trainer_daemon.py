"""The trainer's fps with the daemon watching its workspace, against no daemon at all.

Run: ``.venv/bin/python tests/benchmarks/bench_trainer_daemon.py [--rounds N]``.
Each round runs two full ``python -m trainer`` sessions on the default config
(every output on: trade log, traces, tensorboard, checkpoints), one in a
workspace watched by a real ``python -m daemon run`` (which acknowledges the
session, archives it before and after) and one with no daemon; the order
alternates from round to round so that load from other processes falls on both
alike. The figure is the ratio of the medians of the sessions' own fps
(``logs/session_summary.json``: environment steps over training wall time, so the
wait for the acknowledgement is not counted). Target: >= 0.98.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_daemon import cpu_seconds  # noqa: E402
from tests.daemon_helpers import DaemonProcess, NotifySocket  # noqa: E402


def one_session(ws: Path, episodes: int, *, archive: bool) -> float:
    """Run one session in ``ws``; its fps."""
    cmd = [sys.executable, "-m", "trainer", "--workspace", str(ws), "--default"]
    cmd += ["--total-episodes", str(episodes)]
    if not archive:
        cmd.append("--no-archive")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"trainer failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads((ws / "logs" / "session_summary.json").read_text())
    return float(summary["fps"])


def fresh_workspace(root: Path, name: str) -> Path:
    ws = root / name
    shutil.copytree(REPO / "config", ws / "config")
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="pairs of sessions (default 3)")
    parser.add_argument("--episodes", type=int, default=2, help="episodes per session")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-trainer-daemon-"))
    watched = fresh_workspace(root, "watched")
    alone = fresh_workspace(root, "alone")
    notify = NotifySocket(root)
    notify.drain_in_background()  # as systemd reads it
    daemon = DaemonProcess(watched, notify)
    with_daemon: list[float] = []
    without: list[float] = []
    shares: list[float] = []
    """The daemon's CPU (share of one core) over each watched session, archives included."""
    try:
        daemon.wait_ready(timeout=60)
        for round_ in range(args.rounds):
            order = [True, False] if round_ % 2 == 0 else [False, True]
            for watched_run in order:
                if watched_run:
                    cpu0, wall0 = cpu_seconds(daemon.pid), time.monotonic()
                    with_daemon.append(one_session(watched, args.episodes, archive=True))
                    shares.append((cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - wall0))
                else:
                    without.append(one_session(alone, args.episodes, archive=False))
            print(
                f"round {round_ + 1}: with daemon {with_daemon[-1]:.0f} fps, "
                f"without {without[-1]:.0f} fps",
                flush=True,
            )
        archives = len(daemon.events("ArchiveCompleted"))
    finally:
        daemon.stop()
        notify.close()
        shutil.rmtree(root, ignore_errors=True)
    ratio = statistics.median(with_daemon) / statistics.median(without)
    print(f"sessions per side: {args.rounds}; archives the daemon made: {archives}")
    print(f"median fps with the daemon:    {statistics.median(with_daemon):.0f}")
    print(f"median fps without a daemon:   {statistics.median(without):.0f}")
    spread = [f"{min(v):.0f}-{max(v):.0f}" for v in (with_daemon, without)]
    print(f"fps range, with / without:     {spread[0]} / {spread[1]} (the machine's noise)")
    print(f"daemon CPU over a session:     {100 * statistics.median(shares):.1f}% of one core")
    print(f"ratio with / without:          {ratio:.3f} (target >= 0.98)")


if __name__ == "__main__":
    main()
