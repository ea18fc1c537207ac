"""``TradingModel``: a stable-baselines3 algorithm, sized so chunks never overshoot.

Hyperparameters are derived from the config so that every ``learn()`` chunk of
``steps_per_batch`` steps ends exactly on a rollout boundary: PPO's ``n_steps`` is
``steps_per_batch`` (or the configured divisor of it) with a minibatch that divides
it, A2C's ``n_steps`` and DQN's ``train_freq`` are the largest divisors of
``steps_per_batch`` not above SB3's defaults (5 and 4).

Every save is atomic (temp file, fsync, rename); :meth:`archive_and_save_model`
also keeps the previous final model in ``models/backups/`` under a timestamped name.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from trainer.config import TrainingConfig
from trainer.fsutil import atomic_open, fsync_dir, stamp, unique_path

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C, "DQN": DQN}
TB_RUN_NAME = "run"


def largest_divisor(n: int, cap: int) -> int:
    """The largest divisor of ``n`` that is at most ``cap`` (at least 1)."""
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def algorithm_kwargs(config: TrainingConfig) -> dict[str, Any]:
    """The algorithm's keyword arguments; rollouts always divide ``steps_per_batch``."""
    spb = config.steps_per_batch
    common: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "seed": config.seed,
        "policy_kwargs": {"net_arch": list(config.net_arch)},
        "verbose": 0,
    }
    if config.algorithm == "PPO":
        n_steps = config.n_steps or spb
        batch = largest_divisor(n_steps, config.batch_size)
        return common | {
            "n_steps": n_steps,
            "batch_size": batch if batch > 1 else n_steps,
            "n_epochs": config.n_epochs,
            "ent_coef": config.ent_coef,
        }
    if config.algorithm == "A2C":
        n_steps = config.n_steps or largest_divisor(spb, 5)
        return common | {"n_steps": n_steps, "ent_coef": config.ent_coef}
    return common | {
        "buffer_size": config.buffer_size,
        "batch_size": config.batch_size,
        "train_freq": (largest_divisor(spb, 4), "step"),
        "learning_starts": min(100, spb),
        "target_update_interval": 1000,
    }


def save_model_atomic(algo: BaseAlgorithm, path: Path) -> None:
    """Save ``algo`` to ``path`` by temp file and rename."""
    with atomic_open(path) as handle:
        algo.save(handle)  # type: ignore[arg-type]


BACKUP_NAME = re.compile(r"_(\d{8}_\d{6})(?:_(\d+))?\.zip$")


def prune_backups(folder: Path, stem: str, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups of ``stem``; returns what was deleted."""
    found: list[tuple[tuple[str, int], Path]] = []
    for path in folder.glob(f"{stem}_*.zip"):
        match = BACKUP_NAME.search(path.name)
        if match and path.name == f"{stem}{match.group(0)}":
            found.append(((match.group(1), int(match.group(2) or 1)), path))
    found.sort()
    doomed = [path for _, path in found[: max(0, len(found) - keep)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


class TradingModel:
    """The SB3 algorithm, trained in exact chunks and saved atomically."""

    def __init__(self, algo: BaseAlgorithm) -> None:
        self.algo = algo

    @classmethod
    def create(
        cls, config: TrainingConfig, env: Any, *, device: str, logger: Logger
    ) -> TradingModel:
        algo = ALGORITHMS[config.algorithm](
            "MlpPolicy", env, device=device, **algorithm_kwargs(config)
        )
        algo.set_logger(logger)  # one logger for all chunks: one tensorboard run
        return cls(algo)

    @classmethod
    def load(cls, path: Path, algorithm: str, *, device: str = "cpu") -> TradingModel:
        return cls(ALGORITHMS[algorithm].load(path, device=device))

    @property
    def num_timesteps(self) -> int:
        return int(self.algo.num_timesteps)

    def learn_chunk(self, steps: int, callback: BaseCallback) -> None:
        """Train exactly ``steps`` more env steps, continuing counters and env state."""
        self.algo.learn(
            total_timesteps=steps,
            callback=callback,
            reset_num_timesteps=False,
            tb_log_name=TB_RUN_NAME,
            progress_bar=False,
        )

    def predict(self, obs: np.ndarray) -> int:
        action, _ = self.algo.predict(obs, deterministic=True)
        return int(action)

    def save(self, path: Path) -> None:
        save_model_atomic(self.algo, path)

    def archive_and_save_model(
        self, path: Path, backups: Path, *, keep: int, now: datetime
    ) -> Path | None:
        """Save to ``path``; an existing model there first goes to ``backups``.

        The new model is written to a temp file first; the old one is then linked
        into ``backups/<stem>_YYYYMMDD_HHMMSS.zip`` and the temp file renamed over
        ``path``, so ``path`` always holds a complete model. Only the newest
        ``keep`` backups stay. Returns the backup's path, if one was made.
        """
        with atomic_open(path) as handle:
            self.algo.save(handle)  # type: ignore[arg-type]
            # runs after the new model is written, before the temp file is renamed
            backup = self._backup(path, backups, now) if path.exists() else None
        if backup is not None:
            prune_backups(backups, path.stem, keep)
        return backup

    @staticmethod
    def _backup(path: Path, backups: Path, now: datetime) -> Path:
        backups.mkdir(parents=True, exist_ok=True)
        target = unique_path(backups, f"{path.stem}_{stamp(now)}", path.suffix)
        try:
            os.link(path, target)
        except OSError:
            os.replace(path, target)
        fsync_dir(backups)
        return target
