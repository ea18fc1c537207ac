"""Running a trained model over the held-out slice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trainer.env import Trade, TradingEnv
from trainer.metrics import Metrics, compute_metrics


@dataclass(frozen=True)
class Evaluation:
    """One deterministic pass over an env: the equity per bar and the trades."""

    times: np.ndarray
    closes: np.ndarray
    equity: np.ndarray
    trades: list[Trade]

    def metrics(self, per_year: float) -> Metrics:
        return compute_metrics(self.equity, self.closes, [t.fee for t in self.trades], per_year)

    def buy_and_hold(self) -> np.ndarray:
        """Equity of buying at the first bar's close and holding (no fees)."""
        return self.equity[0] * self.closes / self.closes[0]


def evaluate(
    policy: Callable[[np.ndarray], int],
    env: TradingEnv,
    on_trade: Callable[[int, Trade], None] = lambda step, trade: None,
) -> Evaluation:
    """Run ``policy`` from reset to the end of ``env``; ``on_trade(step, trade)`` sees trades."""
    obs, info = env.reset()
    equity = [float(info["equity"])]
    trades: list[Trade] = []
    step = 0
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        step += 1
        equity.append(float(info["equity"]))
        trade = info["trade"]
        if trade is not None:
            trades.append(trade)
            on_trade(step, trade)
        done = terminated or truncated
    bars = slice(env.first, env.first + len(equity))
    return Evaluation(
        times=env.market.times[bars],
        closes=env.market.close[bars],
        equity=np.asarray(equity),
        trades=trades,
    )
