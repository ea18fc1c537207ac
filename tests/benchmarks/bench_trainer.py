"""Trainer benchmark: cost of the outputs, overhead over plain SB3, memory growth.

Run: ``.venv/bin/python tests/benchmarks/bench_trainer.py [--repeats N]``. Every
figure is measured in this run, each training in a fresh subprocess on the default
config (PPO, 64x64 MLP, steps_per_batch 1000, synthetic data):

1. fps with every output on (trade log, traces, tensorboard, checkpoints) divided by
   fps with all of them off; target >= 0.95;
2. our fps divided by plain SB3 PPO's (same env, same hyperparameters, one learn()
   call, no callbacks, no logger); shows what chunking and the callbacks cost;
3. peak RSS of a 4-episode run divided by a 1-episode run; target <= 1.10;
4. fps with torch_threads 1 against torch's default, to back the default of 1.

fps is env steps over time inside learn() (``session_summary.json``); runs alternate
on/off so drift in machine load hits both sides. On a shared machine the best of N
runs (least disturbed) is the primary figure; medians and CPU-time rates are shown too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
OFF = {
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


def plain_sb3_fps(steps: int, threads: int) -> tuple[float, float]:
    """Plain SB3 PPO on the same env with the same hyperparameters: one learn()."""
    import torch
    from stable_baselines3 import PPO

    from trainer.config import TrainingConfig
    from trainer.data import synthetic_series
    from trainer.env import TradingEnv
    from trainer.features import Market
    from trainer.model import algorithm_kwargs
    from trainer.plan import split_index

    torch.set_num_threads(threads)
    config = TrainingConfig()
    market = Market.from_series(synthetic_series(config.synthetic_bars, config.seed))
    env = TradingEnv(
        market,
        0,
        split_index(len(market), config.train_fraction),
        window=config.window,
        fee_rate=config.fee_rate,
        slippage=config.slippage,
        initial_cash=config.initial_cash,
    )
    model = PPO("MlpPolicy", env, device="cpu", **algorithm_kwargs(config))
    began, began_cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=steps)
    wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return model.num_timesteps / wall, model.num_timesteps / cpu


def run_plain(steps: int) -> tuple[float, float]:
    """(wall fps, CPU fps) of plain SB3 PPO in a fresh subprocess."""
    cmd = [sys.executable, __file__, "--plain-steps", str(steps)]
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, check=True)
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


def rates(summary: dict[str, Any]) -> tuple[float, float]:
    """(wall fps, CPU fps) of a trainer run."""
    return summary["steps"] / summary["train_s"], summary["steps"] / summary["train_cpu_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes of the fps runs")
    parser.add_argument("--plain-steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_steps:
        print(*plain_sb3_fps(args.plain_steps, threads=1))
        return

    episodes = ["--total-episodes", str(args.episodes)]
    wall: dict[str, list[float]] = {"on": [], "off": [], "plain": [], "threads": []}
    cpu: dict[str, list[float]] = {k: [] for k in wall}
    steps = 0
    for _ in range(args.repeats):
        on, _ = run_trainer({}, *episodes)
        off, _ = run_trainer(OFF, *episodes)
        steps = on["steps"]
        runs = {"on": rates(on), "off": rates(off), "plain": run_plain(steps)}
        for key, (w, c) in runs.items():
            wall[key].append(w)
            cpu[key].append(c)
    w, c = rates(run_trainer({"torch_threads": 0}, *episodes)[0])
    wall["threads"].append(w)
    cpu["threads"].append(c)
    one_episode = max(run_trainer({}, "--total-episodes", "1")[1] for _ in range(2))
    four_episodes = max(run_trainer({}, "--total-episodes", "4")[1] for _ in range(2))

    best_w = {k: max(v) for k, v in wall.items()}
    best_c = {k: max(v) for k, v in cpu.items()}
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    print(f"trainer benchmark: default config, {steps} steps per fps run, {args.repeats} repeats")
    print("  fps: best wall clock (best by CPU time) [median wall]  runs")
    labels = [("on", "outputs on"), ("off", "outputs off"), ("plain", "plain SB3 PPO")]
    labels.append(("threads", f"torch default threads ({os.cpu_count()} cores)"))
    for key, label in labels:
        runs_text = ", ".join(f"{x:.0f}" for x in wall[key])
        figures = f"{best_w[key]:5.0f} ({best_c[key]:.0f}) [{med_w[key]:.0f}]"
        print(f"    {label:<14} {figures}  {runs_text}")
    mib = (one_episode / 1024, four_episodes / 1024)
    print(f"  peak RSS: 1 episode {mib[0]:.0f} MiB, 4 episodes {mib[1]:.0f} MiB")

    def ratio(a: str, b: str) -> str:
        return (
            f"{best_w[a] / best_w[b]:.3f} best wall, {best_c[a] / best_c[b]:.3f} best CPU, "
            f"{med_w[a] / med_w[b]:.3f} median wall"
        )

    print(f"RATIO outputs on / off          = {ratio('on', 'off')}  (target >= 0.95)")
    print(f"RATIO ours / plain SB3 PPO      = {ratio('on', 'plain')}")
    print(f"RATIO torch default threads / 1 = {ratio('threads', 'on')}")
    print(f"RATIO peak RSS 4 ep / 1 ep      = {four_episodes / one_episode:.3f}  (target <= 1.10)")


if __name__ == "__main__":
    main()
