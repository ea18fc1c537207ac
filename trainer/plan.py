"""The run plan: every input checked and resolved before anything touches the disk."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from trainer.config import LoggingConfig, TrainingConfig
from trainer.data import PriceSeries
from trainer.errors import DataError, UsageError

FINAL_MODEL = "memory_efficient_model_final.zip"
CHECKPOINT_PREFIX = "memory_efficient_model"
MIN_STEPS = 2
"""Fewest env steps in the training episode and in the held-out evaluation."""


def split_index(bars: int, train_fraction: float) -> int:
    """The first held-out bar."""
    return int(bars * train_fraction)


def slice_steps(bars: int, window: int, train_fraction: float) -> tuple[int, int]:
    """Env steps of one training episode and of the held-out pass (see ``TradingEnv``)."""
    split = split_index(bars, train_fraction)
    return split - 1 - max(0, window), bars - 1 - split


def check_length(series: PriceSeries, config: TrainingConfig) -> None:
    """Raise :class:`DataError` when the series is too short for the window and split."""
    train, held_out = slice_steps(len(series), config.window, config.train_fraction)
    if min(train, held_out) >= MIN_STEPS:
        return
    need = len(series) + 1
    while min(slice_steps(need, config.window, config.train_fraction)) < MIN_STEPS:
        need += 1
    raise DataError(
        f"{series.source}: {len(series)} rows are too few for window {config.window} and "
        f"train_fraction {config.train_fraction} (need at least {need})"
    )


def chunk_count(episode_steps: int, episodes: int, steps_per_batch: int) -> int:
    """Chunks of exactly ``steps_per_batch`` steps that cover ``episodes`` full episodes.

    The total is rounded *up* to whole chunks: every requested episode completes,
    and the last chunk may run into the next episode rather than be shorter (a
    shorter chunk would make PPO overshoot its rollout).
    """
    return math.ceil(episode_steps * episodes / steps_per_batch)


def resolve_device(requested: str, source: str) -> str:
    """``cpu`` or ``cuda``; ``cuda`` requested on a machine without it is a usage error."""
    if requested == "cpu":
        return "cpu"
    import torch  # deferred: validating a cpu run needs no torch import

    if torch.cuda.is_available():
        return "cuda"
    if requested == "auto":
        return "cpu"
    raise UsageError(f"{source}: device 'cuda' requested but CUDA is not available")


@dataclass(frozen=True)
class RunPlan:
    """Everything a session needs, validated."""

    workspace: Path
    config: TrainingConfig
    logging: LoggingConfig
    config_source: str
    series: PriceSeries
    lock_path: Path
    archive: bool
    device: str
    argv: tuple[str, ...]

    @property
    def split(self) -> int:
        return split_index(len(self.series), self.config.train_fraction)

    @property
    def episode_steps(self) -> int:
        return slice_steps(len(self.series), self.config.window, self.config.train_fraction)[0]

    @property
    def chunks(self) -> int:
        cfg = self.config
        return chunk_count(self.episode_steps, cfg.total_episodes, cfg.steps_per_batch)

    @property
    def planned_steps(self) -> int:
        return self.chunks * self.config.steps_per_batch

    def path(self, relative: str) -> Path:
        """A workspace path (absolute paths stay as they are)."""
        p = Path(relative)
        return p if p.is_absolute() else self.workspace / p

    @property
    def logs(self) -> Path:
        return self.workspace / "logs"

    @property
    def models(self) -> Path:
        return self.workspace / "models"

    @property
    def training_log(self) -> Path:
        return self.path(self.logging.training_log)
