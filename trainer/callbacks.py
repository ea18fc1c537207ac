"""The trainer's SB3 callbacks, composed once and reused by every ``learn()`` chunk.

Reusing the same callback objects is what keeps state across chunks: the checkpoint
callback's call counter goes on counting (so ``checkpoint_freq`` larger than a chunk
still fires), and trade recording, stopping and progress see one continuous run.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

from trainer.model import save_model_atomic
from trainer.trade_logger import TradeLogger

log = logging.getLogger(__name__)


class TradeRecorder(BaseCallback):
    """Hands each trade found in ``infos`` to the trade logger (phase ``train``).

    Also records ``trading/*`` scalars for tensorboard at each rollout end and
    flushes the trade logs when a chunk ends.
    """

    def __init__(self, trades: TradeLogger) -> None:
        super().__init__()
        self.trades = trades
        self.equity = 0.0
        self.episode = 0

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            trade = info.get("trade")
            if trade is not None:
                self.trades.record("train", self.num_timesteps, trade)
                self.episode = trade.episode
            self.equity = info["equity"]
        return True

    def _on_rollout_end(self) -> None:
        self.logger.record("trading/equity", self.equity)
        self.logger.record("trading/train_trades", self.trades.counts["train"])

    def _on_training_end(self) -> None:
        self.trades.flush()


class StopOnSignal(BaseCallback):
    """Ends ``learn()`` at the next step once ``should_stop()`` turns true."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self.should_stop = should_stop

    def _on_step(self) -> bool:
        return not self.should_stop()


class AtomicCheckpoint(CheckpointCallback):
    """SB3's checkpoint callback, saving by temp file and rename.

    Files are ``<name_prefix>_<steps>_steps.zip`` in the checkpoint folder; the trainer
    puts the session id in ``name_prefix``, as step counts restart at 0 each session.
    """

    def __init__(self, save_freq: int, save_path: Path, name_prefix: str) -> None:
        super().__init__(save_freq, str(save_path), name_prefix=name_prefix)
        self.saved: list[Path] = []

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            path = Path(self._checkpoint_path(extension="zip"))
            save_model_atomic(self.model, path)
            self.saved.append(path)
            log.info("checkpoint saved: %s", path)
        return True


class ProgressBar(BaseCallback):
    """A one-line progress bar on a terminal, redrawn every 1 %."""

    def __init__(self, total: int, stream: IO[str] = sys.stderr, width: int = 30) -> None:
        super().__init__()
        self.total = total
        self.stream = stream
        self.width = width
        self._every = max(1, total // 100)

    def _on_step(self) -> bool:
        if self.num_timesteps % self._every == 0 or self.num_timesteps >= self.total:
            done = min(1.0, self.num_timesteps / self.total)
            filled = int(done * self.width)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.num_timesteps}/{self.total} steps")
            self.stream.flush()
        return True

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
