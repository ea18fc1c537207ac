"""Trainer benchmark: cost of the outputs, overhead over plain SB3, memory growth.

Run: ``.venv/bin/python tests/benchmarks/bench_trainer.py [--rounds N]``. Every
figure is measured in this run, on the default config (PPO, 64x64 MLP,
steps_per_batch 1000, synthetic data, torch_threads 1):

1. fps with every output on (trade log, traces, tensorboard, checkpoints) divided by
   fps with all of them off; target >= 0.95;
2. our fps divided by plain SB3 PPO's (same env, same hyperparameters, no callbacks);
3. peak RSS of a 4-episode run divided by a 1-episode run, each a full
   ``python -m trainer`` in a fresh subprocess; target <= 1.10;
4. fps of full runs with torch_threads 1 against torch's default thread count.

For 1 and 2 the three trainers live in one fresh subprocess and take turns chunk by
chunk, so load from other processes on a shared machine falls on all of them alike
(separate runs minutes apart differed by 2x on the shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OFF: dict[str, Any] = {
    "enable_trade_logging": False,
    "enable_trade_tracing": False,
    "enable_tensorboard": False,
    "checkpoint_freq": 0,
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run_trainer(config: dict[str, Any], *args: str) -> tuple[dict[str, Any], int]:
    """One training session in a fresh workspace: (session summary, peak RSS in KiB)."""
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        ws = Path(tmp)
        (ws / "config").mkdir()
        (ws / "config" / "training_config.json").write_text(json.dumps(config))
        cmd = [sys.executable, "-m", "trainer", "--workspace", tmp, "--no-archive", *args]
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            assert proc.stderr is not None
            sys.exit(f"trainer failed ({proc.returncode}): {proc.stderr.read().decode()}")
        summary = json.loads((ws / "logs" / "session_summary.json").read_text())
        return summary, usage.ru_maxrss


def interleaved_fps(rounds: int) -> dict[str, tuple[float, float]]:
    """(wall fps, CPU fps) of three trainers built in this process, chunk by chunk.

    ``on`` is the trainer with every output, ``off`` the same with none, ``plain`` a
    bare SB3 PPO on the same env with the same hyperparameters (no callbacks; a
    logger without outputs so SB3 makes no temp folder per learn()). Their chunks are
    interleaved in rotating order so machine load hits all three alike; round 0 is
    a warm-up and is not counted.
    """
    import torch
    from stable_baselines3 import PPO

    from trainer.config import LoggingConfig, TrainingConfig
    from trainer.data import synthetic_series
    from trainer.model import algorithm_kwargs
    from trainer.plan import RunPlan
    from trainer.training import Training, build_envs, make_sb3_logger

    torch.set_num_threads(1)
    base = TrainingConfig()
    series = synthetic_series(base.synthetic_bars, base.seed)
    root = Path(tempfile.mkdtemp(prefix="bench-trainer-"))

    def plan(name: str, config: TrainingConfig) -> RunPlan:
        ws = root / name
        return RunPlan(ws, config, LoggingConfig(), "bench", series, ws / "l", False, "cpu", ())

    def trainer(name: str, config: TrainingConfig) -> Training:
        training = Training(
            plan(name, config), f"bench-{name}", started=datetime.now(UTC), should_stop=bool
        )
        training.setup()
        return training

    on, off = trainer("on", base), trainer("off", replace(base, **OFF))
    plain = PPO("MlpPolicy", build_envs(plan("plain", base))[0], **algorithm_kwargs(base))
    plain.set_logger(make_sb3_logger(None))

    def plain_chunk() -> None:
        plain.learn(base.steps_per_batch, reset_num_timesteps=False)

    chunk = {"on": on.run_chunk, "off": off.run_chunk, "plain": plain_chunk}
    totals = {name: [0.0, 0.0] for name in chunk}
    names = list(chunk)
    try:
        for r in range(rounds + 1):
            for name in names[r % 3 :] + names[: r % 3]:
                began, began_cpu = time.perf_counter(), time.process_time()
                chunk[name]()
                if r:
                    totals[name][0] += time.perf_counter() - began
                    totals[name][1] += time.process_time() - began_cpu
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert on.model is not None and on.model.num_timesteps == plain.num_timesteps
    steps = rounds * base.steps_per_batch
    return {name: (steps / wall, steps / cpu) for name, (wall, cpu) in totals.items()}


def rates(summary: dict[str, Any]) -> tuple[float, float]:
    """(wall fps, CPU fps) of a full trainer run, from its session summary."""
    return summary["steps"] / summary["train_s"], summary["steps"] / summary["train_cpu_s"]


def run_interleaved(rounds: int) -> dict[str, tuple[float, float]]:
    cmd = [sys.executable, __file__, "--interleaved", str(rounds)]
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, check=True)
    return {k: (v[0], v[1]) for k, v in json.loads(out.stdout).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="counted chunks per variant")
    parser.add_argument("--interleaved", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.interleaved:
        print(json.dumps(interleaved_fps(args.interleaved)))
        return

    fps = run_interleaved(args.rounds)
    threads_1, _ = run_trainer({}, "--total-episodes", "2")
    threads_default, _ = run_trainer({"torch_threads": 0}, "--total-episodes", "2")
    one_episode = max(run_trainer({}, "--total-episodes", "1")[1] for _ in range(2))
    four_episodes = max(run_trainer({}, "--total-episodes", "4")[1] for _ in range(2))

    steps = args.rounds * 1000
    setup = "default config (PPO, 64x64, 1000 steps per chunk)"
    print(f"trainer benchmark: {setup}, {os.cpu_count()} cores")
    print(f"  interleaved, {steps} counted steps each: fps by wall clock (by CPU time)")
    for name, label in [
        ("on", "all outputs on"),
        ("off", "all outputs off"),
        ("plain", "plain SB3"),
    ]:
        print(f"    {label:<16} {fps[name][0]:6.0f} ({fps[name][1]:.0f})")
    one, default = rates(threads_1), rates(threads_default)
    print(f"  full runs: torch_threads 1 {one[0]:.0f} fps, torch default {default[0]:.0f} fps")
    mib = (one_episode / 1024, four_episodes / 1024)
    print(f"  peak RSS: 1 episode {mib[0]:.0f} MiB, 4 episodes {mib[1]:.0f} MiB")

    def ratio(a: tuple[float, float], b: tuple[float, float]) -> str:
        return f"{a[0] / b[0]:.3f} wall, {a[1] / b[1]:.3f} CPU"

    print(f"RATIO outputs on / off          = {ratio(fps['on'], fps['off'])}  (target >= 0.95)")
    print(f"RATIO ours / plain SB3 PPO      = {ratio(fps['on'], fps['plain'])}")
    print(f"RATIO torch default threads / 1 = {ratio(default, one)}")
    print(f"RATIO peak RSS 4 ep / 1 ep      = {four_episodes / one_episode:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
