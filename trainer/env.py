"""The trading env: one instrument, actions short / flat / long, fees and slippage.

Accounting, at decision bar ``t`` with close ``p``: equity is ``cash + units * p``.
When the chosen exposure (-1, 0 or +1) differs from the current one, the env trades
to ``exposure * equity / p`` units at ``p * (1 +/- slippage)`` (against the trade) and
pays ``fee_rate * |quantity| * execution price``. It then moves to bar ``t + 1``; the
reward is ``100 * log(equity[t + 1] / equity[t])`` with ``equity[t]`` taken before
the trade, so fees and slippage are inside it. Holding an exposure never rebalances.

The observation is the last ``window`` rows of the precomputed features (bars
``t - window + 1 .. t``) and the current exposure. An episode runs from
``max(start, window)`` to ``end - 1`` and is truncated there (end of data); it
terminates early only if equity reaches zero. Trades leave through ``info["trade"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from trainer.features import CLIP, N_FEATURES, Market

ACTIONS = ("short", "flat", "long")
REWARD_SCALE = 100.0


@dataclass(frozen=True, slots=True)
class Trade:
    """One execution: what the trade logger records."""

    episode: int
    bar: int
    time: str
    side: str
    quantity: float
    price: float
    fee: float
    position: float
    """Units held after the trade (negative when short)."""
    equity: float
    """Cash plus position at the bar's close, after the fee."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Trade:
        return self  # immutable; DummyVecEnv deep-copies every step's infos

    def __copy__(self) -> Trade:
        return self


class TradingEnv(gym.Env[np.ndarray, np.int64]):
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        market: Market,
        start: int,
        end: int,
        *,
        window: int,
        fee_rate: float,
        slippage: float,
        initial_cash: float,
    ) -> None:
        super().__init__()
        self.market = market
        self.first = max(start, window)
        self.end = end
        if not 0 <= start < end <= len(market) or self.end - 1 - self.first < 1:
            raise ValueError(f"slice [{start}, {end}) leaves no steps with window {window}")
        self.window = window
        self.fee_rate = fee_rate
        self.slippage = slippage
        self.initial_cash = initial_cash
        self.observation_space = gym.spaces.Box(
            -CLIP, CLIP, shape=(window * N_FEATURES + 1,), dtype=np.float32
        )
        self.action_space = gym.spaces.Discrete(len(ACTIONS))
        self.episode = 0
        self._reset_book()

    @property
    def episode_length(self) -> int:
        return self.end - 1 - self.first

    def _reset_book(self) -> None:
        self.t = self.first
        self.cash = self.initial_cash
        self.units = 0.0
        self.exposure = 0

    def equity_at(self, index: int) -> float:
        return self.cash + self.units * float(self.market.close[index])

    def _observation(self) -> np.ndarray:
        rows = self.market.features[self.t - self.window + 1 : self.t + 1]
        obs = np.empty(self.window * N_FEATURES + 1, dtype=np.float32)
        obs[:-1] = rows.ravel()
        obs[-1] = self.exposure
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._reset_book()
        self.episode += 1
        return self._observation(), {"equity": self.cash, "position": 0.0, "trade": None}

    def _trade_to(self, exposure: int) -> Trade:
        price = float(self.market.close[self.t])
        target = exposure * self.equity_at(self.t) / price
        delta = target - self.units
        executed = price * (1.0 + math.copysign(self.slippage, delta))
        fee = self.fee_rate * abs(delta) * executed
        self.cash -= delta * executed + fee
        self.units = target
        self.exposure = exposure
        return Trade(
            episode=self.episode,
            bar=self.t,
            time=self.market.time_text(self.t),
            side="buy" if delta > 0 else "sell",
            quantity=abs(delta),
            price=executed,
            fee=fee,
            position=target,
            equity=self.equity_at(self.t),
        )

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        exposure = int(action) - 1
        if exposure not in (-1, 0, 1):
            raise ValueError(f"invalid action {action!r}")
        before = self.equity_at(self.t)
        if self.t >= self.end - 1 or before <= 0.0:
            raise RuntimeError("step() after the episode ended: call reset()")
        trade = self._trade_to(exposure) if exposure != self.exposure else None
        self.t += 1
        equity = self.equity_at(self.t)
        bankrupt = equity <= 0.0
        reward = -REWARD_SCALE if bankrupt else REWARD_SCALE * math.log(equity / before)
        truncated = not bankrupt and self.t >= self.end - 1
        info = {"equity": equity, "position": self.units, "trade": trade}
        return self._observation(), reward, bankrupt, truncated, info
